"""The signup proof of work in real Chromium, on `newsletter dev` with NEWSLETTER_SIGNUP_CHALLENGE.

The page's own script (no inline script; the Content-Security-Policy stays strict) solves the
challenge with crypto.subtle and the signup is accepted; a press of the button while it solves
waits for it, the button saying so; with JavaScript off the page says it is needed, and a post
without a solution is a form error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect
from sqlalchemy import select

from newsletter.store.db import dispose_engines, session_scope
from newsletter.store.models import Subscriber, SubscriberStatus
from tests.support.worker import DevProcess, base_env

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Holds every digest until the test calls window.releaseDigests(): injected by Playwright (which
# the page's Content-Security-Policy does not apply to), it makes "still solving" last on demand.
HOLD_DIGESTS = """
(() => {
  let release;
  const held = new Promise((resolve) => { release = resolve; });
  window.releaseDigests = release;
  const digest = SubtleCrypto.prototype.digest;
  SubtleCrypto.prototype.digest = async function (...args) {
    await held;
    return digest.apply(this, args);
  };
})();
"""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevProcess, str]]:
    """`newsletter dev` with the challenge on; its URL and database URL."""
    folder = tmp_path_factory.mktemp("challenge")
    env = base_env(
        NEWSLETTER_DATA_DIR=str(folder / "data"),
        NEWSLETTER_SIGNUP_CHALLENGE="true",
        NEWSLETTER_SIGNUP_CHALLENGE_MAX_NUMBER="50000",
    )
    with DevProcess(env, folder / "dev.log") as process:
        yield process, f"sqlite:///{folder / 'data' / 'newsletter.db'}"


def reader_status(database_url: str, email: str, timeout: float = 60) -> SubscriberStatus:
    """The reader's status once the worker has recorded the signup."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(database_url) as db:
            status = db.scalar(select(Subscriber.status).where(Subscriber.email == email))
        dispose_engines()
        if status is not None or time.monotonic() > deadline:
            assert status is not None, f"no reader {email} after {timeout}s"
            return status
        time.sleep(0.2)


def fill(page: Page, email: str) -> None:
    """Type the address and tick the first list, like a reader."""
    page.get_by_label("Email address").fill(email)
    boxes = page.locator("input[name=newsletter][type=checkbox]")
    if boxes.count():
        boxes.first.check()


def test_the_page_solves_the_challenge_and_the_signup_is_accepted(
    page: Page, dev: tuple[DevProcess, str]
) -> None:
    process, database_url = dev
    email = "dorothy.vaughan@example.com"
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and "favicon" not in message.location.get("url", ""):
            errors.append(message.text)

    page.on("console", on_console)
    page.goto(f"{process.url}/")
    form = page.locator("form[data-challenge]")
    expect(form).to_have_attribute("aria-busy", "false", timeout=60_000)
    expect(page.locator("input[name=altcha]")).not_to_have_value("")
    fill(page, email)
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert reader_status(database_url, email) == SubscriberStatus.PENDING
    assert errors == []  # e.g. no CSP violation


def test_a_press_while_solving_waits_for_the_solution(
    page: Page, dev: tuple[DevProcess, str]
) -> None:
    process, database_url = dev
    email = "mary.jackson@example.com"
    page.add_init_script(HOLD_DIGESTS)
    page.goto(f"{process.url}/embed")
    button = page.locator("button[type=submit]")
    expect(button).to_have_text("Checking you are a person\u2026")
    fill(page, email)
    button.click()
    page.wait_for_timeout(300)
    expect(page.get_by_role("heading", name="Stay in touch")).to_be_visible()  # not sent yet
    assert page.locator("input[name=altcha]").input_value() == ""
    page.evaluate("window.releaseDigests()")
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible(timeout=60_000)
    assert reader_status(database_url, email) == SubscriberStatus.PENDING


def test_without_javascript_the_page_says_it_is_needed(
    chromium: Browser, dev: tuple[DevProcess, str]
) -> None:
    process, _ = dev
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{process.url}/")
        # Playwright's text selectors skip <noscript>; what the page shows is in its inner text.
        assert "which needs JavaScript" in page.locator("form.signup__form").inner_text()
        fill(page, "no.script@example.com")
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("alert")).to_contain_text("Please turn JavaScript on")
    finally:
        context.close()
