"""The schemas of /api/v1/feeds: the feeds posts are ingested from, and their health."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from newsletter.web.api_schemas import Reply, Request, Timestamp


class FeedCreate(Request):
    """A feed to ingest posts from: an http(s) URL (a file path only on the command line)."""

    url: Annotated[str, Field(min_length=1, max_length=2000)]


class FeedOut(Reply):
    """A feed and how its fetching goes."""

    id: int
    url: str
    title: str
    enabled: bool
    last_fetched_at: Timestamp | None
    next_fetch_at: Timestamp | None
    last_error: str = Field(description="Why the last fetch failed; empty when it worked")
    error_count: int = Field(description="Failed fetches in a row (they back off)")
    created_at: Timestamp


class FeedReply(Reply):
    """One feed."""

    feed: FeedOut


class FeedPage(Reply):
    """A page of feeds, oldest first."""

    items: list[FeedOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class FeedDeleted(Reply):
    """The feed removed; the posts it brought stay."""

    id: int
    deleted: bool
