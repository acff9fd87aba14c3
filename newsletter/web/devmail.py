"""Development-only mail viewer: every captured mail, readable as HTML and text.

Mail captured by ``capture://`` lands as ``.eml`` files named ``<ns timestamp>-<pid>-<hex>.eml``
(see :class:`newsletter.mail.transport.CaptureTransport`). Only names of exactly that shape are
ever opened, so no path can be smuggled in. The HTML part is served from its own route with a
strict Content-Security-Policy and shown in a sandboxed iframe: a mail's markup cannot run
scripts or reach this page, while its links open in a new tab.
"""

from __future__ import annotations

import email.policy
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from flask import Blueprint, Response, abort, jsonify, redirect, render_template, request, url_for
from markupsafe import Markup, escape
from werkzeug.wrappers import Response as BaseResponse

from newsletter.settings import redact_url
from newsletter.web import settings

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")

# "<20-digit ns time>-<pid>-<hex>" (older captures: "<time>-<hex>"): digits, hex and hyphens only.
MAIL_ID = re.compile(r"^[0-9]{20}(?:-[0-9a-f]{1,32}){1,3}$")
MAX_LISTED = 500
URL = re.compile(r"https?://[^\s<>\"')\]]+")
HTML_PART_CSP = "; ".join(
    [
        "default-src 'none'",
        "img-src http: https: data: cid:",
        "style-src 'unsafe-inline' http: https:",
        "font-src http: https: data:",
        "form-action 'none'",
        "frame-ancestors 'self'",
        # Also when the part is opened on its own, outside the iframe.
        "sandbox allow-popups allow-popups-to-escape-sandbox",
    ]
)


@dataclass(frozen=True)
class MailSummary:
    """One line of the list."""

    id: str
    captured_at: datetime
    to: str
    sender: str
    subject: str


def capture_dir() -> Path | None:
    """The folder captured mail is written to, or None when mail goes to a real SMTP server."""
    return settings().mail_capture_dir


def mail_ids(folder: Path) -> list[str]:
    """Ids of captured mails, newest first."""
    if not folder.is_dir():
        return []
    names = (p.stem for p in folder.glob("*.eml"))
    return sorted((n for n in names if MAIL_ID.match(n)), reverse=True)


def mail_path(mail_id: str) -> Path:
    """The file of a captured mail; 404 for a malformed id or a missing file."""
    folder = capture_dir()
    if folder is None or not MAIL_ID.match(mail_id):
        abort(404)
    path = folder / f"{mail_id}.eml"
    if not path.is_file():
        abort(404)
    return path


def captured_at(mail_id: str) -> datetime:
    """When the mail was captured: its name starts with a nanosecond timestamp."""
    return datetime.fromtimestamp(int(mail_id.split("-", 1)[0]) / 1e9, tz=UTC)


def summary(folder: Path, mail_id: str) -> MailSummary:
    """Read just the headers of one mail."""
    with (folder / f"{mail_id}.eml").open("rb") as fp:
        headers = BytesParser(policy=email.policy.default).parse(fp, headersonly=True)
    return MailSummary(
        id=mail_id,
        captured_at=captured_at(mail_id),
        to=str(headers.get("X-Envelope-To") or headers.get("To") or ""),
        sender=str(headers.get("From") or ""),
        subject=str(headers.get("Subject") or "(no subject)"),
    )


def parse(path: Path) -> EmailMessage:
    """The whole message."""
    message = BytesParser(policy=email.policy.default).parsebytes(path.read_bytes())
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, kind: str) -> str | None:
    """The text of the ``plain`` or ``html`` alternative, if the mail has one."""
    part = message.get_body(preferencelist=(kind,))
    if part is None or not isinstance(part, EmailMessage):
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def linkify(text: str) -> Markup:
    """Escape plain text and make its URLs clickable (they open in a new tab)."""
    out: list[str] = []
    last = 0
    for match in URL.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        url = escape(match.group(0))
        out.append(f'<a href="{url}" target="_blank" rel="noopener noreferrer">{url}</a>')
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))  # noqa: S704 - every piece above was escaped


def one_click_target(message: EmailMessage) -> str | None:
    """The https URL a mailbox provider would POST ``List-Unsubscribe=One-Click`` to (RFC 8058)."""
    if "List-Unsubscribe-Post" not in message:
        return None
    for candidate in re.findall(r"<([^>]+)>", str(message.get("List-Unsubscribe", ""))):
        if candidate.startswith(("https://", "http://")):
            return str(candidate)
    return None


@bp.get("/")
def index() -> str:
    """The list of captured mails, newest first."""
    folder = capture_dir()
    ids = mail_ids(folder) if folder else []
    mails = [summary(folder, i) for i in ids[:MAX_LISTED]] if folder else []
    return render_template(
        "web/devmail/index.html",
        mails=mails,
        total=len(ids),
        folder=folder,
        smtp_url=redact_url(settings().smtp_url),
        latest=ids[0] if ids else "",
    )


@bp.get("/latest")
def latest() -> Response:
    """The newest mail's id and the count, for the list's auto-refresh."""
    folder = capture_dir()
    ids = mail_ids(folder) if folder else []
    return jsonify({"latest": ids[0] if ids else "", "count": len(ids)})


@bp.get("/<mail_id>")
def show(mail_id: str) -> str:
    """One mail: its HTML in a sandboxed frame, or its text, headers or source."""
    path = mail_path(mail_id)
    message = parse(path)
    view = request.args.get("view", "html")
    if view not in {"html", "text", "headers", "source"}:
        view = "html"
    html = body(message, "html")
    text = body(message, "plain")
    if view == "html" and html is None:
        view = "text"
    return render_template(
        "web/devmail/show.html",
        mail=summary(path.parent, mail_id),
        message=message,
        view=view,
        has_html=html is not None,
        text=linkify(text) if text is not None else None,
        headers=[(name, str(value)) for name, value in message.items()],
        source=path.read_bytes().decode("utf-8", errors="replace"),
        one_click=one_click_target(message),
    )


@bp.get("/<mail_id>/html")
def html_part(mail_id: str) -> Response:
    """The HTML part alone, locked down: no scripts, no framing by others, links in new tabs."""
    html = body(parse(mail_path(mail_id)), "html")
    if html is None:
        abort(404)
    # Links must leave the sandboxed frame (the site refuses to be framed) for a new tab.
    base = '<base target="_blank">'
    head = re.search(r"<head[^>]*>", html, flags=re.IGNORECASE)
    html = html[: head.end()] + base + html[head.end() :] if head else base + html
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = HTML_PART_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/<mail_id>/source.eml")
def raw(mail_id: str) -> Response:
    """The message file as it was captured, for a mail client or a linter."""
    response = Response(mail_path(mail_id).read_bytes(), mimetype="message/rfc822")
    response.headers["Content-Disposition"] = f'attachment; filename="{mail_id}.eml"'
    return response


@bp.post("/clear")
def clear() -> BaseResponse:
    """Delete every captured mail."""
    folder = capture_dir()
    if folder is not None:
        for mail_id in mail_ids(folder):
            (folder / f"{mail_id}.eml").unlink(missing_ok=True)
    return redirect(url_for("devmail.index"), code=303)
