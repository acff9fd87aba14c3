"""Reader pages: signup (page, iframe, cross-site post), confirmation, preferences, unsubscribe.

Thin adapters over :mod:`newsletter.readers.subscriptions`: parse, validate, call the domain,
commit, enqueue mail, render. Three rules shape them:

* GET never changes anything (mail scanners prefetch every link); each state change is a POST.
* The answer to a signup is the same whatever the address's state: no enumeration.
* Links from mails carry signed tokens; those POSTs need no CSRF token (the URL is the secret),
  and the one-click unsubscribe of RFC 8058 must work with neither cookies nor CSRF.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    Response,
    abort,
    redirect,
    render_template,
    request,
    url_for,
)
from limits import RateLimitItemPerSecond, parse_many
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response as BaseResponse

from newsletter.readers import links
from newsletter.readers.addresses import inbox_hash
from newsletter.readers.choices import available_timezones, available_topics, resolve_newsletters
from newsletter.readers.confirmation import confirm, read_confirmation
from newsletter.readers.consent import export_subscriber_by_id
from newsletter.readers.manage import (
    ManageLink,
    pause,
    read_manage_link,
    resubscribe,
    switch_frequency,
    unsubscribe,
)
from newsletter.readers.newsletters import (
    choosable_newsletters,
    default_signup_newsletter,
    newsletter_names,
    public_newsletters,
)
from newsletter.readers.preferences import Preferences, update_preferences
from newsletter.readers.signup import Signup
from newsletter.readers.signup_challenge import (
    CHALLENGE_LIFETIME,
    InvalidSolution,
    issue_challenge,
    verify_solution,
)
from newsletter.readers.signup_mails import enqueue_welcome
from newsletter.readers.signup_requests import signup_request
from newsletter.readers.subscriptions import (
    InvalidLink,
    SubscriptionError,
    UnknownNewsletter,
    clean_name,
    subscriptions_of,
)
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    NewsletterKind,
    Subscriber,
    SubscriptionStatus,
)
from newsletter.web import db, mail_queue, settings
from newsletter.web.extensions import csrf, limiter
from newsletter.web.forms import (
    CONTROL_MESSAGE,
    ExternalSignupForm,
    ManageActionForm,
    SignupForm,
    has_control_chars,
    preferences_form,
)

bp = Blueprint("public", __name__)

ONE_CLICK_FIELD = "List-Unsubscribe"
ONE_CLICK_VALUE = "One-Click"


def _signup_rate() -> str:
    return settings().signup_rate_limit


# Per client IP, shared by every endpoint that accepts a signup.
signup_limit = limiter.shared_limit(_signup_rate, scope="newsletter-signup")


@bp.before_request
def refuse_control_characters_in_query() -> None:
    """A line break in any query parameter is an injection attempt: 400 before anything else."""
    for values in request.args.listvalues():
        if any(has_control_chars(v) for v in values):
            abort(400, description=CONTROL_MESSAGE)


@bp.after_request
def content_security_policy(response: Response) -> Response:
    """Only our own scripts and styles; only the news site may frame the embeddable form."""
    if request.path.startswith("/embed"):
        hosts = " ".join(f"https://{h} http://{h}" for h in settings().allowed_redirect_hosts if h)
        ancestors = f"'self' {hosts}".strip()
    else:
        ancestors = "'none'"
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}",
    )
    return response


# --- signup --------------------------------------------------------------------------------------


def consent_text(page: str = "signup") -> str:
    """The consent wording shown beside a form and recorded, word for word, with what it covers."""
    template = "web/_consent_preferences.txt" if page == "preferences" else "web/_consent.txt"
    return " ".join(render_template(template).split())


@bp.get("/")
def signup_page() -> str:
    """The "Stay in touch" signup page; ``?newsletter=SLUG`` pre-ticks that list."""
    form = SignupForm(formdata=None)
    form.source.data = _page_source()
    return _render_signup(form, preselect=_preselected(), status=200)[0]


@bp.post("/")
@signup_limit
def signup_submit() -> BaseResponse | tuple[str, int]:
    """Submit the signup page (CSRF-protected)."""
    return _handle_signup(SignupForm(), template="web/signup.html", default_list=False)


@bp.get("/embed")
def embed_page() -> str:
    """The compact form meant for an iframe on the news site's pages."""
    form = ExternalSignupForm(formdata=None)
    form.source.data = _header_text(request.referrer, 500)
    form.embed.data = "1"
    return _render_signup(form, preselect=_preselected(), status=200, template="web/embed.html")[0]


@bp.post("/embed")
@csrf.exempt
@signup_limit
def embed_submit() -> BaseResponse | tuple[str, int]:
    """Submit the iframe form (cross-site, so no CSRF token; see ExternalSignupForm)."""
    return _handle_signup(ExternalSignupForm(), template="web/embed.html", default_list=True)


@bp.post("/subscribe")
@csrf.exempt
@signup_limit
def subscribe_external() -> BaseResponse | tuple[str, int]:
    """The endpoint the news site's own plain HTML forms post to (see ExternalSignupForm).

    Answers with a 303 back to ``next`` (plus ``subscribed=1``) when its host is allowed, else
    with our own "check your inbox" page.
    """
    return _handle_signup(ExternalSignupForm(), template="web/signup.html", default_list=True)


def _handle_signup(
    form: SignupForm, *, template: str, default_list: bool
) -> BaseResponse | tuple[str, int]:
    """Shared POST handling of the three signup endpoints."""
    next_url = request.form.get("next", "")
    if (request.form.get("website") or "").strip():
        # The honeypot was filled: a bot. Answer exactly as for a real signup, do nothing.
        return _signup_done(next_url, template)
    if not form.validate() or not _challenge_solved(form):
        return _render_signup(
            form, preselect=form.newsletter.data or [], status=400, template=template
        )
    # A blank value (an empty hidden field on the news site's form) names no list.
    refs = [ref for ref in form.newsletter.data or [] if ref.strip()]
    try:
        if not refs and default_list:
            # A plain "email only" box on the news site signs up for the site's main list.
            first = default_signup_newsletter(db())
            refs = [first.slug] if first else []
        if not refs:
            raise SubscriptionError("Please choose at least one newsletter.")
        newsletters = resolve_newsletters(db(), refs)
    except SubscriptionError as exc:
        form.newsletter.errors = [str(exc)]
        return _render_signup(form, preselect=refs, status=400, template=template)
    try:
        name = clean_name(form.name.data or "")  # refused alike for every address
    except SubscriptionError as exc:
        form.name.errors = [str(exc)]
        return _render_signup(form, preselect=refs, status=400, template=template)
    email = form.email.data or ""
    _check_address_limit(email)
    signup = Signup(
        email=email,
        newsletter_ids=tuple(n.id for n in newsletters),
        name=name,
        source=form.source.data or _header_text(request.referrer, 500),
        ip=_client_ip(),
        user_agent=_header_text(request.user_agent.string, 500),
        consent_text=consent_text(),
        consent_version=settings().consent_version,
    )
    # Nothing about the address is read or written here: a worker records the signup, so this
    # request does the same queries and enqueues the same task whatever the address's state.
    mail_queue().process_signup(signup_request(signup, utcnow()))
    return _signup_done(next_url, template)


def _signup_done(next_url: str, template: str) -> BaseResponse | tuple[str, int]:
    """The one answer every accepted signup gets, whatever the address's state."""
    target = safe_redirect_target(next_url, settings().allowed_redirect_hosts)
    if target is not None:
        return redirect(target, code=303)
    page = "web/embed_check_inbox.html" if template == "web/embed.html" else "web/check_inbox.html"
    return render_template(page), 200


def _check_address_limit(email: str) -> None:
    """Per-inbox rate limit, keyed on the inbox hash (never the address) → 429.

    Every spelling of one inbox (case, ``+tags``, Gmail's dots) counts against the same limit.
    """
    strategy = limiter.limiter
    key = inbox_hash(email, settings().inbox_strip_plus_tags)
    for item in parse_many(settings().address_rate_limit):
        if not strategy.hit(item, "newsletter-signup-address", key):
            raise TooManyRequests(
                "This address was submitted too often. Please wait a while and try again."
            )


def _challenge_solved(form: SignupForm) -> bool:
    """True when the proof of work is off or solved; else the form's error says why (→ 400)."""
    if not settings().signup_challenge:
        return True
    try:
        verify_solution(settings().secret_key, form.altcha.data or "", _first_use_of_challenge)
    except InvalidSolution as exc:
        form.altcha.errors = [str(exc)]
        return False
    return True


def _first_use_of_challenge(challenge: str) -> bool:
    """Mark a challenge used for its lifetime in the limiter's storage; False if it was already."""
    # A limit of one hit per lifetime is a SET NX with a TTL, in Redis when configured.
    once = RateLimitItemPerSecond(1, int(CHALLENGE_LIFETIME.total_seconds()))
    return limiter.limiter.hit(once, "newsletter-signup-challenge", challenge)


def safe_redirect_target(raw: str, allowed_hosts: tuple[str, ...]) -> str | None:
    """``raw`` with ``subscribed=1`` added if it is an http(s) URL on an allowed host, else None.

    Only absolute URLs qualify, and the host must match exactly: no scheme-relative ``//host``,
    no backslashes (browsers read them as slashes), no user-info (``good@evil``), no whitespace.
    """
    if not raw or len(raw) > 2000 or has_control_chars(raw):
        return None
    if "\\" in raw or any(ch.isspace() for ch in raw):
        return None
    try:
        parts = urlsplit(raw)
        port = parts.port  # raises ValueError for a malformed port
    except ValueError:
        return None
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        return None
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return None
    host = (parts.hostname or "").lower()
    netloc = host if port is None else f"{host}:{port}"
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    if netloc not in allowed and not (port is None and host in allowed):
        return None
    if netloc != parts.netloc.lower():
        return None  # e.g. a trailing dot or other spelling we do not normalise
    query = parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != "subscribed"] + [("subscribed", "1")]
    return urlunsplit(
        (parts.scheme.lower(), parts.netloc, parts.path, urlencode(query), parts.fragment)
    )


def _preselected() -> list[str]:
    """The list a signup link is for (``?newsletter=slug``), if it names a public one."""
    wanted = request.args.get("newsletter", "").strip()
    return [wanted] if wanted else []


def _page_source() -> str:
    """Where a signup happened, for the consent record: this page and its query."""
    return request.full_path.rstrip("?")[:500]


def _render_signup(
    form: SignupForm, *, preselect: list[str], status: int, template: str = "web/signup.html"
) -> tuple[str, int]:
    newsletters = public_newsletters(db())
    selected = {n.slug for n in newsletters if n.slug in preselect or str(n.id) in preselect}
    if template == "web/embed.html" and selected and request.method == "GET":
        # An iframe made for one newsletter offers just that one.
        newsletters = [n for n in newsletters if n.slug in selected]
    embed = template == "web/embed.html"
    action = url_for("public.embed_submit" if embed else "public.signup_submit")
    config = settings()
    challenge = (
        issue_challenge(config.secret_key, config.signup_challenge_max_number)
        if config.signup_challenge
        else None
    )
    body = render_template(
        template,
        form=form,
        newsletters=newsletters,
        selected=selected,
        consent_text=consent_text(),
        action=action,
        # Errors from /subscribe are shown on our own page, whose form posts to "/" with CSRF.
        use_csrf=template == "web/signup.html",
        challenge=challenge,
    )
    return body, status


# --- confirmation --------------------------------------------------------------------------------


@bp.get("/confirm/<token>")
def confirm_page(token: str) -> BaseResponse:
    """Show what the link confirms, with a button (auto-pressed by a script). Changes nothing."""
    try:
        confirmation = read_confirmation(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    if confirmation.consent.confirmed_at is not None:
        return _private(_confirmed_page(confirmation.subscriber))
    body = render_template("web/confirm.html", newsletters=confirmation.newsletters)
    return _private(Response(body))


@bp.post("/confirm/<token>")
@csrf.exempt
def confirm_submit(token: str) -> BaseResponse:
    """Confirm the subscription; repeating it shows the same page and sends nothing more."""
    try:
        confirmation = read_confirmation(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    result = confirm(
        db(),
        confirmation,
        ip=_client_ip(),
        user_agent=_header_text(request.user_agent.string, 500),
    )
    db().commit()
    if result.first_time and result.activated:
        enqueue_welcome(mail_queue(), result.subscriber_id, result.activated)
    return _private(_confirmed_page(confirmation.subscriber))


def _confirmed_page(subscriber: Subscriber) -> Response:
    active = [
        (sub, newsletter)
        for sub, newsletter in subscriptions_of(db(), subscriber.id)
        if sub.status == SubscriptionStatus.ACTIVE
    ]
    body = render_template(
        "web/confirmed.html",
        subscriptions=active,
        preferences_url=links.preferences_url(settings(), subscriber.id, subscriber.token_version),
    )
    return Response(body)


# --- unsubscribe ---------------------------------------------------------------------------------


@bp.get("/unsubscribe/<token>")
def unsubscribe_page(token: str) -> BaseResponse:
    """The unsubscribe page: a button (a POST) and gentler alternatives. Changes nothing."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    return _private(Response(_render_manage(link, token)))


@bp.post("/unsubscribe/<token>")
@csrf.exempt
def unsubscribe_submit(token: str) -> BaseResponse:
    """RFC 8058 one-click (``List-Unsubscribe=One-Click``) or one of the page's buttons."""
    one_click = request.form.get(ONE_CLICK_FIELD) == ONE_CLICK_VALUE
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        if one_click:
            return Response(exc.message + "\n", exc.status, mimetype="text/plain")
        return _link_error(exc)
    subscriber = link.subscriber
    if one_click:
        # Mail providers post this without cookies and follow no redirects: answer plainly.
        unsubscribe(db(), subscriber, link.newsletter_id)
        db().commit()
        return Response("You are unsubscribed.\n", 200, mimetype="text/plain")

    form = ManageActionForm()
    if not form.validate():
        return _private(Response(_render_manage(link, token, form=form), 400))
    try:
        outcome = _manage_action(link, form)
    except SubscriptionError as exc:
        form.weeks.errors = [str(exc)]
        return _private(Response(_render_manage(link, token, form=form), 400))
    db().commit()
    names = newsletter_names(db(), outcome["ids"])
    body = render_template(
        "web/manage_done.html",
        outcome=outcome,
        names=names,
        token=token,
        preferences_url=links.preferences_url(settings(), subscriber.id, subscriber.token_version),
    )
    return _private(Response(body))


def _manage_action(link: ManageLink, form: ManageActionForm) -> dict[str, Any]:
    """Carry out the button the reader pressed on the unsubscribe page; what it changed."""
    subscriber = link.subscriber
    action = form.action.data
    if action == "unsubscribe":
        left = unsubscribe(db(), subscriber, link.newsletter_id)
        return _outcome("left", left, link.newsletter_id is None)
    if action == "all":
        return _outcome("left", unsubscribe(db(), subscriber, None), True)
    if action == "pause":
        weeks = int(form.weeks.data or 0)
        paused = pause(db(), subscriber, link.newsletter_id, weeks)
        return _outcome("paused", paused, link.newsletter_id is None, weeks=weeks)
    if action == "weekly":
        changed = switch_frequency(db(), subscriber, link.newsletter_id, Frequency.WEEKLY)
        return _outcome("weekly", changed, link.newsletter_id is None)
    scope_id = link.newsletter_id if form.scope.data != "all" else None
    return _outcome("resubscribed", resubscribe(db(), subscriber, scope_id), scope_id is None)


def _outcome(kind: str, ids: list[int], all_lists: bool, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "ids": ids, "all": all_lists, **extra}


def _render_manage(link: ManageLink, token: str, form: ManageActionForm | None = None) -> str:
    subscriber = link.subscriber
    rows = list(subscriptions_of(db(), subscriber.id))
    in_scope = [
        (sub, newsletter)
        for sub, newsletter in rows
        if link.newsletter_id is None or newsletter.id == link.newsletter_id
    ]
    active = [(s, n) for s, n in in_scope if s.status == SubscriptionStatus.ACTIVE]
    can_go_weekly = any(
        n.kind == NewsletterKind.DIGEST and s.frequency == Frequency.DAILY for s, n in active
    )
    return render_template(
        "web/unsubscribe.html",
        link=link,
        token=token,
        active=active,
        other_active=[
            (s, n)
            for s, n in rows
            if s.status == SubscriptionStatus.ACTIVE and (s, n) not in in_scope
        ],
        can_go_weekly=can_go_weekly,
        form=form,
        preferences_url=links.preferences_url(settings(), subscriber.id, subscriber.token_version),
    )


# --- preferences ---------------------------------------------------------------------------------


@bp.get("/preferences/<token>")
def preferences_page(token: str) -> BaseResponse:
    """The reader's preferences: lists, frequency, topics, name, time zone."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    form, context = _preferences_form(link)
    saved = request.args.get("saved") == "1"
    return _private(Response(_render_preferences(form, context, token, saved=saved)))


@bp.post("/preferences/<token>")
def preferences_submit(token: str) -> BaseResponse:
    """Save the preferences (CSRF-protected), then show the page again (303)."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    form, context = _preferences_form(link)
    if not form.validate():
        return _private(Response(_render_preferences(form, context, token), 400))
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
        update_preferences(
            db(),
            settings(),
            link.subscriber,
            prefs,
            ip=_client_ip(),
            user_agent=_header_text(request.user_agent.string, 500),
        )
    except SubscriptionError as exc:
        db().rollback()
        target = form.newsletter if isinstance(exc, UnknownNewsletter) else form.name
        target.errors = [str(exc)]
        return _private(Response(_render_preferences(form, context, token), 400))
    db().commit()
    response = redirect(url_for("public.preferences_page", token=token, saved="1"), code=303)
    return _private(response)


@bp.get("/preferences/<token>/export.json")
def preferences_export(token: str) -> BaseResponse:
    """ "Download my data": everything we hold about the reader, as JSON (read-only)."""
    try:
        link = read_manage_link(db(), settings(), token)
    except InvalidLink as exc:
        return _link_error(exc)
    data = export_subscriber_by_id(db(), link.subscriber.id)
    response = Response(
        json.dumps(data, indent=2, ensure_ascii=False) + "\n", mimetype="application/json"
    )
    response.headers["Content-Disposition"] = 'attachment; filename="my-newsletter-data.json"'
    return _private(response)


def _preferences_form(link: ManageLink) -> tuple[Any, dict[str, Any]]:
    subscriber = link.subscriber
    rows = list(subscriptions_of(db(), subscriber.id))
    current = {newsletter.id: sub for sub, newsletter in rows}
    lists = choosable_newsletters(db(), subscriber.id)
    digest_ids = [n.id for n in lists if n.kind == NewsletterKind.DIGEST]
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
        topics=available_topics(db()),
        timezones=available_timezones(),
        data=data,
    )
    context = {"lists": lists, "current": current, "subscriber": subscriber}
    return form, context


def _render_preferences(
    form: Any, context: dict[str, Any], token: str, *, saved: bool = False
) -> str:
    subscriber = context["subscriber"]
    return render_template(
        "web/preferences.html",
        form=form,
        saved=saved,
        token=token,
        frequency_fields=dict(form.frequency_fields()),
        export_url=url_for("public.preferences_export", token=token),
        unsubscribe_all_url=links.unsubscribe_url(
            settings(), subscriber.id, subscriber.token_version, None
        ),
        consent_text=consent_text("preferences"),
        **context,
    )


# --- helpers -------------------------------------------------------------------------------------


def _link_error(exc: InvalidLink) -> BaseResponse:
    """A clear page for a link that cannot be used, offering the way forward."""
    titles = {
        400: "This link does not work",
        404: "This link is no longer in use",
        410: "This link has expired",
    }
    body = render_template(
        "web/error.html",
        status=exc.status,
        title=titles.get(exc.status, "This link does not work"),
        message=exc.message,
        action_url=url_for("public.signup_page"),
        action_label="Sign up again" if exc.status == 410 else "Go to the signup page",
    )
    return _private(Response(body, exc.status))


def _header_text(value: str | None, limit: int) -> str:
    """A request header as ledger text: control characters dropped, length bounded."""
    if not value:
        return ""
    return "".join(ch for ch in value if not has_control_chars(ch))[:limit]


def _client_ip() -> str:
    """The client's address as the WSGI server (or a configured proxy fix) reports it."""
    return _header_text(request.remote_addr, 64)


def _private(response: BaseResponse) -> BaseResponse:
    """Pages behind a mailed token hold personal data: no caching anywhere, no indexing."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
