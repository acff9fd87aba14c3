"""Posts: cleaning (titles, summaries, the nh3 policy), dedupe and update, queries for digests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.content.feeds import _claim, add_feed
from newsletter.content.posts import (
    InvalidPost,
    PostInput,
    all_categories,
    find_post,
    make_post_input,
    parse_timestamp,
    post_input_from_json,
    recent_posts,
    retract_post,
    upsert_posts,
)
from newsletter.content.sanitize import clean_html, clean_title, html_to_text, summary_text
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker
from newsletter.store.migrate import upgrade
from newsletter.store.models import Post

T0 = datetime(2024, 7, 14, 8, 0, tzinfo=UTC)


def item(guid: str = "g1", **overrides: object) -> PostInput:
    """A clean post input with sensible defaults."""
    values: dict[str, object] = {
        "guid": guid,
        "link": f"https://news.example.com/{guid}",
        "title": f"Title {guid}",
        "published_at": T0,
        "summary_html": "Summary",
        "content_html": "<p>Body</p>",
        "author": "Lillian Hocker",
        "categories": ["World"],
        "image_url": "",
    }
    values.update(overrides)
    return make_post_input(**values)  # type: ignore[arg-type]


def count(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(Post)) or 0


# --- sanitising ---------------------------------------------------------------------------------

XSS_VECTORS = [
    '<script>alert("x")</script>',
    '<img src="x.jpg" onerror="alert(1)">',
    '<a href="javascript:alert(1)">j</a>',
    '<a href="JaVaScRiPt:alert(1)">j</a>',
    '<a href="java&#x09;script:alert(1)">j</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>',
    '<svg onload="alert(1)"><circle/></svg>',
    '<iframe src="https://evil.example/"></iframe>',
    '<p style="background:url(javascript:alert(1))">s</p>',
    '<div onmouseover="alert(1)">hover</div>',
    '<math><mi xlink:href="javascript:alert(1)">m</mi></math>',
    "<object data='evil.swf'></object><embed src='evil.swf'>",
    "<form action='https://evil.example/'><input name=q><button>go</button></form>",
    "<style>@import 'https://evil.example/x.css';</style>",
    '<a href="vbscript:msgbox(1)">v</a>',
    "<<script>script>alert(1)<</script>/script>",
]


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_clean_html_removes_active_content(vector: str) -> None:
    cleaned = clean_html(vector, "https://news.example.com/post/").lower()
    for bad in (
        "<script",
        "javascript:",
        "vbscript:",
        "data:",
        "onerror",
        "onload",
        "onmouseover",
        "<iframe",
        "<svg",
        "<style",
        "style=",
        "<form",
        "<input",
        "<object",
        "<embed",
        "@import",
    ):
        assert bad not in cleaned, (vector, cleaned)


def test_clean_html_keeps_email_friendly_markup_and_adds_noopener() -> None:
    html = (
        '<h2>Head</h2><p>A <strong>b</strong> <em>c</em> <a href="https://x.example/a">link</a></p>'
        "<ul><li>one</li></ul><ol><li>two</li></ol><blockquote>q</blockquote>"
        '<figure><img src="https://x.example/i.jpg" alt="A" width="10" height="5">'
        "<figcaption>cap</figcaption></figure><br>"
    )
    cleaned = clean_html(html)
    for kept in (
        "<h2>Head</h2>",
        "<strong>b</strong>",
        "<em>c</em>",
        '<a href="https://x.example/a" rel="noopener">link</a>',
        "<ul><li>one</li></ul>",
        "<ol><li>two</li></ol>",
        "<blockquote>q</blockquote>",
        'src="https://x.example/i.jpg"',
        'alt="A"',
        'width="10"',
        "<figcaption>cap</figcaption>",
    ):
        assert kept in cleaned


def test_clean_html_resolves_relative_urls_or_drops_them() -> None:
    html = '<a href="/about">a</a><img src="pic.png">'
    resolved = clean_html(html, "https://news.example.com/2024/post/")
    assert 'href="https://news.example.com/about"' in resolved
    assert 'src="https://news.example.com/2024/post/pic.png"' in resolved
    assert "href" not in clean_html(html) and "src" not in clean_html(html)


def test_text_helpers_unescape_and_strip() -> None:
    assert clean_title("Nikki Haley&#8217;s <em>Odyssey</em>") == "Nikki Haley\u2019s Odyssey"
    assert clean_title("  AT&amp;T   and\n a < b ") == "AT&T and a < b"
    assert html_to_text("<p>one</p><p>two</p><script>x()</script>") == "one two"
    # WordPress's "[&hellip;]" teaser marker becomes a plain ellipsis; a full stop keeps its own.
    assert summary_text("<p>Read on [&hellip;]</p>") == "Read on…"
    assert summary_text("Done. &#8230;") == "Done."


def test_summary_is_capped_at_a_word_boundary() -> None:
    text = summary_text("<p>" + "wordy " * 200 + "</p>")
    assert len(text) <= 500
    assert text.endswith("wordy…")


def test_make_post_input_cleans_everything() -> None:
    post = make_post_input(
        guid=" g ",
        link="https://news.example.com/a",
        title="<b>Pakistan&#8217;s</b> news",
        published_at=datetime(2024, 7, 14, 10, 0, tzinfo=timezone(timedelta(hours=2))),
        summary_html="",
        content_html="<p>First <script>x</script>paragraph.</p><p>Second.</p>",
        author="<i>Lillian</i>",
        categories=["World", "world ", "", "<b>Asia</b>"],
        image_url="/img/a.jpg",
    )
    assert post.guid == "g"
    assert post.title == "Pakistan\u2019s news"
    assert post.published_at == T0 and post.published_at.tzinfo == UTC
    assert post.summary == "First paragraph. Second."  # derived from content when absent
    assert "<script" not in post.content_html
    assert post.author == "Lillian"
    assert post.categories == ("World", "Asia")
    assert post.image_url == "https://news.example.com/img/a.jpg"


# --- storing ------------------------------------------------------------------------------------


def test_upsert_creates_then_leaves_unchanged_posts_alone(db: Session) -> None:
    first = upsert_posts(db, [item("a"), item("b")])
    db.commit()
    assert [s.outcome for s in first.items] == ["created", "created"]
    stamp = db.scalar(select(Post.updated_at).where(Post.guid == "a"))

    again = upsert_posts(db, [item("a"), item("b")])
    db.commit()
    assert [s.outcome for s in again.items] == ["unchanged", "unchanged"]
    assert count(db) == 2
    assert db.scalar(select(Post.updated_at).where(Post.guid == "a")) == stamp


def test_upsert_updates_a_changed_post_instead_of_duplicating(db: Session) -> None:
    upsert_posts(db, [item("a")])
    db.commit()
    changed = item("a", title="New title", categories=["World", "Asia"], content_html="<p>v2</p>")
    result = upsert_posts(db, [changed])
    db.commit()
    assert result.count("updated") == 1
    assert count(db) == 1
    post = db.scalar(select(Post))
    assert post is not None
    assert (post.title, post.categories, post.content_html) == (
        "New title",
        ["World", "Asia"],
        "<p>v2</p>",
    )


def test_upsert_matches_by_link_when_the_guid_changed(db: Session) -> None:
    upsert_posts(db, [item("old-guid", link="https://news.example.com/story")])
    db.commit()
    result = upsert_posts(db, [item("new-guid", link="https://news.example.com/story")])
    db.commit()
    assert result.items[0].outcome == "updated"
    assert count(db) == 1
    assert db.scalar(select(Post.guid)) == "new-guid"


def test_two_new_articles_sharing_a_link_stay_apart(db: Session) -> None:
    link = "https://news.example.com/live"
    result = upsert_posts(db, [item("live-1", link=link), item("live-2", link=link)])
    db.commit()
    assert [s.outcome for s in result.items] == ["created", "created"]
    assert count(db) == 2


def test_repeated_guid_in_one_batch_is_stored_once(db: Session) -> None:
    result = upsert_posts(db, [item("a"), item("a", title="Later version")])
    db.commit()
    assert count(db) == 1
    assert [s.outcome for s in result.items] == ["created", "updated"]
    assert db.scalar(select(Post.title)) == "Later version"


def test_a_post_without_date_gets_now_and_keeps_its_time_later(db: Session) -> None:
    before = datetime.now(UTC)
    upsert_posts(db, [item("a", published_at=None)])
    db.commit()
    stored = db.scalar(select(Post.published_at))
    assert stored is not None and stored >= before - timedelta(seconds=1)
    result = upsert_posts(db, [item("a", published_at=None)])
    db.commit()
    assert result.items[0].outcome == "unchanged"
    assert db.scalar(select(Post.published_at)) == stored


def test_times_are_stored_in_utc(db: Session) -> None:
    local = datetime(2024, 7, 14, 4, 0, tzinfo=timezone(timedelta(hours=-4)))
    upsert_posts(db, [item("a", published_at=local)])
    db.commit()
    db.expire_all()
    stored = db.scalar(select(Post.published_at))
    assert stored == T0 and stored.utcoffset() == timedelta(0)


def test_retracted_post_leaves_digests_and_feeds_do_not_revive_it(db: Session) -> None:
    upsert_posts(db, [item("a"), item("b")])
    db.commit()
    assert retract_post(db, "a") is not None
    db.commit()
    window = (T0 - timedelta(days=1), T0)
    assert [p.guid for p in recent_posts(db, *window)] == ["b"]

    upsert_posts(db, [item("a", title="Feed still lists it")])  # a feed: no revive
    db.commit()
    assert [p.guid for p in recent_posts(db, *window)] == ["b"]

    result = upsert_posts(db, [item("a")], revive=True)  # the CMS pushes it again
    db.commit()
    assert result.items[0].outcome == "updated"
    assert {p.guid for p in recent_posts(db, *window)} == {"a", "b"}


def test_find_post_by_guid_or_id(db: Session) -> None:
    stored = upsert_posts(db, [item("guid-x")]).items[0].post
    db.commit()
    assert find_post(db, "guid-x") is stored
    assert find_post(db, str(stored.id)) is stored
    assert find_post(db, "nope") is None
    assert retract_post(db, "nope") is None


# --- queries for digests ------------------------------------------------------------------------


def test_recent_posts_window_order_and_categories(db: Session) -> None:
    upsert_posts(
        db,
        [
            item("old", published_at=T0 - timedelta(days=2), categories=["World"]),
            item("edge", published_at=T0 - timedelta(days=1), categories=["World"]),
            item("mid", published_at=T0 - timedelta(hours=5), categories=["Politics", "Asia"]),
            item("new", published_at=T0, categories=["world"]),
            item("future", published_at=T0 + timedelta(minutes=1), categories=["World"]),
        ],
    )
    db.commit()
    since, until = T0 - timedelta(days=1), T0
    # The window is (since, until]: "edge" was in the previous window, "new" is in this one.
    assert [p.guid for p in recent_posts(db, since, until)] == ["new", "mid"]
    assert [p.guid for p in recent_posts(db, since, until, ["WORLD"])] == ["new"]
    assert [p.guid for p in recent_posts(db, since, until, ["asia", "Offers"])] == ["mid"]
    assert recent_posts(db, since, until, ["Sport"]) == []


def test_all_categories_distinct_case_insensitively(db: Session) -> None:
    upsert_posts(
        db,
        [
            item("a", categories=["World", "Asia"]),
            item("b", categories=["World"]),
            item("c", categories=["world", "offers"]),
        ],
    )
    db.commit()
    assert all_categories(db) == ["Asia", "offers", "World"]


# --- pushed posts -------------------------------------------------------------------------------


def test_parse_timestamp_requires_an_offset() -> None:
    assert parse_timestamp("2024-07-14T10:00:00+02:00") == T0
    assert parse_timestamp("2024-07-14T08:00:00Z") == T0
    with pytest.raises(InvalidPost, match="UTC offset"):
        parse_timestamp("2024-07-14T08:00:00")
    with pytest.raises(InvalidPost, match="ISO 8601"):
        parse_timestamp("yesterday")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"guid": None}, "guid"),
        ({"guid": "  "}, "guid"),
        ({"url": "javascript:alert(1)"}, "url"),
        ({"url": "/relative"}, "url"),
        ({"title": 5}, "title"),
        ({"title": "<b></b>"}, "title"),
        ({"published_at": "2024-07-14"}, "published_at"),
        ({"categories": "World"}, "categories"),
        ({"categories": ["ok", 3]}, "categories"),
        ({"image_url": "ftp://x/y.jpg"}, "image_url"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_post_input_from_json_names_the_bad_field(change: dict[str, object], field: str) -> None:
    data: dict[str, object] = {
        "guid": "cms-1",
        "url": "https://news.example.com/a",
        "title": "A",
        "published_at": "2024-07-14T08:00:00Z",
    }
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(InvalidPost) as caught:
        post_input_from_json(data)
    assert caught.value.field == field


# --- the same on PostgreSQL ---------------------------------------------------------------------


@pytest.fixture
def pg_session() -> Iterator[Session]:
    """A session on a fresh, migrated PostgreSQL database (skipped when none is reachable)."""
    from tests.support.services import fresh_postgres_database, postgres_up

    if not postgres_up():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    with fresh_postgres_database() as url:
        upgrade(url)
        session = get_sessionmaker(url)()
        try:
            yield session
        finally:
            session.close()


def test_storage_and_queries_on_postgresql(pg_session: Session) -> None:

    db = pg_session
    local = datetime(2024, 7, 14, 4, 0, tzinfo=timezone(timedelta(hours=-4)))
    upsert_posts(
        db,
        [
            item("a", published_at=local, categories=["World", "Asia"]),
            item("b", published_at=T0 - timedelta(hours=1), categories=["world"]),
            item("c", published_at=T0 - timedelta(days=3), categories=["Offers"]),
        ],
    )
    db.commit()
    again = upsert_posts(db, [item("a", published_at=local, categories=["World", "Asia"])])
    db.commit()
    assert again.items[0].outcome == "unchanged"
    window = (T0 - timedelta(days=1), T0)
    assert [p.guid for p in recent_posts(db, *window)] == ["a", "b"]
    assert [p.guid for p in recent_posts(db, *window, ["WORLD"])] == ["a", "b"]
    assert all_categories(db) == ["Asia", "Offers", "World"]
    assert retract_post(db, "a") is not None
    db.commit()
    assert [p.guid for p in recent_posts(db, *window)] == ["b"]

    feed = add_feed(db, "https://news.example.com/feed/")
    db.commit()
    settings = Settings(env="testing")
    now = datetime.now(UTC)
    assert _claim(db, settings, feed.id, now)
    assert not _claim(db, settings, feed.id, now)
