"""Templates → MIME bytes: multipart/alternative (text + HTML), CRLF line ends, list headers."""

from __future__ import annotations

import email.policy
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import css_inline
from jinja2 import Environment

from newsletter.mail.dkim import DKIMSigner
from newsletter.mail.headers import address_field, phrase, structured, unstructured
from newsletter.settings import Settings
from newsletter.store.db import utcnow

# 76: RFC 2045's limit on quoted-printable lines (longer ones cost SpamAssassin points as
# MIME_QP_LONG_LINE). Only the MIME body comes from this policy; our own code writes the headers.
SMTP_POLICY = email.policy.SMTP.clone(max_line_length=76)


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
    """RFC 2919 List-Id for one newsletter: ``Name <slug.domain>``, the name an encoded phrase."""
    label = f"<{slug}.{settings.mail_from_domain}>"
    name_phrase = phrase(name)
    return f"{name_phrase} {label}" if name_phrase else label


def build_message(settings: Settings, envelope: Envelope, rendered: Rendered) -> bytes:
    """Assemble a multipart/alternative message, serialised with CRLF line ends and, when
    NEWSLETTER_DKIM_* is set, DKIM-signed like every bulk mail.

    The header fields are written by :mod:`newsletter.mail.headers` (never by ``email.policy``,
    which would decode encoded-words in the subject); only the MIME body comes from the library.
    """
    head = [
        address_field("From", envelope.from_),
        address_field("To", envelope.to),
        unstructured("Subject", rendered.subject),
        structured("Date", format_datetime(utcnow())),
        structured("Message-ID", message_id(settings)),
    ]
    if settings.reply_to:
        head.append(address_field("Reply-To", settings.reply_to))
    head += [structured(name, value) for name, value in envelope.headers.items()]
    body = EmailMessage(policy=SMTP_POLICY)
    body.set_content(_crlf_safe(rendered.text), subtype="plain", cte="quoted-printable")
    body.add_alternative(rendered.html, subtype="html", cte="quoted-printable")
    message = b"".join(head) + body.as_bytes()
    signer = DKIMSigner.from_settings(settings)
    return message if signer is None else signer.sign(message)


def _crlf_safe(text: str) -> str:
    """Normalise line ends; the SMTP policy writes them back as CRLF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def bare_address(value: str) -> str:
    """The address part of a "Name <addr>" string, for the SMTP envelope."""
    return parseaddr(value)[1]


__all__ = [
    "Envelope",
    "Rendered",
    "bare_address",
    "build_message",
    "inline_css",
    "list_id",
    "message_id",
    "render_pair",
]
