"""What every reader page shares: its security headers, link errors, and request facts.

Both blueprints of the reader's path (:mod:`~newsletter.web.public` and
:mod:`~newsletter.web.reader_links`) install :func:`refuse_control_characters_in_query` and
:func:`content_security_policy`.
"""

from __future__ import annotations

from flask import Response, abort, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from newsletter.readers.subscriptions import InvalidLink
from newsletter.web import settings
from newsletter.web.forms import CONTROL_MESSAGE, has_control_chars


def refuse_control_characters_in_query() -> None:
    """A line break in any query parameter is an injection attempt: 400 before anything else."""
    for values in request.args.listvalues():
        if any(has_control_chars(v) for v in values):
            abort(400, description=CONTROL_MESSAGE)


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


def consent_text(page: str = "signup") -> str:
    """The consent wording shown beside a form and recorded, word for word, with what it covers."""
    template = "web/_consent_preferences.txt" if page == "preferences" else "web/_consent.txt"
    return " ".join(render_template(template).split())


def link_error(exc: InvalidLink) -> BaseResponse:
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
    return private(Response(body, exc.status))


def header_text(value: str | None, limit: int) -> str:
    """A request header as ledger text: control characters dropped, length bounded."""
    if not value:
        return ""
    return "".join(ch for ch in value if not has_control_chars(ch))[:limit]


def client_ip() -> str:
    """The client's address as the WSGI server (or a configured proxy fix) reports it."""
    return header_text(request.remote_addr, 64)


def client_user_agent() -> str:
    """The client's user agent as ledger text."""
    return header_text(request.user_agent.string, 500)


def private(response: BaseResponse) -> BaseResponse:
    """Pages behind a mailed token hold personal data: no caching anywhere, no indexing."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response
