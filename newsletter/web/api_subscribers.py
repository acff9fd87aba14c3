"""Readers over the JSON API: GET/POST /api/v1/subscribers, GET/PATCH/DELETE
/api/v1/subscribers/<id> and POST /api/v1/subscribers/<id>/unsubscribe.

The rules are the readers core's, as the ``newsletter subscribers`` commands use them:
``directory`` (list, show), ``importing`` (its verdicts and its recorded-consent path),
``signup`` (a confirmation by mail, exactly as a signup's), ``preferences`` (edit) and
``erasure`` (unsubscribe, suppress, erase). The API is staff's, authenticated and scoped, so a
refusal may say what it knows: adding an address already on a list is a 409 that says so
(which is also why it records a confirmation signup in the request, not in a worker as the
public form must).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from functools import wraps
from typing import Any, TypeVar

from flask import g
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from newsletter.readers.addresses import InvalidAddress, email_key, normalise
from newsletter.readers.choices import available_topics, valid_timezone
from newsletter.readers.directory import (
    ReaderFilter,
    count_readers,
    list_readers,
    reader_record,
)
from newsletter.readers.erasure import erase, unsubscribe_reader
from newsletter.readers.importing import (
    ImportFileError,
    ImportMode,
    ImportRow,
    apply,
    check_database,
)
from newsletter.readers.importing import find_newsletter as import_target
from newsletter.readers.preferences import edit_reader
from newsletter.readers.signup import Signup, SignupAction, subscribe
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter, clean_name
from newsletter.store.models import (
    MAX_ID,
    ApiToken,
    ConsentRecord,
    Newsletter,
    Subscriber,
    SubscriptionStatus,
)
from newsletter.web import db, mail_queue, settings
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_etags import IF_MATCH, check_if_match, etag
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas_readers import (
    SubscriberCreate,
    SubscriberCreated,
    SubscriberEdit,
    SubscriberListQuery,
    SubscriberPage,
    SubscriberRecord,
    UnsubscribeReply,
    UnsubscribeRequest,
)
from newsletter.web.openapi import operation

F = TypeVar("F", bound=Callable[..., Any])
SUBSCRIBERS = "subscribers"
VIA = "API request"
ADDED_CONCURRENTLY = "the address was added concurrently; read it again"
CONFIRM_TEXT = "Added by an editor; subscribed only after confirming by the link in the mail."


def reader_errors(field: str | None = None) -> Callable[[F], F]:
    """Translate refusals of the readers core into problems: 404 for an unknown list (naming
    ``field``, where the body names lists), else 400."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return view(*args, **kwargs)
            except UnknownNewsletter as exc:
                db().rollback()
                raise ApiError(404, str(exc), field=field) from None
            except (SubscriptionError, ImportFileError) as exc:
                db().rollback()
                raise ApiError(400, str(exc)) from None

        return wrapper  # type: ignore[return-value]

    return decorate


def normalised_address(raw: str) -> str:
    """The normalised address, or a 400 naming ``email``."""
    try:
        return normalise(raw)
    except InvalidAddress as exc:
        raise ApiError(400, f"email: {exc}", field="email") from None


def _actor(token: ApiToken) -> str:
    """Who acts, as consent records name them (ids and an address: no free text in them)."""
    owner = f" of {token.user.email}" if token.user is not None else ""
    return f"API token #{token.id}{owner}"


def _reader(subscriber_id: int, *, lock: bool = False) -> Subscriber:
    """The reader with this id (locked for an edit, on PostgreSQL), or a 404."""
    subscriber = None
    if 1 <= subscriber_id <= MAX_ID:
        subscriber = db().get(
            Subscriber, subscriber_id, with_for_update=lock, populate_existing=lock
        )
    if subscriber is None:
        raise ApiError(404, f"no subscriber with id {subscriber_id}")
    return subscriber


def _record(subscriber_id: int) -> dict[str, Any]:
    """A reader's record as JSON-able data."""
    record = reader_record(db(), subscriber_id)
    if record is None:
        raise ApiError(404, f"no subscriber with id {subscriber_id}")
    return asdict(record)


def subscriber_etag(record: dict[str, Any]) -> str:
    """The tag of what a PATCH may change, and the lists it reads from (not the history)."""
    reader = record["reader"]
    return etag(
        {
            "reader": {k: reader[k] for k in ("id", "email", "name", "status", "timezone")}
            | {"topics": reader["topics"]},
            "lists": [
                [s["newsletter"], s["status"], s["frequency"]] for s in record["subscriptions"]
            ],
        }
    )


def _answer(subscriber_id: int) -> tuple[dict[str, Any], dict[str, str]]:
    """A reader's record and its ETag header."""
    record = _record(subscriber_id)
    return record, {"ETag": subscriber_etag(record)}


# --- Subscribers ---------------------------------------------------------------------------------


@bp.get("/subscribers")
@require_token("subscribers:read")
@operation(
    tag=SUBSCRIBERS, query=SubscriberListQuery, responses={200: SubscriberPage}, problems=(404,)
)
@reader_errors("newsletter")
def list_subscribers(query: SubscriberListQuery) -> dict[str, Any]:
    """Readers in id order, of one list, in a status or matching a search; paged by ``after``.

    With ``newsletter``, ``status`` is the status on that list (pending, active or
    unsubscribed); without, the reader's own. ``counts=true`` adds how many match, by status.
    """
    after = decode_cursor(query.after, [int])
    f = _filter(query)
    found = list_readers(db(), f, after=after[0] if after else 0, limit=query.limit + 1)
    rows = list(found.rows)
    shown, cursor = page(rows, query.limit, lambda r: [r.id])
    counts = None
    if query.counts:
        tally = count_readers(db(), f)
        counts = {
            "total": tally.total,
            "by_status": tally.by_subscription_status or tally.by_status,
        }
    return {"items": [asdict(r) for r in shown], "next": cursor, "counts": counts}


def _filter(query: SubscriberListQuery) -> ReaderFilter:
    """The directory's filter of a list query (see :func:`list_subscribers`)."""
    if query.newsletter is None or query.status is None:
        return ReaderFilter(query.newsletter, None, query.status, query.q)
    try:
        on_list = SubscriptionStatus(query.status.value)
    except ValueError:
        raise ApiError(
            400,
            "status: with newsletter, one of " + ", ".join(s.value for s in SubscriptionStatus),
            field="status",
        ) from None
    return ReaderFilter(query.newsletter, on_list, None, query.q)


@bp.get("/subscribers/<int:subscriber_id>")
@require_token("subscribers:read")
@operation(tag=SUBSCRIBERS, responses={200: SubscriberRecord}, response_headers=("ETag",))
def show_subscriber(subscriber_id: int) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A reader's record: lists, consent records, latest mails and reports; its ETag.

    The consent records are personal data: they hold the IP address and browser of the signup
    and of the confirmation, shown to every token with subscribers:read.
    """
    record, tag = _answer(subscriber_id)
    return record, 200, tag


@bp.post("/subscribers")
@require_token("subscribers:write")
@operation(
    tag=SUBSCRIBERS,
    body=SubscriberCreate,
    responses={201: SubscriberCreated},
    problems=(404, 409),
    response_headers=("ETag", "Location"),
    creates=("subscriber_id", "/reader/id"),
)
@reader_errors("newsletters")
def create_subscriber(body: SubscriberCreate) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Add a reader to lists: by a double opt-in mail (``confirm``) or on recorded consent.

    With ``"confirm": true`` the reader (pending) gets the signup's confirmation mail and joins
    when they click it; the name waits with the consent record until then, and topics,
    frequency and time zone are theirs to choose. With ``"consent": {"source": ...}`` they join
    at once, with a confirmed consent record per list naming the source, this token and the
    time. An address already on a list, or that left one, or on the do-not-mail list (an erased
    reader too: they come back only by signing up themselves) is a 409 naming the list and why.
    """
    if (body.confirm is None) == (body.consent is None):
        raise ApiError(400, "give exactly one of 'confirm': true and 'consent'", field="confirm")
    if body.confirm and (body.topics or body.frequency or body.timezone):
        raise ApiError(
            400,
            "topics, frequency and timezone need 'consent': a reader who confirms by mail "
            "chooses them",
            field="confirm",
        )
    session = db()
    address = normalised_address(body.email)
    row = _import_row(address, body)
    lists = [import_target(session, slug) for slug in dict.fromkeys(body.newsletters)]
    # A reader we hold is locked (PostgreSQL) until the commit: a concurrent add of the same
    # address waits, then finds it subscribed. A new address cannot be locked, see below.
    existing = session.scalar(
        select(Subscriber.id).where(Subscriber.email_key == email_key(address)).with_for_update()
    )
    _refuse_unless_new(lists, row)
    try:
        if body.consent is not None:
            subscriber_id, mailed = _with_consent(lists, row, body.consent.source), None
        else:
            subscriber_id, mailed = _with_confirmation(lists, row)
        if existing is None and _consents_of(subscriber_id) != (1 if mailed else len(lists)):
            # The address was new, yet its reader has consent records of another request's:
            # that request added it after our verdicts (its commit landed in between).
            session.rollback()
            raise ApiError(409, ADDED_CONCURRENTLY)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(409, ADDED_CONCURRENTLY) from None
    if mailed is not None:
        mail_queue().send_confirmation(mailed)  # after the commit, as a signup's
    record, tag = _answer(subscriber_id)
    record["confirmation_mail"] = mailed is not None
    headers = tag | {"Location": f"/api/v1/subscribers/{subscriber_id}"}
    return record, 201, headers


def _import_row(address: str, body: SubscriberCreate) -> ImportRow:
    """The body as the import's one row, its cells checked as the import checks them."""
    try:
        name = clean_name(body.name)
    except SubscriptionError as exc:
        raise ApiError(400, f"name: {exc}", field="name") from None
    topics = tuple(dict.fromkeys(t.strip() for t in body.topics if t.strip()))
    unknown = set(topics) - set(available_topics(db()))
    if unknown:
        raise ApiError(400, f"topics: no topic called {sorted(unknown)[0]!r}", field="topics")
    if body.timezone and not valid_timezone(body.timezone):
        raise ApiError(400, f"timezone: no time zone called {body.timezone!r}", field="timezone")
    return ImportRow(
        1, address, name=name, topics=topics, frequency=body.frequency, timezone=body.timezone
    )


def _refuse_unless_new(lists: list[Newsletter], row: ImportRow) -> None:
    """A 409 naming each list the import would refuse this address for, and why."""
    refused = {}
    for newsletter in lists:
        [verdict] = check_database(db(), newsletter, [row])
        if not verdict.ok:
            refused[newsletter.slug] = f"{verdict.status.value}: {verdict.reason}"
    if refused:
        detail = "; ".join(f"{slug}: {why}" for slug, why in refused.items())
        raise ApiError(409, f"not added: {detail}", refused=refused)


def _with_consent(lists: list[Newsletter], row: ImportRow, source: str) -> int:
    """Subscribe at once on recorded consent (the import's path, a row per list)."""
    for newsletter in lists:
        result = apply(
            db(),
            settings(),
            [row],
            newsletter.slug,
            ImportMode.CONSENTED,
            actor=_actor(g.api_token),
            source=source,
            via=VIA,
        )
        if result.skipped:
            # apply checks again: another request added the address since our verdicts.
            db().rollback()
            [verdict] = result.skipped
            why = f"{verdict.status.value}: {verdict.reason}"
            raise ApiError(
                409, f"not added: {newsletter.slug}: {why}", refused={newsletter.slug: why}
            )
    return _id_of(row.email)


def _with_confirmation(lists: list[Newsletter], row: ImportRow) -> tuple[int, int]:
    """Record the signup as the public form's worker does; the reader's id and the consent
    record whose mail is queued after the commit."""
    signup = Signup(
        email=row.email,
        newsletter_ids=tuple(n.id for n in lists),
        name=row.name,
        source=f"{VIA} by {_actor(g.api_token)}",
        consent_text=CONFIRM_TEXT,
    )
    result = subscribe(db(), settings(), signup)
    if result.action is not SignupAction.CONFIRM or result.consent_id is None:
        # The verdicts said otherwise a moment ago: a concurrent change.
        db().rollback()
        raise ApiError(409, "the address changed concurrently; read it again")
    assert result.subscriber_id is not None
    return result.subscriber_id, result.consent_id


def _consents_of(subscriber_id: int) -> int:
    """How many consent records the reader has."""
    count = db().scalar(
        select(func.count())
        .select_from(ConsentRecord)
        .where(ConsentRecord.subscriber_id == subscriber_id)
    )
    return int(count or 0)


def _id_of(address: str) -> int:
    """The id of the reader with this (normalised) address."""
    found = db().scalar(select(Subscriber.id).where(Subscriber.email_key == email_key(address)))
    assert found is not None, "apply stores the reader it was given"
    return int(found)


@bp.patch("/subscribers/<int:subscriber_id>")
@require_token("subscribers:write")
@operation(
    tag=SUBSCRIBERS,
    body=SubscriberEdit,
    responses={200: SubscriberRecord},
    problems=(412,),
    headers=(IF_MATCH,),
    response_headers=("ETag",),
)
@reader_errors("frequencies")
def edit_subscriber(
    subscriber_id: int, body: SubscriberEdit
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Change a reader's name, time zone, topics or digest frequency per list (lists stay);
    with If-Match, only if nobody changed them since (412 otherwise)."""
    subscriber = _reader(subscriber_id, lock=True)
    check_if_match(subscriber_etag(_record(subscriber_id)))
    edit_reader(
        db(),
        subscriber,
        name=body.name,
        timezone=body.timezone,
        topics=tuple(body.topics) if body.topics is not None else None,
        frequencies=body.frequencies,
    )
    db().commit()
    record, tag = _answer(subscriber_id)
    return record, 200, tag


@bp.post("/subscribers/<int:subscriber_id>/unsubscribe")
@require_token("subscribers:write")
@operation(
    tag=SUBSCRIBERS,
    body=UnsubscribeRequest,
    body_required=False,
    responses={200: UnsubscribeReply},
)
@reader_errors("newsletter")
def unsubscribe_subscriber(subscriber_id: int, body: UnsubscribeRequest) -> dict[str, Any]:
    """Unsubscribe a reader from one list (``newsletter``), or from every list; idempotent."""
    left = unsubscribe_reader(db(), _reader(subscriber_id), body.newsletter)
    db().commit()
    return {"left": left, "subscriber": _record(subscriber_id)}


@bp.delete("/subscribers/<int:subscriber_id>")
@require_token("subscribers:write")
@operation(tag=SUBSCRIBERS, responses={204: None})
def erase_subscriber(subscriber_id: int) -> tuple[str, int]:
    """Erase a reader (GDPR Art. 17): their row, lists, consent records, mails and reports go.

    The address's suppression hash stays (reason `erased`, or a bounce's or complaint's own),
    so no send, import or editor reaches it again, and a pseudonymised proof of each confirmed
    consent is kept for NEWSLETTER_ERASED_CONSENT_DAYS. A later signup of theirs starts anew.
    """
    erase(db(), _reader(subscriber_id))
    db().commit()
    return "", 204
