"""Pages behind the links in our mails: unsubscribe, preferences, and the reader's data.

What a link grants is the rule here (see :mod:`newsletter.readers.tokens`): a link from any
newsletter lets its holder leave, pause and change that reader's choices, because mails get
forwarded; personal data (the consent records' IP and user agent) is shown only behind a one-hour
link that we mail to the address on request; a reader who left everything gets lists back only
through a new confirmation mail, but for the 15-minute "undo" right after leaving; and "log out
all links" revokes every older link but for leaving. GET never changes anything: every change is
a POST, so a mail scanner that follows or renders links changes nobody.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from newsletter.readers import links
from newsletter.readers.choices import available_topics, timezone_groups
from newsletter.readers.consent import export_subscriber_by_id
from newsletter.readers.erasure import erase
from newsletter.readers.manage import (
    ManageLink,
    log_out_all_links,
    pause,
    read_data_link,
    read_manage_link,
    read_unsubscribe_link,
    switch_frequency,
    undo_token,
    undo_unsubscribe,
    unsubscribe,
)
from newsletter.readers.newsletters import choosable_newsletters, newsletter_names
from newsletter.readers.preferences import (
    Consent,
    Preferences,
    rejoin,
    rejoinable,
    update_preferences,
)
from newsletter.readers.subscriptions import (
    InvalidLink,
    SubscriptionError,
    UnknownNewsletter,
    subscriptions_of,
)
from newsletter.store.models import (
    Frequency,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from newsletter.web import db, mail_queue, settings
from newsletter.web.extensions import csrf
from newsletter.web.forms import ManageActionForm, preferences_form
from newsletter.web.pages import (
    client_ip,
    client_user_agent,
    consent_text,
    content_security_policy,
    link_error,
    private,
    refuse_control_characters_in_query,
)

bp = Blueprint("reader_links", __name__)
bp.before_request(refuse_control_characters_in_query)
bp.after_request(content_security_policy)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"
LEAVING = {"unsubscribe", "all"}  # what a link revoked by "log out all links" may still do


# --- unsubscribe ---------------------------------------------------------------------------------


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> BaseResponse:
    """The unsubscribe page: a button (a POST) and gentler alternatives. Changes nothing."""
    try:
        link = read_unsubscribe_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    return private(Response(_render_manage(link)))


@bp.post("/unsubscribe/<token>")
@csrf.exempt
def unsubscribe_submit(token: str) -> BaseResponse:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click``) or one of the page's buttons."""
    one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    try:
        link = read_unsubscribe_link(db(), settings(), token)
    except InvalidLink as exc:
        if one_click and exc.status == 404:
            # Signed by us, for a reader who is gone (erased, or the inert reader of a test or
            # pre-send check copy): they are not subscribed, which is what the provider asks.
            return Response("You are unsubscribed.\n", 200, mimetype="text/plain")
        if one_click:
            return Response(exc.message + "\n", exc.status, mimetype="text/plain")
        return link_error(exc)
    subscriber = link.subscriber
    if one_click:
        # Mail providers post this without cookies and follow no redirects: answer plainly.
        unsubscribe(db(), subscriber, link.newsletter_id)
        db().commit()
        return Response("You are unsubscribed.\n", 200, mimetype="text/plain")

    form = ManageActionForm()
    if not form.validate():
        return private(Response(_render_manage(link, form=form), 400))
    if link.stale and form.action.data not in LEAVING:
        return link_error(InvalidLink(_stale_message(), 404))
    try:
        outcome = _manage_action(link, form)
    except InvalidLink as exc:
        db().rollback()
        return link_error(exc)
    except SubscriptionError as exc:
        form.weeks.errors = [str(exc)]
        return private(Response(_render_manage(link, form=form), 400))
    db().commit()
    if outcome.get("consent_id") is not None:
        mail_queue().send_confirmation(outcome["consent_id"])
    body = render_template(
        "web/manage_done.html",
        outcome=outcome,
        names=newsletter_names(db(), outcome["ids"]),
        undo=outcome.get("undo", ""),
        preferences_url="" if link.stale else _preferences_url(subscriber),
    )
    return private(Response(body))


def _manage_action(link: ManageLink, form: ManageActionForm) -> dict[str, Any]:
    """Carry out the button the reader pressed on the unsubscribe page; what it changed."""
    subscriber = link.subscriber
    action = form.action.data
    if action in LEAVING:
        scope = link.newsletter_id if action == "unsubscribe" else None
        left = unsubscribe(db(), subscriber, scope)
        # A revoked link may leave, but gets no undo: putting lists back is for current links.
        undo = undo_token(settings(), subscriber, left) if left and not link.stale else ""
        return _outcome("left", left, scope is None, undo=undo)
    if action == "pause":
        weeks = int(form.weeks.data or 0)
        paused = pause(db(), subscriber, link.newsletter_id, weeks)
        return _outcome("paused", paused, link.newsletter_id is None, weeks=weeks)
    if action == "weekly":
        changed = switch_frequency(db(), subscriber, link.newsletter_id, Frequency.WEEKLY)
        return _outcome("weekly", changed, link.newsletter_id is None)
    if action == "rejoin":
        consent = Consent(
            consent_text("preferences"),
            settings().consent_version,
            "unsubscribe page",
            client_ip(),
            client_user_agent(),
        )
        change = rejoin(db(), settings(), subscriber, link.newsletter_id, consent)
        if change.consent_id is not None:
            return _outcome(
                "confirm",
                list(change.to_confirm),
                link.newsletter_id is None,
                consent_id=change.consent_id,
            )
        return _outcome("resubscribed", list(change.added), link.newsletter_id is None)
    back = undo_unsubscribe(db(), settings(), subscriber, form.undo.data or "")
    return _outcome("resubscribed", back, link.newsletter_id is None)


def _outcome(kind: str, ids: list[int], all_lists: bool, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "ids": ids, "all": all_lists, **extra}


def _render_manage(link: ManageLink, form: ManageActionForm | None = None) -> str:
    subscriber = link.subscriber
    rows = list(subscriptions_of(db(), subscriber.id))
    in_scope = [
        (sub, newsletter)
        for sub, newsletter in rows
        if link.newsletter_id is None or newsletter.id == link.newsletter_id
    ]
    active = [(s, n) for s, n in in_scope if s.status == SubscriptionStatus.ACTIVE]
    can_go_weekly = not link.stale and any(
        n.kind == NewsletterKind.DIGEST and s.frequency == Frequency.DAILY for s, n in active
    )
    return render_template(
        "web/unsubscribe.html",
        link=link,
        active=active,
        other_active=[
            (s, n)
            for s, n in rows
            if s.status == SubscriptionStatus.ACTIVE and (s, n) not in in_scope
        ],
        can_go_weekly=can_go_weekly,
        can_rejoin=not link.stale and not active and rejoinable(subscriber, link.newsletter_id),
        form=form,
        preferences_url="" if link.stale else _preferences_url(subscriber),
    )


def _stale_message() -> str:
    return (
        "This link can now only unsubscribe you: the links in older mails were logged out. "
        "Please use the link in a more recent mail from us."
    )


# --- preferences ---------------------------------------------------------------------------------


@bp.get("/preferences/<token>")
def preferences_page(token: str) -> BaseResponse:
    """The reader's preferences: lists, frequency, topics, name, time zone."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    form, context = _preferences_form(link)
    notice = request.args.get("done", "")
    return private(Response(_render_preferences(form, context, notice=notice)))


@bp.post("/preferences/<token>")
def preferences_submit(token: str) -> BaseResponse:
    """Save the preferences (CSRF-protected), then show the page again (303)."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    form, context = _preferences_form(link)
    if not form.validate():
        return private(Response(_render_preferences(form, context), 400))
    prefs = Preferences(
        name=form.name.data or "",
        timezone=form.timezone.data or "UTC",
        newsletter_ids=frozenset(int(x) for x in form.newsletter.data or []),
        topics=tuple(form.topics.data or []),
        frequencies={nid: Frequency(field.data) for nid, field in form.frequency_fields()},
        consent_text=consent_text("preferences"),
        consent_version=settings().consent_version,
    )
    try:
        change = update_preferences(
            db(), settings(), link.subscriber, prefs, ip=client_ip(), user_agent=client_user_agent()
        )
    except SubscriptionError as exc:
        db().rollback()
        target = form.newsletter if isinstance(exc, UnknownNewsletter) else form.name
        target.errors = [str(exc)]
        return private(Response(_render_preferences(form, context), 400))
    db().commit()
    done = "saved"
    if change.consent_id is not None:
        mail_queue().send_confirmation(change.consent_id)
        done = "confirm"
    return private(redirect(url_for(".preferences_page", token=token, done=done), code=303))


@bp.post("/preferences/<token>/links")
def log_out_links(token: str) -> BaseResponse:
    """ "Log out all links": every older link stops working but for leaving; a new one is mailed."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    log_out_all_links(db(), link.subscriber)
    db().commit()
    mail_queue().send_manage_link(link.subscriber.id)
    return _mailed_page("links")


@bp.post("/preferences/<token>/data")
def request_data(token: str) -> BaseResponse:
    """ "Email me my data": mail the address a link to it that works for one hour."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    mail_queue().send_data_link(link.subscriber.id)
    return _mailed_page("data")


def _mailed_page(kind: str) -> BaseResponse:
    """The answer to a request whose result we mail to the reader."""
    return private(Response(render_template("web/link_mailed.html", kind=kind)))


def _preferences_form(link: ManageLink) -> tuple[Any, dict[str, Any]]:
    subscriber = link.subscriber
    rows = list(subscriptions_of(db(), subscriber.id))
    current = {newsletter.id: sub for sub, newsletter in rows}
    lists = choosable_newsletters(db(), subscriber.id)
    # A daily digest can be had weekly; a weekly one (long reads for the weekend) stays weekly.
    digest_ids = [
        n.id
        for n in lists
        if n.kind == NewsletterKind.DIGEST and n.default_frequency == Frequency.DAILY
    ]
    zones = timezone_groups(subscriber.timezone)
    topics = available_topics(db())
    active_ids = [
        str(nid) for nid, sub in current.items() if sub.status == SubscriptionStatus.ACTIVE
    ]
    data: dict[str, Any] = {
        "name": subscriber.name,
        "timezone": subscriber.timezone,
        "newsletter": active_ids,
        "topics": list(subscriber.topics or []),
    }
    for nid in digest_ids:
        sub = current.get(nid)
        default = (
            sub.frequency
            if sub is not None
            else next(n.default_frequency for n in lists if n.id == nid)
        )
        data[f"frequency_{nid}"] = default.value
    form = preferences_form(
        newsletter_choices=[(str(n.id), n.name) for n in lists],
        digest_ids=digest_ids,
        topics=topics,
        timezones=[name for _, items in zones for name, _ in items],
        data=data,
    )
    names = {n.name.casefold() for n in lists}
    context = {
        "lists": lists,
        "current": current,
        "subscriber": subscriber,
        "timezone_groups": zones,
        # A topic spelt like a newsletter ("Offers") is labelled as the stories it stands for.
        "topic_labels": {t: (f"{t} stories" if t.casefold() in names else t) for t in topics},
    }
    return form, context


def _render_preferences(form: Any, context: dict[str, Any], *, notice: str = "") -> str:
    subscriber = context["subscriber"]
    return render_template(
        "web/preferences.html",
        form=form,
        notice=notice,
        left_everything=subscriber.status != SubscriberStatus.ACTIVE,
        frequency_fields=dict(form.frequency_fields()),
        unsubscribe_all_url=links.unsubscribe_url(settings(), links.subscriber_claim(subscriber)),
        consent_text=consent_text("preferences"),
        **context,
    )


def _preferences_url(subscriber: Subscriber) -> str:
    return links.preferences_url(settings(), links.subscriber_claim(subscriber))


# --- the reader's data (behind a mailed one-hour link) -------------------------------------------


@bp.get("/data/<token>")
def data_page(token: str) -> BaseResponse:
    """What we hold about the reader, from the link mailed on request (one hour)."""
    try:
        subscriber = read_data_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    data = export_subscriber_by_id(db(), subscriber.id)
    body = render_template(
        "web/your_data.html",
        data=data,
        export_url=url_for(".data_export", token=token),
        erase_url=url_for(".data_erase", token=token),
        preferences_url=_preferences_url(subscriber),
    )
    return private(Response(body))


@bp.post("/data/<token>/erase")
def data_erase(token: str) -> BaseResponse:
    """ "Erase my data" (CSRF-protected POST behind the mailed one-hour link): the same
    :func:`~newsletter.readers.erasure.erase` the editors' command runs."""
    try:
        subscriber = read_data_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    erase(db(), subscriber)
    db().commit()
    return private(Response(render_template("web/erased.html")))


@bp.get("/data/<token>/export.json")
def data_export(token: str) -> BaseResponse:
    """ "Download my data": everything we hold about the reader, as JSON (read-only)."""
    try:
        subscriber = read_data_link(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    data = export_subscriber_by_id(db(), subscriber.id)
    response = Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", mimetype="application/json"
    )
    response.headers["Content-Disposition"] = 'attachment; filename="my-newsletter-data.json"'
    return private(response)
