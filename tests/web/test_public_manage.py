"""Leaving and managing: one-click unsubscribe (RFC 8058), the unsubscribe page, preferences."""

from __future__ import annotations

import re
from html import unescape

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    Post,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.readers import Lists, add_subscriber, make_lists, path_of, row_counts


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def reader(db: Session, lists: Lists) -> Subscriber:
    return add_subscriber(
        db, "reader@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers], name="Ann"
    )


def unsubscribe_path(settings: Settings, reader: Subscriber, newsletter_id: int | None) -> str:
    url = links.unsubscribe_url(settings, links.subscriber_claim(reader, newsletter_id))
    return path_of(url)


def preferences_path(settings: Settings, reader: Subscriber) -> str:
    return path_of(links.preferences_url(settings, links.subscriber_claim(reader)))


def statuses(db: Session, reader: Subscriber) -> dict[int, SubscriptionStatus]:
    db.expire_all()
    rows = db.scalars(select(Subscription).where(Subscription.subscriber_id == reader.id))
    return {s.newsletter_id: s.status for s in rows}


def reader_status(db: Session, reader: Subscriber) -> SubscriberStatus:
    db.expire_all()
    found = db.get(Subscriber, reader.id)
    assert found is not None
    return found.status


# --- one-click ---------------------------------------------------------------------------------


def test_one_click_urlencoded_leaves_the_list_without_cookie_or_redirect(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, lists.daily.id)
    response = client.post(
        path,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert "Location" not in response.headers
    assert len(response.get_data()) < 100
    assert statuses(db, reader) == {
        lists.daily.id: SubscriptionStatus.UNSUBSCRIBED,
        lists.offers.id: SubscriptionStatus.ACTIVE,
    }
    assert reader_status(db, reader) == SubscriberStatus.ACTIVE


def test_one_click_multipart_with_all_lists_token(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, None)
    response = client.post(
        path, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers
    assert set(statuses(db, reader).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    assert reader_status(db, reader) == SubscriberStatus.UNSUBSCRIBED
    # Posting again is harmless.
    again = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200


def test_one_click_with_a_session_cookie_still_sets_none(
    client: FlaskClient, settings: Settings, lists: Lists, reader: Subscriber
) -> None:
    client.get("/")  # the signup page puts a CSRF token in the session
    response = client.post(
        unsubscribe_path(settings, reader, None), data={"List-Unsubscribe": "One-Click"}
    )
    assert response.status_code == 200
    assert "Set-Cookie" not in response.headers


def test_get_of_unsubscribe_link_changes_nothing(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    before = row_counts(db)
    before_status = statuses(db, reader)
    for newsletter_id in (lists.daily.id, None):
        response = client.get(unsubscribe_path(settings, reader, newsletter_id))
        assert response.status_code == 200
        assert "Set-Cookie" not in response.headers
        assert response.headers["Cache-Control"] == "no-store"
    assert row_counts(db) == before
    assert statuses(db, reader) == before_status
    assert reader_status(db, reader) == SubscriberStatus.ACTIVE


def test_unsubscribe_page_offers_button_pause_weekly_and_leave_all(
    client: FlaskClient, settings: Settings, lists: Lists, reader: Subscriber
) -> None:
    html = client.get(unsubscribe_path(settings, reader, lists.daily.id)).get_data(as_text=True)
    assert "Unsubscribe from Morning Briefing" in html
    assert re.search(r'<form method="post"', html)
    for weeks in ("2", "4", "8"):
        assert f'name="weeks" value="{weeks}"' in html
    assert 'value="weekly"' in html and "Switch to weekly" in html
    assert "Leave all newsletters" in html
    assert "Offers &amp; Announcements" in html  # named as another list the reader is on
    assert "Manage all your preferences" in html


def undo_of(html: str) -> str:
    """The undo token of the page shown after leaving."""
    match = re.search(r'name="undo" value="([^"]+)"', html)
    assert match, "the page offers no undo"
    return match.group(1)


def test_unsubscribe_button_then_undo(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, lists.daily.id)
    response = client.post(path, data={"action": "unsubscribe"})
    assert response.status_code == 200
    html = unescape(response.get_data(as_text=True))
    assert "You're unsubscribed" in html and "Morning Briefing" in html
    assert "next 15 minutes" in html
    assert statuses(db, reader)[lists.daily.id] == SubscriptionStatus.UNSUBSCRIBED
    # Without the page's undo token, nothing comes back.
    nothing = client.post(path, data={"action": "undo"})
    assert nothing.status_code == 400
    assert statuses(db, reader)[lists.daily.id] == SubscriptionStatus.UNSUBSCRIBED

    back = client.post(path, data={"action": "undo", "undo": undo_of(html)})
    assert back.status_code == 200
    assert "Welcome back" in back.get_data(as_text=True)
    assert statuses(db, reader)[lists.daily.id] == SubscriptionStatus.ACTIVE


def test_leave_all_from_a_list_link(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, lists.daily.id)
    response = client.post(path, data={"action": "all"})
    assert response.status_code == 200
    assert set(statuses(db, reader).values()) == {SubscriptionStatus.UNSUBSCRIBED}
    assert reader_status(db, reader) == SubscriberStatus.UNSUBSCRIBED
    back = client.post(path, data={"action": "undo", "undo": undo_of(response.text)})
    assert "Welcome back" in back.get_data(as_text=True)
    assert set(statuses(db, reader).values()) == {SubscriptionStatus.ACTIVE}
    assert reader_status(db, reader) == SubscriberStatus.ACTIVE


def test_pause_and_weekly_from_the_unsubscribe_page(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, lists.daily.id)
    response = client.post(path, data={"action": "pause", "weeks": "8"})
    assert response.status_code == 200
    assert "next 8 weeks" in response.get_data(as_text=True)
    db.expire_all()
    sub = db.scalar(
        select(Subscription).where(
            Subscription.subscriber_id == reader.id, Subscription.newsletter_id == lists.daily.id
        )
    )
    assert sub is not None and sub.paused_until is not None
    assert sub.status == SubscriptionStatus.ACTIVE

    response = client.post(path, data={"action": "weekly"})
    assert "Switched to weekly" in response.get_data(as_text=True)
    db.expire_all()
    assert db.get(Subscription, sub.id).frequency == Frequency.WEEKLY  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "data",
    [{"action": "pause", "weeks": "3"}, {"action": "explode"}, {"action": "pause\r\nX: y"}],
)
def test_bad_unsubscribe_actions_are_400(
    client: FlaskClient,
    settings: Settings,
    db: Session,
    lists: Lists,
    reader: Subscriber,
    data: dict[str, str],
) -> None:
    before = row_counts(db)
    before_status = statuses(db, reader)
    response = client.post(unsubscribe_path(settings, reader, lists.daily.id), data=data)
    assert response.status_code == 400
    assert row_counts(db) == before and statuses(db, reader) == before_status


def test_revoked_and_forged_unsubscribe_links(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = unsubscribe_path(settings, reader, None)
    forged = path[:-5] + ("xxxxx" if not path.endswith("xxxxx") else "yyyyy")
    assert client.get(forged).status_code == 400
    assert client.post(forged, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    reader.token_version += 1
    db.commit()
    # After "log out all links" an old unsubscribe link may still leave (RFC 8058), no more.
    response = client.get(path)
    assert response.status_code == 200
    assert "can only unsubscribe you" in response.get_data(as_text=True)
    assert reader_status(db, reader) == SubscriberStatus.ACTIVE
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert reader_status(db, reader) == SubscriberStatus.UNSUBSCRIBED
    # A reader row gone (or another address behind the id): the link is dead.
    db.delete(db.get(Subscriber, reader.id))
    db.commit()
    gone = client.get(path)
    assert gone.status_code == 404 and "no longer in use" in gone.get_data(as_text=True)
    # A mail provider's one-click POST for them is told what is true: nobody is subscribed.
    one_click = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert (
        one_click.status_code == 200
        and one_click.get_data(as_text=True) == "You are unsubscribed.\n"
    )


# --- preferences -------------------------------------------------------------------------------


def _prefs_csrf(client: FlaskClient, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def test_preferences_page_shows_current_choices(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:

    db.add(
        Post(guid="g", link="https://n/g", title="t", categories=["Sport"], published_at=utcnow())
    )
    db.commit()
    before = row_counts(db)
    response = client.get(preferences_path(settings, reader))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "reader@example.com" in html
    ticked = re.findall(r'name="newsletter" id="newsletter-(\d+)"\s+value="\d+" checked', html)
    assert sorted(int(t) for t in ticked) == sorted([lists.daily.id, lists.offers.id])
    assert f'name="frequency_{lists.daily.id}" value="daily" checked' in html
    assert f'name="frequency_{lists.offers.id}"' not in html  # campaigns have no frequency
    for topic in ("Politics", "Sport", "World"):
        assert f'name="topics" value="{topic}"' in html
    assert '<option value="Europe/Berlin">' in html
    assert "Email me my data" in html
    assert "Staff memo" not in html  # private list the reader is not on
    assert row_counts(db) == before


def test_preferences_save_and_redirect(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = preferences_path(settings, reader)
    token = _prefs_csrf(client, path)
    response = client.post(
        path,
        data={
            "csrf_token": token,
            "name": "Ann Lee",
            "timezone": "America/New_York",
            "newsletter": [str(lists.daily.id), str(lists.weekly.id)],
            f"frequency_{lists.daily.id}": "weekly",
            f"frequency_{lists.weekly.id}": "weekly",
            "topics": ["Politics"],
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith("?done=saved")
    db.expire_all()
    found = db.get(Subscriber, reader.id)
    assert found is not None
    assert found.name == "Ann Lee" and found.timezone == "America/New_York"
    assert found.topics == ["Politics"]
    current = {s.newsletter_id: s for s in found.subscriptions}
    assert current[lists.daily.id].frequency == Frequency.WEEKLY
    assert current[lists.weekly.id].status == SubscriptionStatus.ACTIVE  # no new opt-in
    assert current[lists.offers.id].status == SubscriptionStatus.UNSUBSCRIBED
    record = db.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == reader.id))
    assert record is not None and record.newsletter_slugs == ["weekend"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Your preferences are saved." in page


def test_unticking_everything_unsubscribes(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    path = preferences_path(settings, reader)
    token = _prefs_csrf(client, path)
    response = client.post(path, data={"csrf_token": token, "name": "", "timezone": "UTC"})
    assert response.status_code == 303
    assert reader_status(db, reader) == SubscriberStatus.UNSUBSCRIBED


@pytest.mark.parametrize(
    "change",
    [
        {"timezone": "Mars/Base"},
        {"timezone": "Europe/Berlin\r\n"},
        {"newsletter": "99999"},
        {"topics": "Gossip"},
        {"name": "x" * 201},
        {"name": "Ann\nBcc: evil@example.com"},
        {"frequency_%d": "hourly"},
    ],
)
def test_preferences_bad_input_is_400_and_changes_nothing(
    client: FlaskClient,
    settings: Settings,
    db: Session,
    lists: Lists,
    reader: Subscriber,
    change: dict[str, str],
) -> None:
    path = preferences_path(settings, reader)
    data = {
        "csrf_token": _prefs_csrf(client, path),
        "name": "Ann",
        "timezone": "UTC",
        "newsletter": [str(lists.daily.id)],
    }
    data.update({k.replace("%d", str(lists.daily.id)): v for k, v in change.items()})
    before = row_counts(db)
    before_status = statuses(db, reader)
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "Please check the form" in response.get_data(as_text=True)
    assert row_counts(db) == before and statuses(db, reader) == before_status
    db.expire_all()
    assert db.get(Subscriber, reader.id).name == "Ann"  # type: ignore[union-attr]


def test_preferences_post_needs_csrf(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    before = row_counts(db)
    response = client.post(preferences_path(settings, reader), data={"timezone": "UTC"})
    assert response.status_code == 400
    assert row_counts(db) == before


def test_preferences_offer_no_download_only_a_mailed_link(
    client: FlaskClient, settings: Settings, lists: Lists, reader: Subscriber
) -> None:
    page = client.get(preferences_path(settings, reader)).get_data(as_text=True)
    assert "Email me my data" in page and "export.json" not in page
    assert client.get(preferences_path(settings, reader) + "/export.json").status_code == 404


def test_preferences_name_a_topic_apart_from_a_newsletter_and_offer_weekly_only_for_daily(
    client: FlaskClient, settings: Settings, db: Session, lists: Lists, reader: Subscriber
) -> None:
    lists.offers.name = "Offers"
    db.add(
        Post(guid="o", link="https://n/o", title="o", categories=["Offers"], published_at=utcnow())
    )
    db.commit()
    html = client.get(preferences_path(settings, reader)).get_data(as_text=True)
    assert 'value="Offers"> Offers stories</label>' in html
    assert f'name="frequency_{lists.daily.id}"' in html
    assert f'name="frequency_{lists.weekly.id}"' not in html  # a weekly digest stays weekly
    assert '<optgroup label="Europe">' in html and ">Kolkata</option>" in html
    assert "Calcutta" not in html
