"""Feeds: the four formats, fetching from a real local HTTP server, failures, backoff, the task."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.cli.feeds import feeds_group
from newsletter.content.feed_formats import FeedFormatError, parse_feed
from newsletter.content.feeds import (
    FeedError,
    Fetched,
    _claim,
    add_feed,
    backoff,
    fetch,
    find_feed,
    ingest_due_feeds,
    ingest_source,
    list_feeds,
    normalise_source,
    remove_feed,
)
from newsletter.settings import Settings
from newsletter.store.models import MAX_ID, Feed, Post
from tests.support.feed_server import FeedServer, Route
from worker.tasks import ingest_feed, ingest_feeds

HUGE = str(MAX_ID + 1)  # one past the largest id an id column holds

DATA = Path(__file__).parents[1] / "data" / "feeds"


def data(name: str) -> bytes:
    return (DATA / name).read_bytes()


# --- a real HTTP server serving the fixtures (tests/support/feed_server.py) ----------------------


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings, allowed to fetch from the local server on 127.0.0.1."""
    return replace(settings, feed_allow_private_networks=True)


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Settings with a short fetch timeout, for the failure tests."""
    return replace(settings, feed_timeout_seconds=0.5)


def local_fetch(url: str, **options: Any) -> Fetched:
    """fetch() allowed to reach the local test server."""
    return fetch(url, allow_private_networks=True, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def posts(db: Session) -> list[Post]:
    db.expire_all()
    return list(db.scalars(select(Post).order_by(Post.published_at.desc())))


# --- parsing ------------------------------------------------------------------------------------


def test_rss_sample_feed_with_wordpress_details() -> None:
    parsed = parse_feed(data("sample-feed.xml"), url="https://news.example.com/feed/")
    assert parsed.title == "The Daily Brief"
    assert parsed.warnings == []
    assert len(parsed.entries) == 4
    first = parsed.entries[0]
    assert first.guid == "https://news.example.com/?p=1041"
    assert first.link.endswith("/pakistan-iran-de-escalate-border-tensions/")
    assert first.author == "Lillian Hocker"
    assert first.categories == ("World", "Asia")
    assert first.image_url == "https://news.example.com/wp-content/uploads/2024/07/border.jpg"
    assert first.published_at == datetime(2024, 7, 14, 8, 0, tzinfo=UTC)
    assert "<h2>Diplomatic Dialogue Ensues</h2>" in first.content_html  # content:encoded
    assert "Pakistan\u2019s Foreign Minister" in first.content_html
    assert first.summary.startswith("Pakistan and Iran have reached")
    assert "&#8230;" not in first.summary and "<" not in first.summary
    titles = [e.title for e in parsed.entries]
    assert (
        "Nikki Haley\u2019s Political Odyssey: Navigating the Republican Landscape "
        "Amid Trump\u2019s Influence" in titles
    )


def test_wordpress_feed_is_sanitised_and_entities_decoded() -> None:
    parsed = parse_feed(data("wordpress.xml"), url="https://wp.example.com/feed/")
    picks, no_guid = parsed.entries
    assert picks.title == "Editor\u2019s picks: the week\u2019s best stories"
    assert picks.published_at == datetime(2024, 7, 14, 22, 30, tzinfo=UTC)
    html = picks.content_html
    for bad in (
        "<script",
        "onclick",
        "onerror",
        "javascript:",
        "<iframe",
        "<svg",
        "<form",
        "style",
    ):
        assert bad not in html
    assert '<a href="https://wp.example.com/2024/07/related/" rel="noopener">' in html
    assert "<h2>Big heading</h2>" in html and "<figcaption>A caption</figcaption>" in html
    assert picks.summary == "The best of the week\u2019s journalism, chosen by our editors…"
    assert picks.image_url == "https://wp.example.com/uploads/lead.jpg"
    assert picks.categories == ("Culture", "Editor's Picks")
    # Without a guid the link identifies the post; an image enclosure is its picture.
    assert no_guid.guid == no_guid.link == "https://wp.example.com/2024/07/no-guid/"
    assert no_guid.image_url == "https://wp.example.com/uploads/enclosure.png"


def test_atom_feed() -> None:
    parsed = parse_feed(data("atom.xml"), url="https://blog.example.org/atom.xml")
    assert parsed.title == "Example Atom Blog"
    rally, updated_only = parsed.entries
    assert rally.title == "Markets rally after rate decision"
    assert rally.link == "https://blog.example.org/2024/07/markets-rally"
    assert rally.published_at == datetime(2024, 7, 14, 7, 30, tzinfo=UTC)  # +02:00 → UTC
    assert rally.summary == "Stocks climbed on Sunday & bonds slipped."
    assert 'href="https://blog.example.org/charts"' in rally.content_html
    assert rally.categories == ("Business", "Markets")  # the label, when given
    assert rally.author == "Ada Writer"
    # No <published>: the <updated> time, converted from -05:00.
    assert updated_only.published_at == datetime(2024, 7, 14, 4, 15, tzinfo=UTC)
    assert "<strong>content</strong>" in updated_only.content_html


def test_json_feed_1_1() -> None:
    parsed = parse_feed(data("feed.json"), url="https://json.example.net/feed.json")
    assert parsed.title == "Example JSON Feed"
    second, first = parsed.entries
    assert second.guid == "json-2"
    assert second.link == "https://json.example.net/2024/07/14/second"
    assert second.title == "Second & newest"
    assert second.published_at == datetime(2024, 7, 14, 10, 0, tzinfo=UTC)
    assert second.content_html == "<p>Hello <b>world</b></p>"
    assert second.author == "Jo Reporter"
    assert second.categories == ("Science", "Space")
    assert second.image_url == "https://json.example.net/images/second.jpg"
    assert first.author == "The Desk"  # the feed's author
    assert first.published_at == datetime(2024, 7, 13, 12, 0, tzinfo=UTC)
    assert "&lt;angle&gt;" in first.content_html and first.content_html.count("<p>") == 2
    assert any("skipped" in w for w in parsed.warnings)  # the item without a url


def test_json_feed_1_0_with_numeric_id_and_single_author() -> None:
    (entry,) = parse_feed(data("feed-1.0.json")).entries
    assert (entry.guid, entry.author, entry.title) == ("42", "Old Author", "Numeric id")


def test_malformed_xml_still_yields_entries_with_a_warning() -> None:
    parsed = parse_feed(data("malformed.xml"))
    assert [e.title for e in parsed.entries] == ["Tom & Jerry return"]
    assert any("not well-formed" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (data("not-a-feed.html"), "not an RSS, Atom or JSON feed"),
        (b"\x00\x01garbage", "not"),
        (b"{not json", "not valid JSON"),
        (b'{"title": "no version"}', "not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": 3}', "items"),
        (b"", "not"),
    ],
)
def test_unreadable_documents_raise(content: bytes, message: str) -> None:
    with pytest.raises(FeedFormatError, match=message):
        parse_feed(content)


def test_a_document_that_looks_like_a_path_is_not_opened() -> None:
    # feedparser opens a str/bytes argument as a file; we hand it a stream, so this is XML.
    with pytest.raises(FeedFormatError):
        parse_feed(str(DATA / "sample-feed.xml").encode())


# --- fetching -----------------------------------------------------------------------------------


def test_fetch_sends_conditional_get_and_handles_304(server: FeedServer) -> None:
    server.routes["/feed"] = Route(
        data("sample-feed.xml"), etag='"v1"', last_modified="Sun, 14 Jul 2024 09:30:00 GMT"
    )
    first = local_fetch(server.url("/feed"), agent="newsletter-test")
    assert first.content == data("sample-feed.xml")
    assert (first.etag, first.last_modified) == ('"v1"', "Sun, 14 Jul 2024 09:30:00 GMT")
    second = local_fetch(server.url("/feed"), etag=first.etag, last_modified=first.last_modified)
    assert second.not_modified
    assert server.requests[0]["user-agent"] == "newsletter-test"
    assert server.requests[1]["if-none-match"] == '"v1"'
    assert server.requests[1]["if-modified-since"] == "Sun, 14 Jul 2024 09:30:00 GMT"


def test_fetch_errors_are_clear(server: FeedServer) -> None:
    server.routes["/boom"] = Route(b"oops", status=500)
    server.routes["/big"] = Route(b"x" * 2048)
    server.routes["/slow"] = Route(data("sample-feed.xml"), delay=1.5)
    with pytest.raises(FeedError, match="HTTP 500"):
        local_fetch(server.url("/boom"))
    with pytest.raises(FeedError, match="HTTP 404"):
        local_fetch(server.url("/missing"))
    with pytest.raises(FeedError, match="over the 1024"):
        local_fetch(server.url("/big"), max_bytes=1024)
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"did not answer within 0\.3 seconds"):
        local_fetch(server.url("/slow"), timeout=0.3)
    assert time.monotonic() - started < 1.4
    with pytest.raises(
        FeedError, match=r"could not connect to .*: \[Errno 111\] Connection refused$"
    ):
        local_fetch(f"http://127.0.0.1:{free_port()}/feed", timeout=1)


def test_local_files_and_sources(tmp_path: Path) -> None:
    copy = tmp_path / "feed.xml"
    copy.write_bytes(data("sample-feed.xml"))
    first = fetch(str(copy))
    assert first.content == data("sample-feed.xml") and first.etag
    assert fetch(str(copy), etag=first.etag).not_modified
    with pytest.raises(FeedError, match="no such file"):
        fetch(str(tmp_path / "missing.xml"))
    with pytest.raises(FeedError, match="not a file"):
        fetch(str(tmp_path))
    assert normalise_source(f"file://{copy}") == str(copy)
    assert normalise_source("https://news.example.com/feed/") == "https://news.example.com/feed/"
    for bad in ("ftp://example.com/feed", "javascript:alert(1)", "  ", "http://"):
        with pytest.raises(FeedError):
            normalise_source(bad)


# --- ingesting ----------------------------------------------------------------------------------


def test_ingest_over_http_then_not_modified_then_changed(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/feed"] = Route(data("sample-feed.xml"), etag='"v1"')
    first = ingest_source(db, settings, server.url("/feed"))
    db.commit()
    assert (first.created, first.updated, first.unchanged, first.ok) == (4, 0, 0, True)
    feed = db.scalar(select(Feed))
    assert feed is not None
    assert (feed.title, feed.etag, feed.error_count) == ("The Daily Brief", '"v1"', 0)
    assert feed.next_fetch_at is not None and feed.next_fetch_at > datetime.now(UTC)
    assert {p.feed_id for p in posts(db)} == {feed.id}

    again = ingest_source(db, settings, server.url("/feed"))
    db.commit()
    assert again.not_modified and again.created == 0
    assert "not modified" in again.describe()

    # The site edits one article and the server's ETag changes.
    edited = data("sample-feed.xml").replace(
        b"Weekend Offer: Half Price", b"Weekend Offer: Two Thirds Off"
    )
    server.routes["/feed"] = Route(edited, etag='"v2"')
    third = ingest_source(db, settings, server.url("/feed"))
    db.commit()
    assert (third.created, third.updated, third.unchanged) == (0, 1, 3)
    assert len(posts(db)) == 4
    assert any(p.title.startswith("Weekend Offer: Two Thirds Off") for p in posts(db))


def test_force_skips_the_conditional_get(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/feed"] = Route(data("atom.xml"), etag='"a"')
    ingest_source(db, settings, server.url("/feed"))
    result = ingest_source(db, settings, server.url("/feed"), force=True)
    assert not result.not_modified and result.unchanged == 2
    assert "if-none-match" not in server.requests[-1]


def test_failures_back_off_exponentially_and_recover(
    server: FeedServer, fast: Settings, db: Session
) -> None:
    server.routes["/feed"] = Route(b"down", status=503)
    before = datetime.now(UTC)
    result = ingest_source(db, fast, server.url("/feed"))
    db.commit()
    assert not result.ok and "HTTP 503" in result.error and "FAILED" in result.describe()
    feed = db.scalar(select(Feed))
    assert feed is not None
    assert feed.error_count == 1 and "HTTP 503" in feed.last_error
    assert feed.next_fetch_at is not None
    assert feed.next_fetch_at >= before + timedelta(minutes=fast.feed_interval_minutes)

    ingest_source(db, fast, server.url("/feed"))
    db.commit()
    assert feed.error_count == 2

    server.routes["/feed"] = Route(data("feed-1.0.json"), content_type="application/feed+json")
    ok = ingest_source(db, fast, server.url("/feed"))
    db.commit()
    assert ok.ok and ok.created == 1
    assert (feed.error_count, feed.last_error) == (0, "")


def test_backoff_doubles_and_is_capped(settings: Settings) -> None:
    s = replace(settings, feed_interval_minutes=10, feed_max_backoff_minutes=360)
    assert [backoff(s, n).total_seconds() / 60 for n in (1, 2, 3, 4, 5, 6, 7, 50)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        360,
        360,
    ]


def test_malformed_feed_is_ingested_with_a_warning(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/broken"] = Route(data("malformed.xml"))
    result = ingest_source(db, settings, server.url("/broken"))
    db.commit()
    assert result.ok and result.created == 1 and result.warnings
    feed = db.scalar(select(Feed))
    assert feed is not None and feed.error_count == 0
    assert feed.last_error.startswith("warning: ")


def test_a_page_that_is_not_a_feed_is_an_error(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/page"] = Route(data("not-a-feed.html"), content_type="text/html")
    result = ingest_source(db, settings, server.url("/page"))
    db.commit()
    assert not result.ok and "not an RSS" in result.error
    assert posts(db) == []


def test_due_feeds_are_isolated_from_each_other(
    server: FeedServer, fast: Settings, db: Session, tmp_path: Path
) -> None:
    server.routes["/rss"] = Route(data("sample-feed.xml"))
    server.routes["/slow"] = Route(data("atom.xml"), delay=1.5)
    local = tmp_path / "feed.json"
    local.write_bytes(data("feed.json"))
    configured = replace(
        fast,
        feeds=(
            server.url("/rss"),
            f"http://127.0.0.1:{free_port()}/refused",
            server.url("/slow"),
            str(tmp_path / "missing.xml"),
            str(local),
            "ftp://not-supported/feed",  # logged and skipped, never a row
        ),
    )
    results = ingest_due_feeds(db, configured)
    assert len(results) == 5
    by_source = {r.source: r for r in results}
    assert by_source[server.url("/rss")].created == 4
    assert by_source[str(local)].created == 2
    failed = [r for r in results if not r.ok]
    assert len(failed) == 3
    assert len(posts(db)) == 6
    feeds = {f.url: f for f in list_feeds(db)}
    assert feeds[server.url("/slow")].error_count == 1

    # Nothing is due again until the interval (or the backoff) has passed.
    assert ingest_due_feeds(db, configured) == []
    later = datetime.now(UTC) + timedelta(minutes=fast.feed_interval_minutes + 1)
    again = ingest_due_feeds(db, configured, now=later)
    assert len(again) == 5
    assert all(r.created == 0 for r in again)
    # A second failure in a row waits twice as long; a success waits one interval.
    db.expire_all()
    feeds = {f.url: f for f in list_feeds(db)}
    interval = timedelta(minutes=fast.feed_interval_minutes)
    assert feeds[server.url("/slow")].error_count == 2
    assert feeds[server.url("/slow")].next_fetch_at == later + 2 * interval
    assert feeds[server.url("/rss")].next_fetch_at == later + interval


def test_disabled_and_removed_feeds_are_not_fetched(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/a"] = Route(data("sample-feed.xml"))
    server.routes["/b"] = Route(data("atom.xml"))
    add_feed(db, server.url("/a"))
    b = add_feed(db, server.url("/b"))
    b.enabled = False
    db.commit()
    assert [r.source for r in ingest_due_feeds(db, settings)] == [server.url("/a")]
    assert add_feed(db, server.url("/b")).enabled  # adding again re-enables it
    assert remove_feed(db, server.url("/a")) and not remove_feed(db, "999")
    db.commit()
    assert [f.url for f in list_feeds(db)] == [server.url("/b")]
    assert db.scalar(select(func.count()).select_from(Post)) == 4  # the posts stay


def test_the_task_enqueues_one_task_per_due_feed_and_isolates_failures(
    app: Flask, server: FeedServer, settings: Settings, db: Session
) -> None:

    server.routes["/good"] = Route(data("sample-feed.xml"))
    server.routes["/bad"] = Route(b"", status=500)
    bad = add_feed(db, server.url("/bad"))
    good = add_feed(db, server.url("/good"))
    db.commit()
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True  # the per-feed tasks run here, as they are enqueued
    celery.conf.task_eager_propagates = True
    with app.app_context():
        assert ingest_feeds.run() == {"feeds": 2}
    assert len(posts(db)) == 4
    db.expire_all()
    assert bad.error_count == 1 and "HTTP 500" in bad.last_error
    assert good.error_count == 0
    with app.app_context():
        assert ingest_feeds.run() == {"feeds": 0}  # nothing is due any more
        # A duplicate task (a redelivery, an overlapping dispatch) finds the feed not due.
        assert ingest_feed.run(good.id) == {"feed": good.id, "skipped": True}
    assert [r["path"] for r in server.requests].count("/good") == 1


def test_a_claimed_feed_is_skipped_by_an_overlapping_run(
    settings: Settings, db: Session, tmp_path: Path
) -> None:

    path = tmp_path / "feed.xml"
    path.write_bytes(data("atom.xml"))
    feed = add_feed(db, str(path))
    db.commit()
    now = datetime.now(UTC)
    assert _claim(db, settings, feed.id, now)
    assert not _claim(db, settings, feed.id, now)  # the second run finds it taken
    assert ingest_due_feeds(db, settings, now=now) == []


# --- the command line ---------------------------------------------------------------------------


def test_cli_add_list_ingest_remove(app: Flask, server: FeedServer, db: Session) -> None:

    runner = app.test_cli_runner()
    server.routes["/feed"] = Route(data("sample-feed.xml"), etag='"1"')
    url = server.url("/feed")

    empty = runner.invoke(feeds_group, ["list"])
    assert empty.exit_code == 0 and "No feeds yet" in empty.output

    added = runner.invoke(feeds_group, ["add", url])
    assert added.exit_code == 0, added.output
    assert f"Feed 1 added: {url}" in added.output

    due = runner.invoke(feeds_group, ["ingest"])
    assert due.exit_code == 0, due.output
    assert f"{url}: 4 new, 0 updated, 0 unchanged" in due.output

    again = runner.invoke(feeds_group, ["ingest", url])
    assert again.exit_code == 0 and "not modified" in again.output
    forced = runner.invoke(feeds_group, ["ingest", "--force", url])
    assert forced.exit_code == 0 and "0 new, 0 updated, 4 unchanged" in forced.output

    listing = runner.invoke(feeds_group, ["list"])
    assert listing.exit_code == 0 and url in listing.output

    removed = runner.invoke(feeds_group, ["remove", "1"])
    assert removed.exit_code == 0 and "removed" in removed.output
    assert runner.invoke(feeds_group, ["remove", "1"]).exit_code != 0
    assert db.scalar(select(func.count()).select_from(Post)) == 4


def test_cli_ingest_of_a_file_and_failures(app: Flask, server: FeedServer, tmp_path: Path) -> None:

    runner = app.test_cli_runner()
    ok = runner.invoke(feeds_group, ["ingest", str(DATA / "atom.xml")])
    assert ok.exit_code == 0 and "2 new" in ok.output

    missing = runner.invoke(feeds_group, ["ingest", str(tmp_path / "nope.xml")])
    assert missing.exit_code == 1
    assert "no such file" in missing.output
    assert "Traceback" not in missing.output
    assert runner.invoke(feeds_group, ["add", str(tmp_path / "nope.xml")]).exit_code == 1

    # A new feed whose first fetch fails is not kept: a typo must not become a feed.
    server.routes["/down"] = Route(b"", status=500)
    down = runner.invoke(feeds_group, ["ingest", server.url("/down")])
    assert down.exit_code == 1 and "HTTP 500" in down.output and "not added" in down.output
    assert server.url("/down") not in runner.invoke(feeds_group, ["list"]).output

    # A known feed that fails keeps its row, with the error recorded for `feeds list`.
    server.routes["/flaky"] = Route(data("atom.xml"))
    assert runner.invoke(feeds_group, ["ingest", server.url("/flaky")]).exit_code == 0
    server.routes["/flaky"] = Route(b"", status=502)
    flaky = runner.invoke(feeds_group, ["ingest", server.url("/flaky")])
    assert flaky.exit_code == 1 and "HTTP 502" in flaky.output
    listing = runner.invoke(feeds_group, ["list"]).output
    assert server.url("/flaky") in listing and "HTTP 502" in listing

    bad = runner.invoke(feeds_group, ["add", "ftp://example.com/feed"])
    assert bad.exit_code == 1 and "use an http(s) URL or a file path" in bad.output

    # The failed feed waits for its backoff, the others for their interval: nothing is due.
    idle = runner.invoke(feeds_group, ["ingest"])
    assert idle.exit_code == 0 and "No feed is due" in idle.output

    # Every due feed: the good one is ingested, the broken one makes the exit status non-zero.
    server.routes["/json"] = Route(data("feed-1.0.json"), content_type="application/feed+json")
    server.routes["/gone"] = Route(b"", status=410)
    assert runner.invoke(feeds_group, ["add", server.url("/gone")]).exit_code == 0
    assert runner.invoke(feeds_group, ["add", server.url("/json")]).exit_code == 0
    due = runner.invoke(feeds_group, ["ingest"])
    assert due.exit_code == 1
    assert f"{server.url('/json')}: 1 new" in due.output
    assert "HTTP 410" in due.output and "1 of 2 feeds failed" in due.output


def test_find_feed_by_odd_numbers_finds_nothing(db: Session) -> None:
    feed = add_feed(db, "https://news.example.com/feed/")
    assert find_feed(db, str(feed.id)) is feed
    assert find_feed(db, "²") is None
    assert find_feed(db, HUGE) is None
