"""The "Stay in touch" box in real Chromium: on a phone, on a desktop, framed, and with errors.

The app is served from a thread (tests/support/live_app.py); the assertions are on the layout
Chromium computed. Screenshots land in tmp_path (signup-360.png, embed-1280.png, …) for people
to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from newsletter.settings import Settings
from tests.support.layout import TOO_WIDE, boxes, rows
from tests.support.live_app import live_app
from tests.support.readers import Lists, make_lists

pytestmark = [pytest.mark.browser]


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


def _page(chromium: Browser, width: int, height: int) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Page]:
    """A 360 px wide phone."""
    yield from _page(chromium, 360, 780)


@pytest.fixture
def desktop(chromium: Browser) -> Iterator[Page]:
    """A 1280 px wide desktop browser."""
    yield from _page(chromium, 1280, 900)


def submit_with_errors(page: Page) -> None:
    """Send the form with an address that passes the browser's check but not ours."""
    page.get_by_label("Email address").fill("jane@gmailcom")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#email-error")).to_be_visible()


@pytest.mark.parametrize("path", ["/", "/embed"])
def test_the_box_and_its_errors_fit_a_phone(
    phone: Page, settings: Settings, lists: Lists, tmp_path: Path, path: str
) -> None:
    name = "signup" if path == "/" else "embed"
    with live_app(settings) as (_, url):
        phone.goto(url + path)
        phone.screenshot(path=str(tmp_path / f"{name}-360.png"), full_page=True)
        assert phone.evaluate(TOO_WIDE) == []
        # One column of cards on a phone.
        cards = boxes(phone.locator(".choice"))
        assert len(cards) == 3 and len(rows(cards)) == 3

        submit_with_errors(phone)
        phone.screenshot(path=str(tmp_path / f"{name}-error-360.png"), full_page=True)
        assert phone.evaluate(TOO_WIDE) == []
        # Said once, beside the field; the summary only points there.
        message = "Please check the part after the @: it needs a dot, like example.com."
        expect(phone.get_by_text(message)).to_have_count(1)
        summary = phone.get_by_role("alert")
        expect(summary).to_contain_text("Please check the form")
        expect(summary).not_to_contain_text(message)
        expect(summary.get_by_role("link", name="Email address")).to_have_attribute(
            "href", "#email"
        )
        expect(phone.get_by_label("Email address")).to_have_attribute("aria-invalid", "true")

        # The suggestion is a button that puts the address into the field, and the error goes.
        phone.get_by_role("button", name="Use jane@gmail.com").click()
        expect(phone.get_by_label("Email address")).to_have_value("jane@gmail.com")
        expect(phone.get_by_label("Email address")).to_be_focused()
        expect(phone.locator("#email-error")).to_have_count(0)
        expect(phone.locator("#email-suggestion")).to_have_count(0)
        phone.get_by_role("button", name="Subscribe").click()
        expect(phone.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert phone.url == url + ("/check-inbox" if path == "/" else "/embed/check-inbox")
        assert phone.evaluate(TOO_WIDE) == []
        # A reload asks the landing page again; nothing is posted a second time.
        assert phone.reload() is not None and phone.url.endswith("/check-inbox")


def test_the_cards_in_a_row_are_equally_tall_on_a_desktop(
    desktop: Page, settings: Settings, lists: Lists, tmp_path: Path
) -> None:
    with live_app(settings) as (_, url):
        desktop.goto(url + "/")
        desktop.screenshot(path=str(tmp_path / "signup-1280.png"), full_page=True)
        cards = boxes(desktop.locator(".choice"))
        in_rows = rows(cards)
        assert max(len(row) for row in in_rows) >= 2, "the cards should sit side by side"
        for row in in_rows:
            heights = {round(box["height"]) for box in row}
            assert max(heights) - min(heights) <= 1, row
        # Every card reads alike: a name, a description and how often it comes.
        for card in desktop.locator(".choice").all():
            expect(card.locator(".choice__name")).to_have_count(1)
            expect(card.locator(".choice__desc")).to_have_count(1)
            expect(card.locator(".choice__often")).to_have_count(1)
        expect(desktop.locator(".choice__meta")).to_have_count(0)
        expect(desktop.locator("#newsletter-hint")).to_have_text(
            "Leave all unticked for Morning Briefing."
        )


def test_the_embed_cards_fill_the_width_on_a_desktop(
    desktop: Page, settings: Settings, lists: Lists, tmp_path: Path
) -> None:
    with live_app(settings) as (_, url):
        desktop.goto(url + "/embed")
        desktop.screenshot(path=str(tmp_path / "embed-1280.png"), full_page=True)
        grid = desktop.locator(".choices__grid").bounding_box()
        assert grid is not None
        [row] = rows(boxes(desktop.locator(".choice")))
        assert len(row) == 3
        assert abs(row[0]["x"] - grid["x"]) <= 2
        assert abs((row[-1]["x"] + row[-1]["width"]) - (grid["x"] + grid["width"])) <= 3
        assert desktop.evaluate(TOO_WIDE) == []
