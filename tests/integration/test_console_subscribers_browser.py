"""The subscribers pages in real Chromium: the first admin logs in, imports a 1,000-row CSV
through the page (the preview, then "they already consented" applied), finds one of the new
readers by search and opens their page; on a phone the pages do not scroll sideways.
Screenshots land in tmp_path (console-subscribers-*.png, console-import-preview-*.png)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.access.roles import Role
from newsletter.access.users import create_user
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.live_app import live_app

pytestmark = [pytest.mark.browser]

NEW_PASSWORD = "a passphrase of my own"
SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > window.innerWidth + 1"


def thousand_readers() -> bytes:
    """1,000 new readers, and two rows the preview refuses (a broken address, a repeat)."""
    lines = ["email,name"] + [f"reader{i:04d}@example.com,Reader {i}" for i in range(1000)]
    lines += ["not-an-address,Broken", "reader0001@example.com,Again"]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def desktop(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


def log_in_first_admin(page: Page, url: str, one_time: str) -> None:
    page.goto(f"{url}/console/")
    page.get_by_label("Email address").fill("you@example.com")
    page.get_by_label("Password").fill(one_time)
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Current password").fill(one_time)
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password again").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()


def test_import_1000_readers_through_the_page_then_find_one(
    desktop: Page, chromium: Browser, settings: Settings, db: Session, tmp_path: Path
) -> None:
    db.add(Newsletter(slug="daily", name="Daily digest"))
    _user, one_time = create_user(db, "you@example.com", Role.ADMIN)
    db.commit()
    assert one_time
    page = desktop
    with live_app(settings) as (_, url):
        log_in_first_admin(page, url, one_time)
        page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Subscribers"
        ).click()
        expect(page.get_by_role("heading", name="Subscribers", level=1)).to_be_visible()
        expect(page.get_by_role("heading", name="0 matching")).to_be_visible()
        page.get_by_role("link", name="Import a CSV file").click()

        expect(page.get_by_role("heading", name="Import subscribers", level=1)).to_be_visible()
        page.get_by_label("CSV file", exact=True).set_input_files(
            {"name": "readers.csv", "mimeType": "text/csv", "buffer": thousand_readers()}
        )
        page.get_by_label("Newsletter", exact=True).select_option("daily")
        page.get_by_label("They already consented").check()
        page.get_by_label("Where and how they consented").fill("sign-up sheet, 2024 book fair")
        page.get_by_role("button", name="Check the file").click()

        expect(page.get_by_role("heading", name="Preview of readers.csv")).to_be_visible()
        totals = page.get_by_role("table", name="Rows by verdict")
        expect(totals.get_by_role("row", name="ok 1,000")).to_be_visible()
        expect(totals.get_by_role("row", name="invalid 1")).to_be_visible()
        expect(totals.get_by_role("row", name="duplicate 1")).to_be_visible()
        problems = page.get_by_role("table", name="Rows that will not be imported")
        expect(problems).to_contain_text("same address as row 3")
        expect(problems.get_by_role("row")).to_have_count(3)  # the header and two rows
        page.screenshot(path=str(tmp_path / "console-import-preview-1280.png"), full_page=True)
        assert db.scalar(select(func.count()).select_from(Subscriber)) == 0  # nothing yet

        page.get_by_role("button", name="Import 1,000 readers").click()
        expect(page.get_by_role("status")).to_contain_text(
            "Imported 1000 readers (1000 new) into daily."
        )
        expect(page.get_by_role("heading", name="1,000 matching")).to_be_visible()
        expect(page.get_by_role("link", name="Next page")).to_be_visible()

        page.get_by_label("Address or name starts with").fill("reader0737")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("heading", name="1 matching")).to_be_visible()
        found = page.get_by_role("link", name="reader0737@example.com")
        expect(found).to_be_visible()
        page.screenshot(path=str(tmp_path / "console-subscribers-1280.png"), full_page=True)

        found.click()
        expect(page.get_by_role("heading", name="reader0737@example.com", level=1)).to_be_visible()
        expect(page.get_by_role("main")).to_contain_text("sign-up sheet, 2024 book fair")
        page.screenshot(path=str(tmp_path / "console-subscriber-1280.png"), full_page=True)
        reader_path = page.url.removeprefix(url)
        page.get_by_role("link", name="Erase this reader").click()
        expect(page.get_by_role("heading", name="What stays, and why")).to_be_visible()
        page.screenshot(path=str(tmp_path / "console-erase-1280.png"), full_page=True)

        phone = chromium.new_context(viewport={"width": 360, "height": 780})
        phone.add_cookies(page.context.cookies())
        small = phone.new_page()
        for path in ("/console/subscribers", reader_path, page.url.removeprefix(url)):
            small.goto(f"{url}{path}")
            expect(small.get_by_role("heading", level=1)).to_be_visible()
            assert not small.evaluate(SCROLLS_SIDEWAYS), path
        small.goto(f"{url}/console/subscribers")
        small.screenshot(path=str(tmp_path / "console-subscribers-360.png"), full_page=True)
        phone.close()

    db.expire_all()
    active = db.scalar(
        select(func.count())
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.status == SubscriptionStatus.ACTIVE,
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
    )
    assert active == 1000
    sources = set(db.scalars(select(ConsentRecord.source)))
    assert len(sources) == 1 and "sign-up sheet, 2024 book fair" in sources.pop()
    assert list((settings.data_dir / "imports").glob("*")) == []  # the upload is gone
