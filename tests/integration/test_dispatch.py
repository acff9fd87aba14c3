"""Dispatch through the real parts: `newsletter worker` processes on Redis, PostgreSQL, aiosmtpd.

* 3 newsletters, 2,000 readers (mixed lists, topics, frequencies, zones), 12 posts: every
  eligible reader gets exactly one mail per issue with exactly their posts, nobody else gets any,
  every mail is well-formed with the list headers, and one-click unsubscribe works.
* A worker SIGKILLed mid-send: the restarted worker and the tick finish the issue; nobody is
  missed and at most one mail per killed connection goes twice.
* SMTP answering 4xx, refusing connections, stalling, or 5xx for one address.
* Two `celery beat` processes and a restarted one: each due firing sends exactly once.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.issues import lifecycle, schedules
from newsletter.issues.progress import Progress
from newsletter.issues.progress import progress as progress_of
from newsletter.mail.transport import close_transports
from newsletter.readers.addresses import email_hash
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_engine, get_sessionmaker, utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    Issue,
    IssueStatus,
    Newsletter,
    NewsletterKind,
    Post,
    ScheduleFiring,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from tests.support.pg_cluster import throwaway_cluster
from tests.support.services import fresh_postgres_database, rabbitmq_vhost
from tests.support.smtp import Received, SMTPSink
from tests.support.smtp_proxy import FaultProxy
from tests.support.worker import (
    ManagedProcess,
    WebProcess,
    WorkerProcess,
    redis_test_db,
    require_postgres,
    run_newsletter,
    service_env,
)
from worker.tasks import CeleryQueue

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BASE_URL = "http://127.0.0.1:5000"
TOPICS = ["World", "Politics", "Business", "Culture", "Sport"]
SECOND = {
    "World": "Politics",
    "Politics": "Business",
    "Business": "World",
    "Culture": "Sport",
    "Sport": "Culture",
}
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]


# --- The stack ------------------------------------------------------------------------------------


class BeatProcess(ManagedProcess):
    """`newsletter beat`: ready once Celery beat says it is starting."""

    name = "beat"

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["beat", "--loglevel=info"], env, log_path)

    def is_ready(self) -> bool:
        """Beat logs "beat: Starting..." when its loop begins."""
        return "beat: Starting" in self.log_text()


@dataclass
class Stack:
    """Redis, a fresh PostgreSQL database and the environment for `newsletter` processes."""

    tmp: Path
    broker_url: str
    database_url: str
    env: dict[str, str]
    settings: Settings
    processes: list[ManagedProcess] = field(default_factory=list)

    def worker(self, name: str = "worker", concurrency: int = 2, queues: str = "") -> WorkerProcess:
        """Start a worker process, on all queues or these (stopped at the end of the test)."""
        extra = ["--queues", queues] if queues else []
        worker = WorkerProcess(
            self.env, self.tmp / f"{name}.log", concurrency=concurrency, extra_args=extra
        )
        self.processes.append(worker)
        worker.start()
        return worker

    def beat(self, name: str = "beat", data_dir: Path | None = None) -> BeatProcess:
        """Start a beat process (each with its own schedule file)."""
        env = dict(self.env)
        folder = data_dir or self.tmp / name
        folder.mkdir(parents=True, exist_ok=True)
        env["NEWSLETTER_DATA_DIR"] = str(folder)
        beat = BeatProcess(env, self.tmp / f"{name}.log")
        self.processes.append(beat)
        beat.start()
        return beat

    def logs(self) -> str:
        """Every process's status and log tail, for assertion messages."""
        return "\n\n".join(p.describe(40) for p in self.processes)

    def session(self) -> Session:
        """A session on the test database."""

        return get_sessionmaker(self.database_url)()

    def queue(self) -> Any:
        """The Celery queue of an app built on this stack's settings (enqueue from the test)."""

        create_app(self.settings)  # makes its Celery app (Redis broker) the default
        return CeleryQueue()

    def wait_done(self, issue_id: int, timeout: float = 90) -> Progress:
        """Wait until the issue is finished; return its progress."""
        deadline = time.monotonic() + timeout
        progress: Progress | None = None
        while time.monotonic() < deadline:
            with self.session() as db:
                progress = progress_of(db, issue_id)
            if progress.done:
                return progress
            if progress.status == "paused":
                pytest.fail(f"issue {issue_id} paused: {progress}\n{self.logs()}")
            time.sleep(0.3)
        pytest.fail(f"issue {issue_id} not done after {timeout}s: {progress}\n{self.logs()}")


@pytest.fixture
def stack_factory(tmp_path: Path) -> Iterator[Any]:
    """Build a stack with extra NEWSLETTER_* values; processes are stopped afterwards."""
    require_postgres()
    made: list[Stack] = []
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:

        def build(smtp_url: str, on: str = "", broker: str = "", **extra: str) -> Stack:
            """A stack on the shared test database and a Redis test database as its broker,
            or ``on`` another database (a throwaway cluster), or with another ``broker``."""
            values = {
                "batch_size": "50",
                "delivery_lease_seconds": "4",
                "send_retry_base_seconds": "0.2",
                "send_retry_max_seconds": "1",
                "beat_tick_seconds": "1",
                "smtp_timeout": "3",
                "redis_url": broker_url,
                "reply_to": "desk@news.example.com",
                **extra,
            }
            env = service_env(
                tmp_path,
                database_url=on or database_url,
                broker_url=broker or broker_url,
                smtp_url=smtp_url,
                base_url=BASE_URL,
                **values,
            )
            run_newsletter(["db", "upgrade"], env)
            settings = Settings.from_env(env)
            stack = Stack(tmp_path, broker or broker_url, on or database_url, env, settings)
            made.append(stack)
            return stack

        try:
            yield build
        finally:
            for stack in made:
                for process in reversed(stack.processes):
                    process.stop(timeout=10)

            close_transports()
            dispose_engines()


# --- Seeding --------------------------------------------------------------------------------------


@dataclass
class Population:
    """Who was seeded, to compute who must get what."""

    newsletters: dict[str, int]
    posts: dict[int, tuple[str, tuple[str, ...]]]  # id -> (title, categories)
    eligible: dict[str, dict[str, tuple[str, tuple[str, ...]]]]  # slug -> email -> (freq, topics)
    ineligible: set[str]


def seed_population(database_url: str, readers: int, seed: int = 7) -> Population:
    """Newsletters, 12 posts and readers in every state, inserted in bulk (Core)."""
    rnd = random.Random(seed)
    now = utcnow()
    engine = get_engine(database_url)
    with Session(engine) as db:
        lists = {
            "world": Newsletter(
                slug="world",
                name="World Briefing",
                kind=NewsletterKind.DIGEST,
                default_frequency=Frequency.DAILY,
                categories=["World", "Politics", "Business"],
            ),
            "weekend": Newsletter(
                slug="weekend",
                name="Weekend Reads",
                kind=NewsletterKind.DIGEST,
                default_frequency=Frequency.WEEKLY,
                categories=["Culture", "Sport"],
            ),
            "offers": Newsletter(
                slug="offers", name="Offers & Announcements", kind=NewsletterKind.CAMPAIGN
            ),
        }
        db.add_all(lists.values())
        db.flush()
        posts = []
        for i in range(12):
            # Some posts carry a second category of the same newsletter (never of the other one).
            cats = [TOPICS[i % 5]] + ([SECOND[TOPICS[i % 5]]] if i % 4 == 0 else [])
            posts.append(
                Post(
                    guid=f"post-{i}",
                    link=f"https://news.example.com/2024/post-{i}",
                    title=f"Headline {i:02d} about {cats[0].lower()}",
                    summary=f"What happened in story {i}.",
                    categories=cats,
                    published_at=now - timedelta(hours=12, minutes=-i),
                    created_at=now - timedelta(hours=12, minutes=-i),
                )
            )
        db.add_all(posts)
        db.commit()
        ids = {slug: n.id for slug, n in lists.items()}
        post_info = {p.id: (p.title, tuple(p.categories)) for p in posts}

    eligible: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {s: {} for s in ids}
    ineligible: set[str] = set()
    subscriber_rows: list[dict[str, Any]] = []
    plans: list[tuple[str, list[tuple[str, str, str, Any]]]] = []  # email -> [(slug, freq, ...)]
    kinds = ["ok"] * readers + ["unsub"] * 40 + ["pending"] * 40 + ["suppressed"] * 40
    kinds += ["bounced"] * 40 + ["paused"] * 20
    for n, kind in enumerate(kinds):
        address = f"reader{n:05d}@example.com"
        topics = [] if rnd.random() < 0.4 else rnd.sample(TOPICS, rnd.randint(1, 2))
        chosen = [s for s in ids if rnd.random() < 0.55] or [rnd.choice(list(ids))]
        status = {
            "pending": SubscriberStatus.PENDING,
            "unsub": SubscriberStatus.UNSUBSCRIBED,
            "bounced": SubscriberStatus.BOUNCED,
        }.get(kind, SubscriberStatus.ACTIVE)
        subscriber_rows.append(
            {
                "email": address,
                "email_key": address,
                "name": rnd.choice(["", "Zoë", "Ada Lovelace", "李小龙", "O'Brien"]),
                "status": status.value,
                "timezone": rnd.choice(ZONES),
                "topics": topics,
                "token_version": 0,
                "created_at": now,
                "updated_at": now,
                "confirmed_at": None if kind == "pending" else now,
            }
        )
        subs = []
        for slug in chosen:
            freq = "daily" if rnd.random() < 0.5 else "weekly"
            sub_status = {"pending": "pending", "unsub": "unsubscribed"}.get(kind, "active")
            paused = now + timedelta(days=7) if kind == "paused" else None
            subs.append((slug, freq, sub_status, paused))
            if kind == "ok":
                eligible[slug][address] = (freq, tuple(topics))
        if kind != "ok":
            ineligible.add(address)
        plans.append((address, subs))
    with engine.begin() as conn:
        conn.execute(insert(Subscriber), subscriber_rows)
        id_of = dict(conn.execute(select(Subscriber.email, Subscriber.id)).all())
        conn.execute(
            insert(Subscription),
            [
                {
                    "subscriber_id": id_of[address],
                    "newsletter_id": ids[slug],
                    "status": sub_status,
                    "frequency": freq,
                    "paused_until": paused,
                    "created_at": now,
                    "confirmed_at": now,
                }
                for address, subs in plans
                for slug, freq, sub_status, paused in subs
            ],
        )
        suppressed = [
            a for a, k in zip([p[0] for p in plans], kinds, strict=True) if k == "suppressed"
        ]
        conn.execute(
            insert(Suppression),
            [
                {
                    "email_hash": email_hash(a),
                    "reason": "complaint",
                    "detail": "",
                    "created_at": now,
                }
                for a in suppressed
            ],
        )
    return Population(ids, post_info, eligible, ineligible)


def expected_posts(
    population: Population, issue_posts: list[int], topics: tuple[str, ...]
) -> set[str]:
    """Titles of the issue's posts this reader's topics select."""
    wanted = {t.casefold() for t in topics}
    return {
        population.posts[pid][0]
        for pid in issue_posts
        if not wanted or wanted & {c.casefold() for c in population.posts[pid][1]}
    }


def text_of(message: EmailMessage) -> str:
    """The plain-text part."""
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def check_message(received: Received, reply_to: str) -> EmailMessage:
    """A mail parses without defects, has both parts and every header a list mail needs."""
    msg = received.message
    assert msg.defects == [], msg.defects
    for name in (
        "From",
        "To",
        "Subject",
        "Date",
        "Message-ID",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
        "Feedback-ID",
    ):
        assert msg[name], f"{name} missing"
    assert msg["Reply-To"] == reply_to
    assert msg["Precedence"] == "bulk"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = str(msg["List-Unsubscribe"])
    assert re.search(r"<https://|<http://127\.0\.0\.1:5000/unsubscribe/", unsub)
    assert "<mailto:" in unsub
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    for part in msg.walk():
        assert part.defects == [], part.defects
    assert received.rcpt_tos[0] in str(msg["To"])
    return msg


def unsubscribe_url(msg: EmailMessage) -> str:
    """The https (here http on loopback) one-click URL of a mail."""
    match = re.search(r"<(https?://[^>]+)>", str(msg["List-Unsubscribe"]))
    assert match
    return match.group(1)


# --- The big one ----------------------------------------------------------------------------------


def test_every_eligible_reader_gets_exactly_their_digest(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    stack: Stack = stack_factory(smtp_sink.url)
    population = seed_population(stack.database_url, readers=2000)
    workers = [stack.worker("worker-a"), stack.worker("worker-b")]
    assert all(w.alive for w in workers)
    queue = stack.queue()

    issue_ids: list[int] = []
    with stack.session() as db:
        for slug, frequency in [
            ("world", Frequency.DAILY),
            ("world", Frequency.WEEKLY),
            ("weekend", Frequency.WEEKLY),
            ("weekend", Frequency.DAILY),
        ]:
            newsletter = lifecycle.find_newsletter(db, slug)
            issue = lifecycle.create_digest(db, stack.settings, newsletter, frequency=frequency)
            db.commit()
            assert issue.status == IssueStatus.DRAFT, issue.status_reason
            issue_ids.append(issue.id)
        offers = lifecycle.find_newsletter(db, "offers")
        campaign = lifecycle.create_campaign(
            db,
            stack.settings,
            offers,
            subject="Members' week: 30% off",
            body_html="<p>Thirty percent off <strong>everything</strong> for members.</p>",
        )
        db.commit()
        issue_ids.append(campaign.id)
        for issue_id in issue_ids:  # all five go out at once, sharing the workers
            lifecycle.send(db, stack.settings, issue_id, queue)

    for issue_id in issue_ids:
        progress = stack.wait_done(issue_id, timeout=110)
        assert progress.status == "sent", progress
        assert progress.failed == 0

    with stack.session() as db:
        issues = {i.id: i for i in db.scalars(select(Issue).where(Issue.id.in_(issue_ids)))}
        db.expunge_all()
    # Who must get what: (issue id, address) -> expected post titles (None for the campaign).
    expected: dict[tuple[int, str], set[str] | None] = {}
    for issue in issues.values():
        slug = {v: k for k, v in population.newsletters.items()}[issue.newsletter_id]
        for address, (freq, topics) in population.eligible[slug].items():
            if issue.kind == NewsletterKind.CAMPAIGN:
                expected[(issue.id, address)] = None
                continue
            if freq != Frequency(issue.frequency).value:
                continue
            titles = expected_posts(population, issue.post_ids, topics)
            if titles:
                expected[(issue.id, address)] = titles

    messages = smtp_sink.messages
    got = Counter((int(m.message["Feedback-ID"].split(":")[0]), m.rcpt_tos[0]) for m in messages)
    duplicates = [key for key, count in got.items() if count > 1]
    assert duplicates == []
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    assert (missing, extra) == ([], []), (missing[:5], extra[:5])
    assert not {address for _, address in got} & population.ineligible
    all_titles = {title for title, _ in population.posts.values()}
    for received in messages:
        msg = check_message(received, "desk@news.example.com")
        key = (int(msg["Feedback-ID"].split(":")[0]), received.rcpt_tos[0])
        text = text_of(msg)
        titles = expected[key]
        if titles is None:
            assert "Thirty percent off" in text
            continue
        assert {t for t in all_titles if t in text} == titles, key
    assert len(messages) > 2000

    # Deliveries agree with the mailbox: sent for each mail, skipped for readers with no match.
    with stack.session() as db:
        rows = db.execute(
            select(Delivery.issue_id, Subscriber.email, Delivery.status).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    sent = {(i, e) for i, e, s in rows if s == DeliveryStatus.SENT}
    assert sent == set(expected)
    assert {s for _, _, s in rows} <= {DeliveryStatus.SENT, DeliveryStatus.SKIPPED}

    # One-click unsubscribe (RFC 8058) from a few of the mails, through the web app.

    app = create_app(stack.settings)
    client = app.test_client()
    for received in random.Random(3).sample(messages, 4):
        msg = received.message
        url = unsubscribe_url(msg)
        path = url.split("://", 1)[1].split("/", 1)[1]
        response = client.post(f"/{path}", data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200, response.get_data(as_text=True)
        issue = issues[int(msg["Feedback-ID"].split(":")[0])]
        with stack.session() as db:
            status = db.scalar(
                select(Subscription.status)
                .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
                .where(
                    Subscriber.email == received.rcpt_tos[0],
                    Subscription.newsletter_id == issue.newsletter_id,
                )
            )
        assert status == SubscriptionStatus.UNSUBSCRIBED


# --- A worker killed mid-send ---------------------------------------------------------------------


def test_a_worker_killed_mid_send_finishes_without_loss(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    # 100 mails a second across all workers (Redis limiter): the send takes ~6 s, time to kill.
    stack: Stack = stack_factory(smtp_sink.url, send_rate_per_second="100")
    population = seed_population(stack.database_url, readers=1000, seed=11)
    worker = stack.worker("worker", concurrency=2)
    stack.beat("beat")  # the tick recovers the dead worker's rows after the lease (4 s)
    queue = stack.queue()
    with stack.session() as db:
        offers = lifecycle.find_newsletter(db, "offers")
        issue = lifecycle.create_campaign(
            db, stack.settings, offers, subject="Flash sale", body_html="<p>Now.</p>"
        )
        db.commit()
        issue_id = issue.id
        lifecycle.send(db, stack.settings, issue_id, queue)
    expected = set(population.eligible["offers"])

    deadline = time.monotonic() + 30
    while len(smtp_sink.messages) < 150 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(smtp_sink.messages) >= 150, stack.logs()
    worker.kill()  # SIGKILL the worker and its pool processes
    killed_at = len(smtp_sink.messages)
    assert killed_at < len(expected), "the send finished before the kill; slow it down"
    with stack.session() as db:
        stuck = db.scalar(
            select(Delivery.id)
            .where(Delivery.issue_id == issue_id, Delivery.status == DeliveryStatus.SENDING)
            .limit(1)
        )
    assert stuck is not None  # rows were claimed by the dead worker
    worker.start()

    progress = stack.wait_done(issue_id, timeout=100)
    assert progress.status == "sent" and progress.sent == len(expected)
    counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(counts) == expected  # nobody missed, nobody else
    twice = [a for a, c in counts.items() if c > 1]
    # At most the one mail per SMTP connection (2 pool processes) accepted but not recorded.
    assert len(twice) <= 2 and all(counts[a] == 2 for a in twice), twice


# --- SMTP trouble ---------------------------------------------------------------------------------


def seed_small(stack: Stack, readers: int = 120) -> tuple[int, set[str]]:
    """A campaign to ``readers`` readers, started; returns its id and the addresses."""
    population = seed_population(stack.database_url, readers=readers, seed=5)
    queue = stack.queue()
    with stack.session() as db:
        offers = lifecycle.find_newsletter(db, "offers")
        issue = lifecycle.create_campaign(
            db, stack.settings, offers, subject="Offer", body_html="<p>Offer.</p>"
        )
        db.commit()
        lifecycle.send(db, stack.settings, issue.id, queue)
        return issue.id, set(population.eligible["offers"])


@pytest.mark.parametrize(
    "answer",
    ["451 4.3.2 Try again later", "421 4.3.0 Service not available, closing transmission channel"],
)
def test_smtp_answering_4xx_for_a_while(
    stack_factory: Any, smtp_sink: SMTPSink, answer: str
) -> None:
    stack: Stack = stack_factory(smtp_sink.url)
    smtp_sink.handler.fail_all_with = answer
    stack.worker()
    issue_id, expected = seed_small(stack)
    time.sleep(3)
    with stack.session() as db:
        assert progress_of(db, issue_id).sent == 0
    smtp_sink.handler.fail_all_with = None
    progress = stack.wait_done(issue_id)
    assert progress.status == "sent" and progress.failed == 0
    counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(counts) == expected and max(counts.values()) == 1


def test_smtp_down_for_a_minute_then_back(stack_factory: Any, smtp_sink: SMTPSink) -> None:
    proxy = FaultProxy(smtp_sink.port).start()
    try:
        stack: Stack = stack_factory(proxy.url)
        proxy.refuse()
        stack.worker()
        issue_id, expected = seed_small(stack)
        time.sleep(60)  # every connection refused for a minute: the relay is down
        assert smtp_sink.messages == []
        with stack.session() as db:
            assert progress_of(db, issue_id).status == "sending"  # waiting, not failed or paused
        proxy.forward()
        back = time.monotonic()
        progress = stack.wait_done(issue_id)
        print(f"\nthe send finished {time.monotonic() - back:.1f} s after the relay came back")
        assert progress.status == "sent" and progress.failed == 0
        counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
        assert set(counts) == expected and max(counts.values()) == 1
    finally:
        proxy.stop()


def test_smtp_stalling_mid_send(stack_factory: Any, smtp_sink: SMTPSink) -> None:
    proxy = FaultProxy(smtp_sink.port).start()
    try:
        stack: Stack = stack_factory(proxy.url, send_rate_per_second="60")
        stack.worker()
        issue_id, expected = seed_small(stack, readers=200)
        smtp_sink.wait_for(20, timeout=30)
        proxy.stall()  # open connections are cut; new ones get no greeting (3 s timeout)
        time.sleep(5)
        stalled_at = len(smtp_sink.messages)
        assert stalled_at < len(expected)
        proxy.forward()
        progress = stack.wait_done(issue_id)
        assert progress.status == "sent" and progress.failed == 0
        counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
        assert set(counts) == expected
        # A cut connection may have lost the answer to one accepted mail: that one goes twice.
        assert sum(c - 1 for c in counts.values()) <= proxy.drops
    finally:
        proxy.stop()


def test_a_5xx_for_one_address(stack_factory: Any, smtp_sink: SMTPSink) -> None:
    stack: Stack = stack_factory(smtp_sink.url)
    stack.worker()
    population = seed_population(stack.database_url, readers=120, seed=5)
    victim = sorted(population.eligible["offers"])[7]
    smtp_sink.handler.reply_for[victim] = f"550 5.1.1 <{victim}>: no such mailbox"
    queue = stack.queue()
    with stack.session() as db:
        offers = lifecycle.find_newsletter(db, "offers")
        issue = lifecycle.create_campaign(
            db, stack.settings, offers, subject="Offer", body_html="<p>Offer.</p>"
        )
        db.commit()
        lifecycle.send(db, stack.settings, issue.id, queue)
        issue_id = issue.id
    progress = stack.wait_done(issue_id)
    assert progress.status == "sent" and progress.failed == 1
    counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(counts) == set(population.eligible["offers"]) - {victim}
    with stack.session() as db:
        reader = db.scalars(select(Subscriber).where(Subscriber.email == victim)).one()
        assert reader.status == SubscriberStatus.BOUNCED
        assert db.scalar(select(Suppression.id).where(Suppression.email_hash == email_hash(victim)))
        failed = db.scalars(
            select(Delivery).where(
                Delivery.subscriber_id == reader.id, Delivery.issue_id == issue_id
            )
        ).one()
        assert failed.status == DeliveryStatus.FAILED and failed.smtp_code == 550


@pytest.mark.parametrize("processes", [1, 2])
def test_a_list_where_one_in_ten_hard_bounces_pauses_itself_at_the_bounce_limit(
    stack_factory: Any, smtp_sink: SMTPSink, processes: int
) -> None:
    # With one worker process (one batch at a time) the guard is exact; batches side by side
    # may pass the limit by one bounce for each other batch (README, "Deliverability guard").
    stack: Stack = stack_factory(
        smtp_sink.url,
        guard_bounce_rate="0.05",
        guard_min_sample="100",
        autopause_min_attempts="100000",  # only the guard here
    )
    stack.worker(concurrency=processes)
    population = seed_population(stack.database_url, readers=600, seed=11)
    readers = sorted(population.eligible["offers"])
    dead = set(random.Random(11).sample(readers, len(readers) // 10))
    for address in dead:
        smtp_sink.handler.reply_for[address] = f"550 5.1.1 <{address}>: no such mailbox"
    queue = stack.queue()
    with stack.session() as db:
        offers = lifecycle.find_newsletter(db, "offers")
        issue = lifecycle.create_campaign(
            db, stack.settings, offers, subject="Offer", body_html="<p>Offer.</p>"
        )
        db.commit()
        lifecycle.send(db, stack.settings, issue.id, queue)
        issue_id = issue.id
    deadline = time.monotonic() + 90
    progress = None
    while time.monotonic() < deadline:
        with stack.session() as db:
            progress = progress_of(db, issue_id)
        if progress.status != "sending":
            break
        time.sleep(0.3)
    assert progress is not None and progress.status == "paused", f"{progress}\n{stack.logs()}"
    time.sleep(1.5)  # nothing more goes out once paused
    with stack.session() as db:
        progress = progress_of(db, issue_id)
        row = db.get(Issue, issue_id)
        assert row is not None
        counters = (row.bounce_count, row.mailed_count)
    bounced, mailed = progress.failed, progress.sent + progress.failed
    assert counters == (bounced, mailed)
    assert len(smtp_sink.messages) == progress.sent
    # Never past 5% of max(mails, 100) (but for the allowance), and with one batch at a time
    # not paused early either: one more bounce would have passed the limit.
    assert bounced <= 0.05 * max(mailed, 100) + (processes - 1), (bounced, mailed)
    if processes == 1:
        assert bounced + 1 > 0.05 * max(mailed + 1, 100)
    assert progress.queued > 0  # the rest waits for an editor
    assert "hard-bounced" in progress.reason and "5% limit" in progress.reason
    shown = run_newsletter(["issues", "show", str(issue_id)], stack.env).stdout
    named = re.search(r"reason: +auto-paused: (\d+) of ", shown)
    assert named, shown
    # The reason gives what the batch that paused saw: a batch beside it may add its one bounce.
    assert int(named.group(1)) == bounced if processes == 1 else int(named.group(1)) <= bounced


# --- Beat -----------------------------------------------------------------------------------------


def test_two_beats_and_a_restarted_one_fire_each_slot_once(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    stack: Stack = stack_factory(smtp_sink.url)
    population = seed_population(stack.database_url, readers=80, seed=3)
    with stack.session() as db:
        # Created a minute ago with "every minute": the current minute's slot is due now.
        schedules.create_schedule(
            db,
            newsletter="world",
            cron="* * * * *",
            frequency="daily",
            now=utcnow() - timedelta(minutes=1),
        )
        db.commit()
    stack.worker()
    beat_a, beat_b = stack.beat("beat-a"), stack.beat("beat-b")
    deadline = time.monotonic() + 60
    issue_id = None
    while time.monotonic() < deadline and issue_id is None:
        with stack.session() as db:
            issue_id = db.scalar(select(Issue.id).where(Issue.status == IssueStatus.SENT))
        time.sleep(0.5)
    assert issue_id is not None, stack.logs()
    beat_a.restart()
    time.sleep(4)  # more ticks from both beats, one of them fresh
    with stack.session() as db:
        firings = db.scalars(select(ScheduleFiring)).all()
        issues = db.scalars(select(Issue)).all()
    # Every firing is one slot (one minute), each made one issue; the first one sent the posts
    # and later ones (if a new minute began) had nothing new.
    assert len({(f.schedule_id, f.due_at) for f in firings}) == len(firings)
    assert [i.status for i in issues].count(IssueStatus.SENT) == 1
    expected = {
        a
        for a, (freq, topics) in population.eligible["world"].items()
        if freq == "daily"
        and expected_posts(population, next(i for i in issues if i.id == issue_id).post_ids, topics)
    }
    counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(counts) == expected and max(counts.values()) == 1
    assert beat_b.alive


# --- The CLI against the real worker --------------------------------------------------------------


def test_digest_send_wait_from_the_command_line(stack_factory: Any, smtp_sink: SMTPSink) -> None:
    stack: Stack = stack_factory(smtp_sink.url)
    population = seed_population(stack.database_url, readers=60, seed=9)
    stack.worker()
    result = run_newsletter(
        ["digest", "send", "--newsletter", "weekend", "--frequency", "weekly", "--wait"],
        stack.env,
        timeout=90,
    )
    created = re.match(r"Issue (\d+) created: ", result.stdout)
    assert created, result.stdout
    issue_id = int(created.group(1))
    final = re.search(rf"issue {issue_id}: sent, (\d+)/(\d+) sent, 0 failed", result.stdout)
    assert final, result.stdout
    with stack.session() as db:
        issue = lifecycle.get_issue(db, issue_id)
        post_ids = list(issue.post_ids)
    expected = {
        a
        for a, (freq, topics) in population.eligible["weekend"].items()
        if freq == "weekly" and expected_posts(population, post_ids, topics)
    }
    assert {m.rcpt_tos[0] for m in smtp_sink.messages} == expected
    assert int(final.group(1)) == len(expected) == len(smtp_sink.messages)
    again = run_newsletter(["issues", "resume", str(issue_id)], stack.env, check=False)
    assert again.returncode == 1
    assert f"Issue {issue_id} is sent; only paused or failed issues can be resumed." in again.stderr


# --- Faults mid-send ------------------------------------------------------------------------------


def start_campaign(stack: Stack, subject: str) -> int:
    """Create a campaign to the offers list and start it; its id."""
    queue = stack.queue()
    with stack.session() as db:
        offers = lifecycle.find_newsletter(db, "offers")
        issue = lifecycle.create_campaign(
            db, stack.settings, offers, subject=subject, body_html=f"<p>{subject}.</p>"
        )
        db.commit()
        lifecycle.send(db, stack.settings, issue.id, queue)
        return issue.id


def wait_until_sent(stack: Stack, smtp_sink: SMTPSink, count: int, timeout: float = 60) -> None:
    """Wait until the sink holds ``count`` mails: the send is well under way."""
    deadline = time.monotonic() + timeout
    while len(smtp_sink.messages) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(smtp_sink.messages) >= count, stack.logs()


def assert_each_mailed_once(
    stack: Stack, smtp_sink: SMTPSink, issue_id: int, expected: set[str], twice_at_most: int
) -> None:
    """The send finished, everyone expected got it, and at most ``twice_at_most`` got it twice."""
    progress = stack.wait_done(issue_id, timeout=120)
    assert progress.status == "sent" and progress.sent == len(expected), progress
    counts = Counter(m.rcpt_tos[0] for m in smtp_sink.messages)
    assert set(counts) == expected  # nobody missed, nobody else
    twice = [a for a, c in counts.items() if c > 1]
    assert len(twice) <= twice_at_most and all(counts[a] == 2 for a in twice), twice


# --- The fast lane --------------------------------------------------------------------------------


def test_a_confirmation_during_a_rate_limited_send_arrives_within_seconds(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    # 20,000 readers at 200 mails a second: the send would take ~100 s. Workers as compose runs
    # them: two processes on bulk and housekeeping, one on the transactional queue alone.
    stack: Stack = stack_factory(smtp_sink.url, send_rate_per_second="200", batch_size="100")
    population = seed_population(stack.database_url, readers=20_000, seed=13)
    stack.worker("worker", concurrency=2, queues="bulk,housekeeping")
    stack.worker("mailer", concurrency=1, queues="transactional")
    web = WebProcess(stack.env, stack.tmp / "web.log")
    stack.processes.append(web)
    web.start()
    issue_id = start_campaign(stack, "Big news")
    assert len(population.eligible["offers"]) > 5_000
    wait_until_sent(stack, smtp_sink, 600)

    address = "fast.lane@example.com"
    asked = time.monotonic()
    answer = requests.post(
        f"{web.url}/subscribe", data={"email": address, "newsletter": "world"}, timeout=10
    )
    assert answer.status_code == 200
    while not smtp_sink.to(address) and time.monotonic() < asked + 30:
        time.sleep(0.05)
    waited = time.monotonic() - asked
    sent_so_far = len(smtp_sink.messages)
    print(f"\nconfirmation {waited:.2f} s after the signup, {sent_so_far} mails into the send")
    assert smtp_sink.to(address), stack.logs()
    assert waited < 10, f"the confirmation took {waited:.1f} s"
    with stack.session() as db:
        assert lifecycle.get_issue(db, issue_id).status == IssueStatus.SENDING  # still going
        lifecycle.cancel(db, issue_id)
        db.commit()


# --- PostgreSQL restarted mid-send ----------------------------------------------------------------


def test_a_send_carries_on_within_seconds_of_postgresql_coming_back(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    # Its own cluster, so the machine's server is never restarted; the default 300 s lease, so
    # nothing but the batches' own release can bring the cut-off rows back in time.
    with throwaway_cluster() as cluster:
        stack: Stack = stack_factory(
            smtp_sink.url,
            on=cluster.url,
            send_rate_per_second="150",
            delivery_lease_seconds="300",
        )
        population = seed_population(stack.database_url, readers=3000, seed=17)
        stack.worker("worker", concurrency=2)
        issue_id = start_campaign(stack, "Restart")
        dispose_engines()  # the test's own connections must not hold the server up
        expected = set(population.eligible["offers"])
        wait_until_sent(stack, smtp_sink, 200)

        cut_at = utcnow()
        cluster.stop()  # every connection cut mid-batch
        time.sleep(5)
        cluster.start()
        back = time.monotonic()

        def cut_off() -> int:
            """Rows that batches held when the server went away and still hold."""
            with stack.session() as db:
                return int(
                    db.scalar(
                        select(func.count(Delivery.id)).where(
                            Delivery.issue_id == issue_id,
                            Delivery.status == DeliveryStatus.SENDING,
                            Delivery.claimed_at < cut_at,
                        )
                    )
                    or 0
                )

        while cut_off() and time.monotonic() < back + 60:
            time.sleep(0.2)
        resumed = time.monotonic() - back
        print(
            f"\nthe cut-off batches' rows were back in the send {resumed:.1f} s after the restart"
        )
        assert not cut_off() and resumed < 30, f"{resumed:.1f} s\n{stack.logs()}"

        assert_each_mailed_once(stack, smtp_sink, issue_id, expected, twice_at_most=2)
        dispose_engines()


# --- Redis wiped mid-send -------------------------------------------------------------------------


def test_a_send_survives_redis_losing_every_queued_task(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    # Redis keeps nothing on disk: a restart empties every queue, unacknowledged tasks included.
    # The database knows what is left; beat's tick finds the batches whose tasks vanished.
    stack: Stack = stack_factory(smtp_sink.url, send_rate_per_second="150")
    population = seed_population(stack.database_url, readers=1500, seed=19)
    stack.worker("worker", concurrency=2)
    stack.beat("beat")
    issue_id = start_campaign(stack, "Wiped")
    expected = set(population.eligible["offers"])
    wait_until_sent(stack, smtp_sink, 150)

    redis.Redis.from_url(stack.broker_url).flushdb()  # what a restarted, empty Redis looks like
    wiped_at = len(smtp_sink.messages)
    assert wiped_at < len(expected), "the send finished before the wipe; slow it down"

    assert_each_mailed_once(stack, smtp_sink, issue_id, expected, twice_at_most=0)


# --- RabbitMQ as the broker -----------------------------------------------------------------------


def test_a_send_is_exactly_once_with_rabbitmq_as_the_broker(
    stack_factory: Any, smtp_sink: SMTPSink
) -> None:
    # The same engine on AMQP: a worker killed mid-send has its unacknowledged batches
    # redelivered by RabbitMQ at once; Redis stays the rate limiter's store.
    with rabbitmq_vhost() as amqp_url:
        stack: Stack = stack_factory(smtp_sink.url, broker=amqp_url, send_rate_per_second="150")
        assert stack.settings.broker_url.startswith("amqp://")
        population = seed_population(stack.database_url, readers=1500, seed=23)
        worker = stack.worker("worker", concurrency=2)
        stack.beat("beat")
        issue_id = start_campaign(stack, "Over AMQP")
        expected = set(population.eligible["offers"])
        wait_until_sent(stack, smtp_sink, 150)
        worker.kill()
        assert len(smtp_sink.messages) < len(expected), "the send finished before the kill"
        worker.start()

        assert_each_mailed_once(stack, smtp_sink, issue_id, expected, twice_at_most=2)
        for process in reversed(stack.processes):
            process.stop(timeout=10)  # before the vhost goes
