"""The console in real Chromium: the first admin (made by the CLI's core) logs in with the
one-time password, chooses their own, sees the dashboard with its charts, and logs out; on a
phone the page does not scroll sideways. Screenshots land in tmp_path (console-*.png)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy.orm import Session

from newsletter.access.roles import Role
from newsletter.access.users import create_user
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Feed,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.live_app import live_app

pytestmark = [pytest.mark.browser]

NEW_PASSWORD = "a passphrase of my own"
# The page scrolls sideways when its content is wider than the window (tables scroll in a box).
SCROLLS_SIDEWAYS = "() => document.documentElement.scrollWidth > window.innerWidth + 1"


def seed(db: Session) -> None:
    """A month of signups and a few departures, and a failing feed."""
    daily = Newsletter(slug="daily", name="Daily digest")
    db.add(daily)
    db.flush()
    now = utcnow()
    for n in range(60):
        who = Subscriber(email=f"r{n}@example.com", email_key=f"r{n}@example.com")
        who.status = SubscriberStatus.ACTIVE
        db.add(who)
        db.flush()
        confirmed = now - timedelta(days=n % 30, hours=n % 5)
        left = confirmed + timedelta(days=2) if n % 7 == 0 and n % 30 > 2 else None
        db.add(
            Subscription(
                subscriber_id=who.id,
                newsletter_id=daily.id,
                status=SubscriptionStatus.UNSUBSCRIBED if left else SubscriptionStatus.ACTIVE,
                confirmed_at=confirmed,
                unsubscribed_at=left,
            )
        )
    db.add(Feed(url="https://news.example.com/feed", title="News", last_fetched_at=now))
    db.commit()


@pytest.fixture
def desktop(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_first_admin_logs_in_sees_the_dashboard_and_logs_out(
    desktop: Page, chromium: Browser, settings: Settings, db: Session, tmp_path: Path
) -> None:
    seed(db)
    _user, one_time = create_user(db, "you@example.com", Role.ADMIN)
    db.commit()
    assert one_time
    page = desktop
    with live_app(settings) as (_, url):
        page.goto(f"{url}/console/")
        expect(page.get_by_role("heading", name="Log in to the console")).to_be_visible()
        page.get_by_label("Email address").fill("You@Example.com")
        page.get_by_label("Password").fill(one_time)
        page.get_by_role("button", name="Log in").click()

        expect(page.get_by_role("heading", name="Change your password")).to_be_visible()
        page.get_by_label("Current password").fill(one_time)
        page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        page.get_by_label("New password again").fill(NEW_PASSWORD)
        page.get_by_role("button", name="Change password").click()

        expect(page.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        expect(page.get_by_role("status")).to_contain_text("Your password is changed")
        charts = page.get_by_role("img", name="Active subscriptions per day")
        expect(charts).to_be_visible()
        assert (charts.bounding_box() or {}).get("height", 0) > 100
        expect(page.locator("rect.chart__bar--joined")).to_have_count(30)
        expect(page.get_by_role("link", name="Users")).to_be_visible()  # an admin's menu
        page.screenshot(path=str(tmp_path / "console-dashboard-1280.png"), full_page=True)

        phone = chromium.new_context(viewport={"width": 360, "height": 780})
        phone.add_cookies(page.context.cookies())
        small = phone.new_page()
        small.goto(f"{url}/console/")
        expect(small.get_by_role("heading", name="Dashboard", level=1)).to_be_visible()
        small.screenshot(path=str(tmp_path / "console-dashboard-360.png"), full_page=True)
        assert not small.evaluate(SCROLLS_SIDEWAYS)
        small.goto(f"{url}/console/users")  # wide tables scroll in their box, not the page
        expect(small.get_by_role("heading", name="Users", level=1)).to_be_visible()
        small.screenshot(path=str(tmp_path / "console-users-360.png"), full_page=True)
        assert not small.evaluate(SCROLLS_SIDEWAYS)
        phone.close()

        page.keyboard.press("Tab")  # the skip link comes first for keyboard users
        expect(page.locator(".skip-link")).to_be_focused()
        page.get_by_role("button", name="Log out").click()
        expect(page.get_by_role("status")).to_contain_text("You are logged out")
        page.goto(f"{url}/console/")
        expect(page.get_by_role("heading", name="Log in to the console")).to_be_visible()
