"""Which posts go into a digest issue, and which of them to which reader."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.content.selection import (
    NewsletterView,
    Reader,
    check_subject_template,
    digest_preheader,
    digest_subject,
    load_readers,
    plan_digest,
    post_view,
    select_for_reader,
    topic_keys,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Issue,
    IssueStatus,
    Newsletter,
    NewsletterKind,
    Post,
    SentPost,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

_ids = count(1)
NOW = datetime(2024, 6, 4, 7, 0, tzinfo=utcnow().tzinfo)


def add_post(
    db: Session,
    title: str,
    published: datetime,
    *,
    categories: tuple[str, ...] = (),
    created: datetime | None = None,
    retracted: bool = False,
) -> Post:
    """A post published (and by default ingested) at ``published``."""
    n = next(_ids)
    post = Post(
        guid=f"guid-{n}",
        link=f"https://news.example.com/{n}",
        title=title,
        summary=f"Summary of {title}.",
        categories=list(categories),
        published_at=published,
        created_at=created or published,
        retracted_at=published if retracted else None,
    )
    db.add(post)
    db.flush()
    return post


def add_newsletter(db: Session, slug: str = "daily", **fields: object) -> Newsletter:
    """A digest newsletter."""
    newsletter = Newsletter(slug=slug, name=fields.pop("name", "Morning Briefing"), **fields)
    db.add(newsletter)
    db.flush()
    return newsletter


def new_issue(
    db: Session, newsletter: Newsletter, frequency: Frequency | None = None, **fields: object
) -> Issue:
    """A draft digest issue of ``newsletter`` for a frequency cohort."""
    issue = Issue(
        newsletter_id=newsletter.id, kind=NewsletterKind.DIGEST, frequency=frequency, **fields
    )
    db.add(issue)
    db.flush()
    return issue


def titles(db: Session, issue: Issue) -> list[str]:
    """Titles of an issue's posts, in the issue's order."""
    rows = {p.id: p.title for p in db.scalars(select(Post).where(Post.id.in_(issue.post_ids)))}
    return [rows[i] for i in issue.post_ids]


def test_first_digest_looks_back_the_configured_hours(db: Session, settings: Settings) -> None:
    newsletter = add_newsletter(db)
    add_post(db, "Fresh", NOW - timedelta(hours=2))
    add_post(db, "Yesterday morning", NOW - timedelta(hours=23))
    add_post(db, "Too old", NOW - timedelta(hours=25))
    add_post(db, "Scheduled for later", NOW + timedelta(hours=1))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW) is True

    assert titles(db, issue) == ["Fresh", "Yesterday morning"]  # newest first
    assert issue.window_start == NOW - timedelta(hours=24)
    assert issue.window_end == NOW
    assert issue.subject == "Fresh, plus 1 more story"

    shorter = replace(settings, digest_lookback_hours=3)
    again = new_issue(db, newsletter)
    assert plan_digest(db, shorter, again, NOW)
    assert titles(db, again) == ["Fresh"]
    assert again.subject == "Fresh"  # one story: just its title


def test_weekly_cohort_looks_back_a_week_for_its_first(db: Session, settings: Settings) -> None:
    newsletter = add_newsletter(db)
    add_post(db, "Monday", NOW - timedelta(days=6))
    add_post(db, "Last month", NOW - timedelta(days=8))
    weekly = new_issue(db, newsletter, Frequency.WEEKLY)
    daily = new_issue(db, newsletter, Frequency.DAILY)

    assert plan_digest(db, settings, weekly, NOW)
    assert titles(db, weekly) == ["Monday"]
    assert plan_digest(db, settings, daily, NOW) is False  # a day's look-back finds nothing


def test_next_digest_starts_where_the_last_one_of_its_cohort_ended(
    db: Session, settings: Settings
) -> None:
    newsletter = add_newsletter(db)
    add_post(db, "Before the last digest", NOW - timedelta(hours=5))
    add_post(db, "After the last digest", NOW - timedelta(hours=1))
    last_end = NOW - timedelta(hours=3)
    new_issue(db, newsletter, Frequency.DAILY, status=IssueStatus.SENT, window_end=last_end)
    # Neither a draft, a cancelled issue nor another cohort's digest closes the window.
    later = NOW - timedelta(minutes=30)
    new_issue(db, newsletter, Frequency.DAILY, status=IssueStatus.DRAFT, window_end=later)
    new_issue(db, newsletter, Frequency.DAILY, status=IssueStatus.CANCELLED, window_end=later)
    new_issue(db, newsletter, Frequency.WEEKLY, status=IssueStatus.SENT, window_end=later)
    other = add_newsletter(db, "other", name="Other")
    new_issue(db, other, Frequency.DAILY, status=IssueStatus.SENT, window_end=later)

    issue = new_issue(db, newsletter, Frequency.DAILY)
    assert plan_digest(db, settings, issue, NOW)

    assert issue.window_start == last_end
    assert titles(db, issue) == ["After the last digest"]


@pytest.mark.parametrize("status", [IssueStatus.SENDING, IssueStatus.PAUSED])
def test_a_digest_still_going_out_also_closes_the_window(
    db: Session, settings: Settings, status: IssueStatus
) -> None:
    newsletter = add_newsletter(db)
    add_post(db, "Already in the running issue", NOW - timedelta(hours=2))
    new_issue(db, newsletter, status=status, window_end=NOW - timedelta(hours=1))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW) is False
    assert issue.post_ids == []


def test_categories_filter_is_case_insensitive(db: Session, settings: Settings) -> None:
    newsletter = add_newsletter(db, categories=["World", "politics"])
    add_post(db, "Election", NOW - timedelta(hours=1), categories=("POLITICS",))
    add_post(db, "Summit", NOW - timedelta(hours=2), categories=("world", "Economy"))
    add_post(db, "Match report", NOW - timedelta(hours=3), categories=("Sport",))
    add_post(db, "Uncategorised", NOW - timedelta(hours=4))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW)
    assert titles(db, issue) == ["Election", "Summit"]


def test_cap_keeps_the_newest_posts_and_skips_retracted_ones(
    db: Session, settings: Settings
) -> None:
    newsletter = add_newsletter(db)
    for hour in range(1, 7):
        add_post(db, f"Story {hour}h ago", NOW - timedelta(hours=hour), retracted=hour == 2)
    issue = new_issue(db, newsletter)

    assert plan_digest(db, replace(settings, digest_max_posts=3), issue, NOW)
    assert titles(db, issue) == ["Story 1h ago", "Story 3h ago", "Story 4h ago"]


def test_a_post_a_feed_reports_late_is_not_lost_between_digests(
    db: Session, settings: Settings
) -> None:
    newsletter = add_newsletter(db)
    last_end = NOW - timedelta(hours=3)
    new_issue(db, newsletter, status=IssueStatus.SENT, window_end=last_end)
    # Published just before the last digest, but only fetched after it went out.
    add_post(db, "Late arrival", last_end - timedelta(minutes=10), created=last_end + timedelta(1))
    # A newly added feed's back catalogue is far older than the look-back: not news.
    add_post(db, "Back catalogue", NOW - timedelta(days=30), created=NOW - timedelta(hours=1))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW + timedelta(days=1, hours=1))
    assert titles(db, issue) == ["Late arrival"]


def test_nothing_new_returns_false_and_leaves_no_posts(db: Session, settings: Settings) -> None:
    newsletter = add_newsletter(db)
    add_post(db, "Old", NOW - timedelta(days=3))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW) is False
    assert issue.post_ids == []
    assert issue.window_end == NOW


def test_plan_digest_refuses_a_campaign(db: Session, settings: Settings) -> None:
    newsletter = add_newsletter(db, kind=NewsletterKind.CAMPAIGN)
    issue = Issue(newsletter_id=newsletter.id, kind=NewsletterKind.CAMPAIGN)
    db.add(issue)
    db.flush()
    with pytest.raises(ValueError, match="not a digest"):
        plan_digest(db, settings, issue, NOW)


def test_subject_template_of_the_newsletter(db: Session, settings: Settings) -> None:
    template = (
        "{{ newsletter.name }}: {{ top.title }}{% if count > 1 %} (+{{ count - 1 }}){% endif %}"
    )
    newsletter = add_newsletter(db, subject_template=template)
    add_post(db, "Rates rise", NOW - timedelta(hours=1))
    add_post(db, "Rain due", NOW - timedelta(hours=2))
    issue = new_issue(db, newsletter)

    assert plan_digest(db, settings, issue, NOW)
    assert issue.subject == "Morning Briefing: Rates rise (+1)"


def test_broken_or_unsafe_subject_template_falls_back_to_the_default(db: Session) -> None:
    post = post_view(add_post(db, "Rates rise", NOW))
    view = NewsletterView(1, "daily", "Morning Briefing", "digest", "")
    for template in ("{{ top.title", "{{ top.__class__.__mro__ }}", "{{ nothing.here.at_all }}"):
        subject = digest_subject(replace(view, subject_template=template), [post], NOW.date())
        assert subject == "Rates rise", template
    assert check_subject_template("{{ top.title") is not None
    assert check_subject_template("{{ top.title }} and {{ count - 1 }} more") is None


def test_subject_is_one_clean_line_of_reasonable_length(db: Session) -> None:
    post = post_view(add_post(db, "A\r\nBcc: evil@example.com\ttitle " + "word " * 80, NOW))
    view = NewsletterView(1, "daily", "Morning Briefing", "digest", "")
    subject = digest_subject(view, [post], NOW.date())
    assert "\n" not in subject and "\r" not in subject and "\t" not in subject
    assert subject.startswith("A Bcc: evil@example.com title word")
    assert len(subject) <= 200 and subject.endswith("…")


def test_preheader_lists_the_other_headlines_or_the_summary(db: Session) -> None:
    first = post_view(add_post(db, "One", NOW))
    second = post_view(add_post(db, "Two", NOW))
    assert digest_preheader([first, second]) == "Also: Two"
    assert digest_preheader([first]) == "Summary of One."


def add_reader(
    db: Session,
    newsletter: Newsletter,
    address: str,
    *,
    name: str = "",
    topics: tuple[str, ...] = (),
    frequency: Frequency = Frequency.DAILY,
) -> Subscriber:
    """An active subscriber of ``newsletter``."""
    subscriber = Subscriber(
        email=address,
        email_key=address.lower(),
        name=name,
        status=SubscriberStatus.ACTIVE,
        topics=list(topics),
        token_version=2,
        timezone="Europe/Paris",
    )
    db.add(subscriber)
    db.flush()
    db.add(
        Subscription(
            subscriber_id=subscriber.id,
            newsletter_id=newsletter.id,
            status=SubscriptionStatus.ACTIVE,
            frequency=frequency,
        )
    )
    db.flush()
    return subscriber


def test_load_readers_brings_topics_frequency_and_only_the_relevant_ledger(
    db: Session, settings: Settings
) -> None:
    newsletter = add_newsletter(db)
    old = add_post(db, "Old", NOW - timedelta(days=5))
    first = add_post(db, "First", NOW - timedelta(hours=1))
    second = add_post(db, "Second", NOW - timedelta(hours=2))
    ana = add_reader(db, newsletter, "ana@example.com", name="Ana", topics=("Sport",))
    bo = add_reader(db, newsletter, "bo@example.com", frequency=Frequency.WEEKLY)
    earlier = new_issue(db, newsletter, status=IssueStatus.SENT)
    db.add_all(
        [
            SentPost(subscriber_id=ana.id, post_id=first.id, issue_id=earlier.id),
            SentPost(subscriber_id=ana.id, post_id=old.id, issue_id=earlier.id),
        ]
    )
    issue = new_issue(db, newsletter)
    assert plan_digest(db, settings, issue, NOW)
    assert issue.post_ids == [first.id, second.id]

    readers = load_readers(db, issue, [bo.id, 999_999, ana.id, bo.id])

    assert [r.email for r in readers] == ["bo@example.com", "ana@example.com"]
    bo_reader, ana_reader = readers
    assert ana_reader == Reader(
        subscriber_id=ana.id,
        email="ana@example.com",
        name="Ana",
        token_version=2,
        timezone="Europe/Paris",
        topics=("Sport",),
        frequency="daily",
        sent_post_ids=frozenset({first.id}),  # not the old post: it is not in this issue
    )
    assert bo_reader.frequency == "weekly"
    assert bo_reader.sent_post_ids == frozenset()
    assert bo_reader.topics == ()


def test_load_readers_handles_batches_larger_than_sqlite_parameter_limits(
    db: Session, settings: Settings
) -> None:
    newsletter = add_newsletter(db)
    posts = [add_post(db, f"P{i}", NOW - timedelta(minutes=i + 1)) for i in range(5)]
    issue = new_issue(db, newsletter, post_ids=[p.id for p in posts])
    subscribers = [
        Subscriber(email=f"r{i}@example.com", email_key=f"r{i}@example.com") for i in range(1200)
    ]
    db.add_all(subscribers)
    db.flush()
    db.add_all(
        SentPost(subscriber_id=s.id, post_id=posts[0].id, issue_id=issue.id)
        for s in subscribers[::2]
    )
    db.flush()

    readers = load_readers(db, issue, [s.id for s in subscribers])

    assert len(readers) == 1200
    assert sum(1 for r in readers if r.sent_post_ids == {posts[0].id}) == 600
    assert db.scalar(select(func.count()).select_from(SentPost)) == 600


def test_select_for_reader_topics_case_insensitive_and_ledger(db: Session) -> None:
    posts = [
        post_view(add_post(db, "Goal", NOW, categories=("Sport",))),
        post_view(add_post(db, "Vote", NOW, categories=("Politics", "World"))),
        post_view(add_post(db, "Plain", NOW)),
    ]
    assert select_for_reader(posts, topic_keys(()), frozenset()) == (0, 1, 2)
    assert select_for_reader(posts, topic_keys(("sport",)), frozenset()) == (0,)
    assert select_for_reader(posts, topic_keys(("WORLD", "sport")), frozenset()) == (0, 1)
    assert select_for_reader(posts, topic_keys(()), frozenset({posts[0].id})) == (1, 2)
    assert select_for_reader(posts, topic_keys(("Sport",)), frozenset({posts[0].id})) == ()
