"""Templates → MIME bytes: multipart/alternative (text + HTML), CRLF line ends, list headers."""

from __future__ import annotations

import email.policy
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from typing import Any

import css_inline
from jinja2 import Environment

from newsletter.settings import Settings
from newsletter.store.db import utcnow

SMTP_POLICY = email.policy.SMTP.clone(max_line_length=998)


@dataclass(frozen=True)
class Rendered:
    """A mail's subject and both bodies, rendered but not yet MIME."""

    subject: str
    text: str
    html: str


@dataclass
class Envelope:
    """Who a message is from and to, and the extra headers it carries."""

    to: str
    from_: str
    headers: dict[str, str] = field(default_factory=dict)


def render_pair(env: Environment, name: str, context: Mapping[str, Any]) -> Rendered:
    """Render ``email/NAME.txt`` and ``.html``; the subject is the HTML's ``subject`` block."""
    html_template = env.get_template(f"email/{name}.html")
    text_template = env.get_template(f"email/{name}.txt")
    html = html_template.render(context)
    text = text_template.render(context)
    subject_block = html_template.blocks.get("subject")
    subject = ""
    if subject_block is not None:
        subject = "".join(subject_block(html_template.new_context(dict(context)))).strip()
    return Rendered(subject=" ".join(subject.split()), text=text, html=inline_css(html))


def inline_css(html: str) -> str:
    """Move <style> rules into style attributes, as mail clients ignore most stylesheets."""
    inliner = css_inline.CSSInliner(keep_style_tags=True, load_remote_stylesheets=False)
    return inliner.inline(html)


def message_id(settings: Settings) -> str:
    """A globally unique Message-ID on our sending domain."""
    return f"<{uuid.uuid4().hex}@{settings.mail_from_domain}>"


def list_id(settings: Settings, slug: str, name: str) -> str:
    """RFC 2919 List-Id for one newsletter: ``Name <slug.domain>``, the name a valid phrase."""
    phrase = _phrase(name)
    label = f"<{slug}.{settings.mail_from_domain}>"
    return f"{phrase} {label}" if phrase else label


_ATOM_TEXT = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]+")
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]+')


def _phrase(name: str) -> str:
    """An RFC 5322 phrase for a display name: atoms as they are, else a quoted string.

    Non-ASCII names become RFC 2047 encoded-words when the header is written, and an
    encoded-word may not stand inside quotes, so their punctuation is dropped instead.
    """
    name = " ".join(name.split())
    if not name or _ATOM_TEXT.fullmatch(name):
        return name
    if name.isascii():
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return " ".join(_SPECIALS.sub(" ", name).split())


def build_message(settings: Settings, envelope: Envelope, rendered: Rendered) -> bytes:
    """Assemble a multipart/alternative message and serialise it with CRLF line ends."""
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = envelope.from_
    msg["To"] = envelope.to
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id(settings)
    if settings.reply_to:
        msg["Reply-To"] = settings.reply_to
    for name, value in envelope.headers.items():
        _check_header_value(value)
        msg[name] = value
    msg.set_content(_crlf_safe(rendered.text), subtype="plain", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    return msg.as_bytes()


def _check_header_value(value: str) -> None:
    """Refuse CR/LF in header values: they would let a value inject headers."""
    if "\r" in value or "\n" in value:
        raise ValueError("header values must not contain line breaks")


def _crlf_safe(text: str) -> str:
    """Normalise line ends; the SMTP policy writes them back as CRLF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def format_recipient(email: str, name: str = "") -> str:
    """A To header value; the name is encoded by the policy, never trusted raw."""
    local, _, domain = email.rpartition("@")
    if name:
        return str(Address(display_name=name, username=local, domain=domain))
    return email


def bare_address(value: str) -> str:
    """The address part of a "Name <addr>" string, for the SMTP envelope."""
    return parseaddr(value)[1]


__all__ = [
    "Envelope",
    "Rendered",
    "bare_address",
    "build_message",
    "format_recipient",
    "formataddr",
    "inline_css",
    "list_id",
    "message_id",
    "render_pair",
]
