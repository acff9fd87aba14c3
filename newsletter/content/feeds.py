"""Feed sources: the feeds table, fetching (HTTP conditional GET, or a file) and ingesting.

Each feed is fetched by us with requests (timeouts, a size cap, ETag / Last-Modified), parsed by
newsletter/content/feed_formats.py and stored through newsletter/content/posts.py. A feed that
fails is recorded on its row and retried with exponential backoff; it never stops the other feeds.
"""

from __future__ import annotations

import logging
import re
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from urllib.request import url2pathname

import requests
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session
from urllib3.exceptions import HTTPError, ReadTimeoutError

from newsletter.content.feed_formats import FeedFormatError, parse_feed
from newsletter.content.posts import upsert_posts
from newsletter.content.public_http import BlockedAddress, check_host, public_session
from newsletter.content.sanitize import is_http_url
from newsletter.settings import Settings, redact_url
from newsletter.store.db import utcnow
from newsletter.store.models import MAX_ID, Feed

log = logging.getLogger(__name__)

USER_AGENT = "newsletter-feed-fetcher/1.0 (+{site_url})"
ERROR_MAX_CHARS = 2000
_CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_ERRNO = re.compile(r"(\[Errno [^\]]+\][^'\"()]*)")


class FeedError(Exception):
    """A feed could not be fetched or read; the message says what happened."""


@dataclass(frozen=True)
class Fetched:
    """A fetched document, or ``content=None`` when the server said it has not changed."""

    content: bytes | None
    etag: str = ""
    last_modified: str = ""
    content_type: str = ""
    url: str = ""

    @property
    def not_modified(self) -> bool:
        """True for a 304 (or an unchanged local file)."""
        return self.content is None


@dataclass
class IngestResult:
    """What one feed ingest did."""

    source: str
    feed_id: int | None = None
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    not_modified: bool = False
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    new_feed: bool = False

    @property
    def ok(self) -> bool:
        """True unless the feed could not be fetched or read."""
        return not self.error

    def describe(self) -> str:
        """One line for logs and the CLI."""
        where = redact_url(self.source)
        if self.error:
            return f"{where}: FAILED: {self.error}"
        if self.not_modified:
            return f"{where}: not modified since the last fetch"
        text = f"{where}: {self.created} new, {self.updated} updated, {self.unchanged} unchanged"
        return text + "".join(f" (warning: {w})" for w in self.warnings)


# --- sources -----------------------------------------------------------------------------------


def normalise_source(source: str) -> str:
    """An http(s) URL as given, or a local file as an absolute path; FeedError otherwise."""
    value = source.strip()
    if not value:
        raise FeedError("no feed given: pass an http(s) URL or a file path")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        # No URL holds them, and a NUL in a path makes the OS calls below raise.
        raise FeedError("a feed address has no control characters")
    parts = urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme in {"http", "https"}:
        if not is_http_url(value):
            raise FeedError(f"{redact_url(value)!r} is not a valid URL")
        return value
    if scheme == "file":
        path = url2pathname(parts.path)
    elif len(scheme) > 1:
        raise FeedError(f"unsupported feed address {value!r}: use an http(s) URL or a file path")
    else:
        path = value
    return str(Path(path).expanduser().resolve())


def is_local(source: str) -> bool:
    """True when ``source`` (as normalised) is a file path rather than a URL."""
    return not is_http_url(source)


def user_agent(settings: Settings) -> str:
    """The User-Agent the fetcher sends, naming the service and the site."""
    return USER_AGENT.format(site_url=settings.site_url)


def fetch(
    source: str,
    *,
    etag: str = "",
    last_modified: str = "",
    timeout: float = 10.0,
    max_bytes: int = 5 * 1024 * 1024,
    agent: str = "newsletter-feed-fetcher/1.0",
    allow_private_networks: bool = False,
) -> Fetched:
    """Fetch a feed with a conditional GET (or read a file); FeedError says why it failed.

    ``timeout`` is one deadline for everything: connecting, every redirect, the whole body.
    Unless ``allow_private_networks``, only public addresses are connected to.
    """
    if is_local(source):
        return _read_file(source, etag=etag, max_bytes=max_bytes)
    headers = _request_headers(agent, etag, last_modified)
    deadline = time.monotonic() + timeout
    session = requests.Session() if allow_private_networks else public_session()
    url, first = source, redact_url(source)
    with session:
        for hop in range(MAX_REDIRECTS + 1):
            where = redact_url(url) if hop == 0 else f"{redact_url(url)} (a redirect of {first})"
            with _get(
                session, url, headers, where, deadline, timeout, allow_private_networks
            ) as response:
                if not response.is_redirect:
                    return _read_response(
                        response,
                        where,
                        etag=etag,
                        last_modified=last_modified,
                        deadline=deadline,
                        timeout=timeout,
                        max_bytes=max_bytes,
                    )
                url = _redirect_target(response, url, where)
    raise FeedError(f"{first} redirects more than {MAX_REDIRECTS} times")


def _get(
    session: requests.Session,
    url: str,
    headers: dict[str, str],
    where: str,
    deadline: float,
    timeout: float,
    allow_private_networks: bool,
) -> requests.Response:
    """One GET, redirects not followed, the body not yet read; FeedError when it fails."""
    try:
        if not allow_private_networks:
            # The connection checks again, on the address it connects to; this check names
            # the URL and resolves before any socket is opened.
            parts = urlsplit(url)
            check_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        left = _time_left(deadline, timeout, where)
        return session.get(
            url, headers=headers, timeout=(left, left), stream=True, allow_redirects=False
        )
    except BlockedAddress as exc:
        raise FeedError(
            f"refused to fetch {where}: {exc} (set NEWSLETTER_FEED_ALLOW_PRIVATE_NETWORKS=true "
            "to fetch from private networks)"
        ) from None
    except socket.gaierror as exc:
        raise FeedError(f"could not connect to {where}: {exc.strerror or exc}") from None
    except requests.Timeout:
        raise FeedError(f"{where} did not answer within {timeout:g} seconds") from None
    except requests.ConnectionError as exc:
        raise FeedError(f"could not connect to {where}: {_reason(exc)}") from None
    except requests.RequestException as exc:
        raise FeedError(f"fetching {where} failed: {_reason(exc)}") from None
    except ValueError as exc:  # a port beyond 65535, a host name IDNA cannot encode
        raise FeedError(f"{where} is not a valid URL: {exc}") from None


def _redirect_target(response: requests.Response, url: str, where: str) -> str:
    """Where a redirect points, resolved against ``url``; FeedError unless it is http(s)."""
    location = response.headers.get("Location", "")
    try:
        target = urljoin(url, location.strip())
    except ValueError:
        target = ""
    if not is_http_url(target):
        raise FeedError(f"{where} redirects to {location[:200]!r}, not an http(s) URL")
    return target


def _time_left(deadline: float, timeout: float, where: str) -> float:
    """Seconds until the deadline; FeedError once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise FeedError(f"{where} did not send the whole feed within {timeout:g} seconds")
    return left


def _request_headers(agent: str, etag: str, last_modified: str) -> dict[str, str]:
    """The GET's headers: who we are, the formats we read, and the conditional-GET validators."""
    headers = {
        "User-Agent": agent,
        "Accept": "application/rss+xml, application/atom+xml, application/feed+json, "
        "application/xml;q=0.9, application/json;q=0.8, text/xml;q=0.8, */*;q=0.5",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    return headers


def _read_response(
    response: requests.Response,
    where: str,
    *,
    etag: str,
    last_modified: str,
    deadline: float,
    timeout: float,
    max_bytes: int,
) -> Fetched:
    """The server's answer as a Fetched (no content for a 304); FeedError for an error status."""
    if response.status_code == 304:
        return Fetched(
            None,
            etag=response.headers.get("ETag", etag),
            last_modified=response.headers.get("Last-Modified", last_modified),
            url=response.url,
        )
    if response.status_code >= 400:
        raise FeedError(f"HTTP {response.status_code} {response.reason} from {where}")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FeedError(f"{where} is {int(declared)} bytes, over the {max_bytes} limit")
    content = _read_capped(response, where, max_bytes, deadline=deadline, timeout=timeout)
    return Fetched(
        content,
        etag=response.headers.get("ETag", ""),
        last_modified=response.headers.get("Last-Modified", ""),
        content_type=response.headers.get("Content-Type", ""),
        url=response.url,
    )


def _read_capped(
    response: requests.Response, where: str, max_bytes: int, *, deadline: float, timeout: float
) -> bytes:
    """The body, refusing more than ``max_bytes`` and a server that trickles past the deadline.

    read1 returns whatever has arrived, and the socket's timeout is cut to the time left before
    each read, so one byte a second cannot stretch a read past the deadline.
    """
    body = bytearray()
    while True:
        left = _time_left(deadline, timeout, where)
        sock = getattr(response.raw.connection, "sock", None)
        if sock is not None:
            sock.settimeout(left)
        try:
            chunk = response.raw.read1(_CHUNK, decode_content=True)
        except ReadTimeoutError:
            raise FeedError(
                f"{where} did not send the whole feed within {timeout:g} seconds"
            ) from None
        except (HTTPError, OSError) as exc:
            raise FeedError(f"reading {where} failed: {_reason(exc)}") from None
        if not chunk:
            return bytes(body)
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FeedError(f"{where} is over the {max_bytes} byte limit")


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a requests exception."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    text = str(exc)
    # urllib3 wraps the cause in reprs; the "[Errno 111] Connection refused" part is what helps.
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(1).strip()
    return text.rsplit(": ", 1)[-1].strip(" '\")(") if "Max retries" in text else text


def _read_file(path: str, *, etag: str, max_bytes: int) -> Fetched:
    """A local feed file; its size and mtime act as the ETag so an unchanged file is skipped."""
    file = Path(path)
    try:
        stat = file.stat()
        if not file.is_file():
            raise FeedError(f"{path} is not a file")
        tag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
        if etag and etag == tag:
            return Fetched(None, etag=tag, url=path)
        if stat.st_size > max_bytes:
            raise FeedError(f"{path} is {stat.st_size} bytes, over the {max_bytes} limit")
        content = file.read_bytes()
    except FileNotFoundError:
        raise FeedError(f"no such file: {path}") from None
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Fetched(content, etag=tag, url=path)


# --- the feeds table ---------------------------------------------------------------------------


def add_feed(session: Session, source: str) -> Feed:
    """Register a feed (or re-enable a known one); FeedError for an unusable address."""
    url = normalise_source(source)
    feed = session.scalar(select(Feed).where(Feed.url == url))
    if feed is None:
        if is_local(url) and not Path(url).is_file():
            raise FeedError(f"no such file: {url}")
        feed = Feed(url=url)
        session.add(feed)
    elif not feed.enabled:
        feed.enabled = True
        feed.next_fetch_at = None
    session.flush()
    return feed


def find_feed(session: Session, key: str) -> Feed | None:
    """A feed by id, or by its URL / path."""
    if key.isascii() and key.isdigit():
        # An id beyond what the column holds names no feed (the driver would raise).
        return session.get(Feed, int(key)) if int(key) <= MAX_ID else None
    try:
        url = normalise_source(key)
    except FeedError:
        return None
    return session.scalar(select(Feed).where(Feed.url == url))


def remove_feed(session: Session, key: str) -> bool:
    """Delete a feed (by id or URL); its posts stay. False when there is no such feed."""
    feed = find_feed(session, key)
    if feed is None:
        return False
    session.delete(feed)
    session.flush()
    return True


def list_feeds(
    session: Session, *, limit: int | None = None, after_id: int | None = None
) -> list[Feed]:
    """Feeds, oldest first (after ``after_id``, at most ``limit``: a page)."""
    query = select(Feed)
    if after_id is not None:
        query = query.where(Feed.id > after_id)
    return list(session.scalars(query.order_by(Feed.id).limit(limit)))


def sync_configured_feeds(session: Session, sources: tuple[str, ...] | list[str]) -> None:
    """Make sure every feed of ``NEWSLETTER_FEEDS`` has a row; a bad entry is logged, skipped."""
    for source in sources:
        try:
            url = normalise_source(source)
        except FeedError as exc:
            log.error("NEWSLETTER_FEEDS entry skipped: %s", exc)
            continue
        if session.scalar(select(Feed.id).where(Feed.url == url)) is None:
            session.add(Feed(url=url))
    session.flush()


def backoff(settings: Settings, error_count: int) -> timedelta:
    """Wait before retrying a failing feed: the interval doubled per failure, capped."""
    base = max(1, settings.feed_interval_minutes)
    minutes = min(base * 2 ** min(max(error_count - 1, 0), 20), settings.feed_max_backoff_minutes)
    return timedelta(minutes=max(minutes, 1))


# --- ingesting ---------------------------------------------------------------------------------


def ingest_feed(
    session: Session,
    settings: Settings,
    feed: Feed,
    *,
    force: bool = False,
    now: datetime | None = None,
) -> IngestResult:
    """Fetch, parse and store one feed, recording success or failure on its row; no commit.

    ``force`` skips the conditional GET (fetch even if the server says nothing changed).
    """
    now = now or utcnow()
    result = IngestResult(source=feed.url, feed_id=feed.id)
    try:
        fetched = fetch(
            feed.url,
            etag="" if force else feed.etag,
            last_modified="" if force else feed.last_modified,
            timeout=settings.feed_timeout_seconds,
            max_bytes=settings.feed_max_bytes,
            agent=user_agent(settings),
            allow_private_networks=settings.feed_allow_private_networks,
        )
        if fetched.not_modified:
            result.not_modified = True
        else:
            _store_entries(session, feed, fetched, result)
    except (FeedError, FeedFormatError) as exc:
        result.error = str(exc)
        record_failure(settings, feed, result.error, now=now)
        return result
    _record_success(settings, feed, fetched, result, now=now)
    session.flush()
    return result


def _store_entries(session: Session, feed: Feed, fetched: Fetched, result: IngestResult) -> None:
    """Parse a fetched document and upsert its entries, counting the outcomes into ``result``."""
    assert fetched.content is not None
    parsed = parse_feed(
        fetched.content,
        url=fetched.url or feed.url,
        content_type=fetched.content_type,
    )
    stored = upsert_posts(session, parsed.entries, feed_id=feed.id)
    result.created = stored.count("created")
    result.updated = stored.count("updated")
    result.unchanged = stored.count("unchanged")
    result.warnings = parsed.warnings
    if parsed.title:
        feed.title = parsed.title[:500]


def _record_success(
    settings: Settings, feed: Feed, fetched: Fetched, result: IngestResult, *, now: datetime
) -> None:
    """Note a good fetch on the feed (validators, warnings) and schedule the next one."""
    feed.etag = (fetched.etag or "")[:500]
    feed.last_modified = (fetched.last_modified or "")[:100]
    feed.last_fetched_at = now
    feed.error_count = 0
    feed.last_error = "; ".join(f"warning: {w}" for w in result.warnings)[:ERROR_MAX_CHARS]
    feed.next_fetch_at = now + timedelta(minutes=max(1, settings.feed_interval_minutes))
    for warning in result.warnings:
        log.warning("feed %s: %s", redact_url(feed.url), warning)


def record_failure(settings: Settings, feed: Feed, error: str, *, now: datetime) -> None:
    """Note a failed fetch on the feed and push its next attempt back (exponential backoff)."""
    feed.error_count = (feed.error_count or 0) + 1
    feed.last_error = error[:ERROR_MAX_CHARS]
    feed.last_fetched_at = now
    feed.next_fetch_at = now + backoff(settings, feed.error_count)
    log.warning(
        "feed %s failed (%d in a row, next try %s): %s",
        redact_url(feed.url),
        feed.error_count,
        feed.next_fetch_at.isoformat(),
        error,
    )


def ingest_source(
    session: Session, settings: Settings, source: str, *, force: bool = False
) -> IngestResult:
    """Register ``source`` if new and ingest it now, whatever its schedule; no commit.

    ``result.new_feed`` tells the caller it may roll back instead of keeping a feed whose
    very first fetch failed (a typo in a URL should not become a feed retried forever).
    """
    url = normalise_source(source)
    known = session.scalar(select(Feed.id).where(Feed.url == url)) is not None
    feed = add_feed(session, url)
    result = ingest_feed(session, settings, feed, force=force)
    result.new_feed = not known
    return result


def due_feed_ids(session: Session, now: datetime) -> list[int]:
    """Enabled feeds whose next fetch time has come."""
    return list(
        session.scalars(
            select(Feed.id)
            .where(
                Feed.enabled.is_(True), or_(Feed.next_fetch_at.is_(None), Feed.next_fetch_at <= now)
            )
            .order_by(Feed.id)
        )
    )


def _claim(session: Session, settings: Settings, feed_id: int, now: datetime) -> bool:
    """Take a due feed for this run, so an overlapping run (a second beat, a slow one) skips it.

    The claim is a lease: if this process dies mid-fetch the feed is due again when it expires.
    """
    lease = now + timedelta(seconds=300 + 4 * settings.feed_timeout_seconds)
    claimed = session.execute(
        update(Feed)
        .where(
            Feed.id == feed_id,
            Feed.enabled.is_(True),
            or_(Feed.next_fetch_at.is_(None), Feed.next_fetch_at <= now),
        )
        .values(next_fetch_at=lease)
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(claimed, "rowcount", 0))


def due_feeds(session: Session, settings: Settings, *, now: datetime | None = None) -> list[int]:
    """Register the feeds of ``NEWSLETTER_FEEDS`` (committed), then the ids of those due now."""
    sync_configured_feeds(session, settings.feeds)
    session.commit()
    return due_feed_ids(session, now or utcnow())


def ingest_due_feed(
    session: Session,
    settings: Settings,
    feed_id: int,
    *,
    now: datetime | None = None,
    reraise: tuple[type[BaseException], ...] = (),
) -> IngestResult | None:
    """Claim a due feed and ingest it in a transaction of its own; None if it is not due (now).

    Whatever goes wrong is recorded on the feed's row, except the exceptions in ``reraise``,
    which the caller handles (the worker's soft time limit): it is left to call fail_feed.
    """
    now = now or utcnow()
    if not _claim(session, settings, feed_id, now):
        return None
    feed = session.get(Feed, feed_id, populate_existing=True)
    if feed is None:
        return None
    url = feed.url
    try:
        result = ingest_feed(session, settings, feed, now=now)
        session.commit()
    except reraise:
        raise
    except Exception as exc:  # isolation: an unexpected failure is this feed's alone
        session.rollback()
        log.exception("feed %s: unexpected error while ingesting", redact_url(url))
        return fail_feed(session, settings, feed_id, f"internal error: {exc}", now=now)
    return result


def fail_feed(
    session: Session, settings: Settings, feed_id: int, error: str, *, now: datetime | None = None
) -> IngestResult:
    """Record an ingest that broke off (rolled back by the caller) on the feed's row; commits."""
    feed = session.get(Feed, feed_id, populate_existing=True)
    if feed is None:
        return IngestResult(source="", feed_id=feed_id, error=error)
    record_failure(settings, feed, error, now=now or utcnow())
    session.commit()
    return IngestResult(source=feed.url, feed_id=feed_id, error=error)


def ingest_due_feeds(
    session: Session, settings: Settings, *, now: datetime | None = None
) -> list[IngestResult]:
    """Ingest every due, enabled feed here and now (configured ones registered first).

    Each feed runs in its own transaction: whatever goes wrong with one is recorded on its row
    and the others still run. The worker does the same with one task per feed instead.
    """
    now = now or utcnow()
    results = (
        ingest_due_feed(session, settings, feed_id, now=now)
        for feed_id in due_feeds(session, settings, now=now)
    )
    return [result for result in results if result is not None]
