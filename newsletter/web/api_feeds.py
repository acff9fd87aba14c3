"""The feeds posts are ingested from: /api/v1/feeds and /api/v1/feeds/<id>."""

from __future__ import annotations

from typing import Any

from newsletter.content.feeds import FeedError, add_feed, is_local, list_feeds, normalise_source
from newsletter.store.models import Feed, as_dict
from newsletter.web import db
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_paging import by_id
from newsletter.web.api_schemas import PageQuery
from newsletter.web.api_schemas_feeds import FeedCreate, FeedDeleted, FeedPage, FeedReply
from newsletter.web.openapi import operation

FEEDS = "feeds"


def feed_as_json(feed: Feed) -> dict[str, Any]:
    """A feed for the API."""
    return as_dict(
        feed,
        "id",
        "url",
        "title",
        "enabled",
        "last_fetched_at",
        "next_fetch_at",
        "last_error",
        "error_count",
        "created_at",
    )


def _feed(feed_id: int) -> Feed:
    """The feed with this id, or a 404."""
    feed = db().get(Feed, feed_id)
    if feed is None:
        raise ApiError(404, f"no feed {feed_id}")
    return feed


@bp.get("/feeds")
@require_token("feeds:read")
@operation(tag=FEEDS, query=PageQuery, responses={200: FeedPage})
def list_feeds_route(query: PageQuery) -> dict[str, Any]:
    """Feeds, oldest first, with their last fetch and errors; paged by ``after``."""
    shown, cursor = by_id(
        query.after,
        query.limit,
        lambda after, limit: list_feeds(db(), limit=limit, after_id=after),
        lambda feed: feed.id,
    )
    return {"items": [feed_as_json(f) for f in shown], "next": cursor}


@bp.post("/feeds")
@require_token("feeds:write")
@operation(tag=FEEDS, body=FeedCreate, responses={201: FeedReply}, creates=("feed_id", "/feed/id"))
def create_feed(body: FeedCreate) -> tuple[dict[str, Any], int]:
    """Add a feed (or re-enable a removed-then-added one); the worker fetches it next tick.

    Only http(s) URLs: a file path would let a token read the server's files.
    """
    if not body.url.strip().lower().startswith(("http://", "https://")):
        raise ApiError(400, "url: an http:// or https:// feed URL", field="url")
    try:
        if is_local(normalise_source(body.url)):
            raise ApiError(400, "url: an http:// or https:// feed URL", field="url")
        feed = add_feed(db(), body.url)
    except FeedError as exc:
        db().rollback()
        raise ApiError(400, str(exc), field="url") from None
    data = feed_as_json(feed)
    db().commit()
    return {"feed": data}, 201


@bp.get("/feeds/<int:feed_id>")
@require_token("feeds:read")
@operation(tag=FEEDS, responses={200: FeedReply}, problems=(404,))
def show_feed(feed_id: int) -> dict[str, Any]:
    """One feed and how its fetching goes."""
    return {"feed": feed_as_json(_feed(feed_id))}


@bp.delete("/feeds/<int:feed_id>")
@require_token("feeds:write")
@operation(tag=FEEDS, responses={200: FeedDeleted}, problems=(404,))
def delete_feed(feed_id: int) -> dict[str, Any]:
    """Remove a feed; the posts it brought stay (retract them one by one if needed)."""
    db().delete(_feed(feed_id))
    db().commit()
    return {"id": feed_id, "deleted": True}
