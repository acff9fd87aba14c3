"""The pages behind a mail's links, in real Chromium: layout on a phone, and what scripts add.

The app is served from a thread (tests/support/live_app.py); Chromium loads the page with its CSS
and scripts as a reader's phone would. Screenshots land in tmp_path for people to look at; the
assertions are on the layout Chromium computed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.settings import Settings
from newsletter.store.models import Subscriber, SubscriberStatus
from tests.support.layout import TOO_WIDE
from tests.support.live_app import live_app
from tests.support.readers import Lists, add_subscriber, make_lists, path_of

pytestmark = [pytest.mark.browser]


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def reader(db: Session, lists: Lists) -> Subscriber:
    """A reader on the offers list only, in the default time zone."""
    return add_subscriber(db, "phone@example.com", SubscriberStatus.ACTIVE, [lists.offers])


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Page]:
    """A 360 px wide phone in Berlin."""
    context = chromium.new_context(
        viewport={"width": 360, "height": 780}, timezone_id="Europe/Berlin"
    )
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_preferences_on_a_phone(
    phone: Page, settings: Settings, reader: Subscriber, lists: Lists, tmp_path: Path
) -> None:
    with live_app(settings) as (_, url):
        path = path_of(links.preferences_url(settings, links.subscriber_claim(reader)))
        phone.goto(url + path)
        phone.wait_for_load_state("networkidle")
        phone.screenshot(path=str(tmp_path / "preferences-360.png"), full_page=True)
        assert phone.evaluate(TOO_WIDE) == []

        # "How often" shows only under a ticked daily digest; a weekly one never offers it.
        how_often = phone.get_by_role("group", name="How often: Morning Briefing")
        expect(how_often).to_be_hidden()
        phone.get_by_label("Morning Briefing").check()
        expect(how_often).to_be_visible()
        expect(phone.get_by_role("group", name="How often: Weekend Reads")).to_have_count(0)

        # Still on the default zone: the browser's own is offered first and picked, saying so.
        zone = phone.locator("#timezone")
        expect(zone).to_have_value("Europe/Berlin")
        expect(phone.locator("#timezone-browser")).to_contain_text("Berlin")
        assert zone.locator("option").first.text_content() == "Your browser's time zone: Berlin"
        phone.get_by_role("button", name="Save preferences").click()
        expect(phone.get_by_text("Your preferences are saved.")).to_be_visible()
        assert phone.evaluate(TOO_WIDE) == []


def test_unsubscribe_and_its_result_on_a_phone(
    phone: Page, settings: Settings, reader: Subscriber, tmp_path: Path
) -> None:
    with live_app(settings) as (_, url):
        path = path_of(links.unsubscribe_url(settings, links.subscriber_claim(reader)))
        phone.goto(url + path)
        assert phone.evaluate(TOO_WIDE) == []
        phone.get_by_role("button", name="Unsubscribe from all newsletters").click()
        expect(phone.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
        phone.screenshot(path=str(tmp_path / "unsubscribed-360.png"), full_page=True)
        assert phone.evaluate(TOO_WIDE) == []
        expect(phone.get_by_role("button", name="Undo")).to_be_visible()
        phone.goto(url + path)
        expect(phone.get_by_role("button", name="Unsubscribe from all newsletters")).to_have_count(
            0
        )
        expect(phone.get_by_role("button", name="Subscribe again")).to_be_visible()
