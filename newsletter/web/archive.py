"""An issue's public web version ("view in browser") and the editor's preview page.

Both are GET-only and change nothing. The archive link carries a signed issue id (never
expires); the preview link carries a signed newsletter and cohort and lasts an hour. The web
version is the mail as a reader without personal links would get it: no name, no preferences
or unsubscribe links, a "subscribe" link instead.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, render_template, request, url_for

from newsletter.issues.content import (
    NothingToPreview,
    app_env,
    load_content,
    preview,
    render_archive,
)
from newsletter.issues.links import read_archive_token, read_preview_token
from newsletter.readers.tokens import TokenError
from newsletter.store.models import Issue, IssueStatus
from newsletter.web import db, settings

bp = Blueprint("archive", __name__)

# Issues readers may have received; drafts, cancelled and skipped issues stay private.
PUBLIC_STATUSES = frozenset(
    {IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SENT, IssueStatus.FAILED}
)
# The site's page around the mail: our own script and styles; the mail, in a sandboxed srcdoc
# frame that inherits this policy, needs its inline styles and its images.
ARCHIVE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src https: http: data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# The preview page frames the mail with srcdoc (which inherits this policy): no scripts anywhere.
PREVIEW_CSP = (
    "script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
VIEWS = ("html", "text")


@bp.get("/archive/<token>")
def issue(token: str) -> Response:
    """The web version of an issue, as sent, for a generic reader."""
    s = settings()
    try:
        issue_id = read_archive_token(s, token)
    except TokenError:
        abort(404)
    row = db().get(Issue, issue_id)
    if row is None or IssueStatus(row.status) not in PUBLIC_STATUSES:
        abort(404)
    content = load_content(db(), s, row)
    rendered = render_archive(app_env(), s, content)
    page = render_template(
        "web/archive/issue.html",
        subject=rendered.subject,
        html=_links_in_new_tab(rendered.html),
        newsletter=content.newsletter,
        sent_at=row.finished_at or row.started_at,
        subscribe_url=url_for("public.signup_page", newsletter=content.newsletter.slug),
    )
    response = Response(page, mimetype="text/html")
    response.headers["Content-Security-Policy"] = ARCHIVE_CSP
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


@bp.get("/preview/<token>")
def preview_page(token: str) -> tuple[Response, int] | Response:
    """The editor's preview of a newsletter's next digest: subject, HTML and text parts."""
    s = settings()
    try:
        claim = read_preview_token(s, token)
    except TokenError as exc:
        if exc.expired:
            return _error(
                410,
                "Preview link expired",
                "Preview links work for an hour. Make a new one with: newsletter digest preview "
                "--newsletter SLUG --link",
            )
        abort(404)
    view = request.args.get("view", "html")
    if view not in VIEWS:
        view = "html"
    context = {
        "token": token,
        "view": view,
        "slug": claim.newsletter_slug,
        "frequency": claim.frequency,
    }
    try:
        subject, html, text = preview(db(), s, claim.newsletter_slug, claim.frequency, app_env())
    except NothingToPreview as exc:
        page = render_template("web/archive/preview.html", nothing=str(exc), **context)
        return _page(page, 200)
    except (LookupError, ValueError) as exc:
        return _error(404, "Nothing to preview", str(exc))
    page = render_template(
        "web/archive/preview.html",
        subject=subject,
        html=_links_in_new_tab(html),
        text=text,
        nothing=None,
        **context,
    )
    return _page(page, 200)


def _links_in_new_tab(html: str) -> str:
    """Open the mail's links outside the sandboxed frame."""
    return html.replace("<head>", '<head><base target="_blank">', 1)


def _page(body: str, status: int) -> tuple[Response, int]:
    """A preview page response that is never cached or indexed."""
    response = Response(body, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex"
    return response, status


def _error(status: int, title: str, message: str) -> tuple[Response, int]:
    """The site's error page with our own message."""
    body = render_template("web/error.html", status=status, title=title, message=message)
    return _page(body, status)
