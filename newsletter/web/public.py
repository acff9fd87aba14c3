"""Reader pages: signup (page, iframe, cross-site post) and confirmation.

The pages behind the links in newsletters (unsubscribe, preferences, data) are
:mod:`newsletter.web.reader_links`.

Thin adapters over :mod:`newsletter.readers.subscriptions`: parse, validate, call the domain,
commit, enqueue mail, render. Three rules shape them:

* GET never changes anything (mail scanners prefetch every link); each state change is a POST.
* The answer to a signup is the same whatever the address's state: no enumeration. It is a 303
  (to ``next``, or to the "check your inbox" page), so a reload never posts the form again.
* The confirmation link carries a signed token; its POST needs no CSRF token (the URL is the
  secret).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, redirect, render_template, request, url_for
from limits import RateLimitItemPerSecond, parse_many
from werkzeug.exceptions import TooManyRequests
from werkzeug.wrappers import Response as BaseResponse

from newsletter.readers import links
from newsletter.readers.address_hints import suggest_address
from newsletter.readers.addresses import inbox_hash
from newsletter.readers.choices import resolve_newsletters
from newsletter.readers.confirmation import confirm, read_confirmation
from newsletter.readers.newsletters import default_signup_newsletter, public_newsletters
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
    clean_name,
    subscriptions_of,
)
from newsletter.store.db import utcnow
from newsletter.store.models import Newsletter, Subscriber, SubscriptionStatus
from newsletter.web import db, mail_queue, settings
from newsletter.web.extensions import csrf, limiter
from newsletter.web.forms import ExternalSignupForm, SignupForm, has_control_chars
from newsletter.web.pages import (
    client_ip,
    consent_text,
    content_security_policy,
    header_text,
    link_error,
    private,
    refuse_control_characters_in_query,
)

bp = Blueprint("public", __name__)


def _signup_rate() -> str:
    return settings().signup_rate_limit


# Per client IP, shared by every endpoint that accepts a signup.
signup_limit = limiter.shared_limit(_signup_rate, scope="newsletter-signup")


bp.before_request(refuse_control_characters_in_query)
bp.after_request(content_security_policy)


# --- signup --------------------------------------------------------------------------------------


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
    return _handle_signup(SignupForm(), template="web/signup.html")


@bp.get("/embed")
def embed_page() -> str:
    """The compact form meant for an iframe on the news site's pages."""
    form = ExternalSignupForm(formdata=None)
    form.source.data = header_text(request.referrer, 500)
    form.embed.data = "1"
    return _render_signup(form, preselect=_preselected(), status=200, template="web/embed.html")[0]


@bp.post("/embed")
@csrf.exempt
@signup_limit
def embed_submit() -> BaseResponse | tuple[str, int]:
    """Submit the iframe form (cross-site, so no CSRF token; see ExternalSignupForm)."""
    return _handle_signup(ExternalSignupForm(), template="web/embed.html")


@bp.post("/subscribe")
@csrf.exempt
@signup_limit
def subscribe_external() -> BaseResponse | tuple[str, int]:
    """The endpoint the news site's own plain HTML forms post to (see ExternalSignupForm).

    Answers with a 303 back to ``next`` (plus ``subscribed=1``) when its host is allowed, else
    with a 303 to our own "check your inbox" page.
    """
    return _handle_signup(ExternalSignupForm(), template="web/signup.html")


def _handle_signup(form: SignupForm, *, template: str) -> BaseResponse | tuple[str, int]:
    """Shared POST handling of the three signup endpoints."""
    next_url = request.form.get("next", "")
    if (request.form.get("website") or "").strip():
        # The honeypot was filled: a bot. Answer exactly as for a real signup, do nothing.
        return _signup_done(next_url, template)
    # Every check runs, so the form comes back once with every problem marked, not one a time.
    valid = form.validate()
    solved = _challenge_solved(form)
    newsletters = _chosen_newsletters(form)
    name = _checked_name(form)
    if not (valid and solved) or newsletters is None or name is None:
        refs = [ref for ref in form.newsletter.data or [] if ref.strip()]
        return _render_signup(form, preselect=refs, status=400, template=template)
    email = form.email.data or ""
    _check_address_limit(email)
    signup = Signup(
        email=email,
        newsletter_ids=tuple(n.id for n in newsletters),
        name=name,
        source=form.source.data or header_text(request.referrer, 500),
        ip=client_ip(),
        user_agent=header_text(request.user_agent.string, 500),
        consent_text=consent_text(),
        consent_version=settings().consent_version,
    )
    # Nothing about the address is read or written here: a worker records the signup, so this
    # request does the same queries and enqueues the same task whatever the address's state.
    mail_queue().process_signup(signup_request(signup, utcnow()))
    return _signup_done(next_url, template)


def _chosen_newsletters(form: SignupForm) -> list[Newsletter] | None:
    """The lists ticked, or the default signup list when none is; None (errors set) if unknown.

    One rule for every form: the page, the iframe and the news site's own forms alike.
    """
    if form.newsletter.errors:
        return None  # e.g. control characters: already refused, and said so
    # A blank value (an empty hidden field on the news site's form) names no list.
    refs = [ref for ref in form.newsletter.data or [] if ref.strip()]
    try:
        if not refs:
            first = default_signup_newsletter(db())
            refs = [first.slug] if first else []
        return resolve_newsletters(db(), refs)
    except SubscriptionError as exc:
        form.newsletter.errors = [str(exc)]
        return None


def _checked_name(form: SignupForm) -> str | None:
    """The cleaned display name; None (errors set) when it is refused, alike for every address."""
    if form.name.errors:
        return None
    try:
        return clean_name(form.name.data or "")
    except SubscriptionError as exc:
        form.name.errors = [str(exc)]
        return None


def _signup_done(next_url: str, template: str) -> BaseResponse:
    """The one answer every accepted signup gets, whatever the address's state: a 303.

    To ``next`` when its host is allowed, else to our "check your inbox" page, so that reloading
    the answer does not post the form again (POST/redirect/GET).
    """
    target = safe_redirect_target(next_url, settings().allowed_redirect_hosts)
    if target is None:
        embed = template == "web/embed.html"
        target = url_for("public.embed_check_inbox" if embed else "public.check_inbox")
    return redirect(target, code=303)


@bp.get("/check-inbox")
def check_inbox() -> str:
    """Where an accepted signup lands; it knows nothing of the address, so it is one page."""
    return render_template("web/check_inbox.html")


@bp.get("/embed/check-inbox")
def embed_check_inbox() -> str:
    """The iframe's landing page after a signup (framable, like every page under /embed)."""
    return render_template("web/embed_check_inbox.html")


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
    # What a signup with no list ticked joins (default_signup_newsletter), said on the form.
    default_newsletter = newsletters[0] if newsletters else None
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
        default_newsletter=default_newsletter,
        # Offered on a form sent back; a valid address with a slip was accepted, as typed.
        email_suggestion=suggest_address(form.email.data or "") if form.errors else None,
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
        return link_error(exc)
    if confirmation.consent.confirmed_at is not None:
        return private(_confirmed_page(confirmation.subscriber))
    body = render_template("web/confirm.html", newsletters=confirmation.newsletters)
    return private(Response(body))


@bp.post("/confirm/<token>")
@csrf.exempt
def confirm_submit(token: str) -> BaseResponse:
    """Confirm the subscription; repeating it shows the same page and sends nothing more."""
    try:
        confirmation = read_confirmation(db(), settings(), token)
    except InvalidLink as exc:
        return link_error(exc)
    result = confirm(
        db(),
        confirmation,
        ip=client_ip(),
        user_agent=header_text(request.user_agent.string, 500),
    )
    db().commit()
    if result.first_time and result.activated:
        enqueue_welcome(mail_queue(), result.subscriber_id, result.activated)
    return private(_confirmed_page(confirmation.subscriber))


def _confirmed_page(subscriber: Subscriber) -> Response:
    active = [
        (sub, newsletter)
        for sub, newsletter in subscriptions_of(db(), subscriber.id)
        if sub.status == SubscriptionStatus.ACTIVE
    ]
    body = render_template(
        "web/confirmed.html",
        subscriptions=active,
        preferences_url=links.preferences_url(settings(), links.subscriber_claim(subscriber)),
    )
    return Response(body)
