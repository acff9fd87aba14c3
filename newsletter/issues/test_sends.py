"""Turn a rendered mail into a test mail: "[TEST]" before the subject, signature renewed.

Works on the prebuilt bytes (the renderer's output), so a test shows exactly what readers get.
"""

from __future__ import annotations

import re
from email.policy import default

from newsletter.content.selection import Reader
from newsletter.mail.dkim import DKIMSigner
from newsletter.mail.headers import unstructured
from newsletter.settings import Settings

PREFIX = "[TEST]"
_FIELD = re.compile(rb"^([!-9;-~]+):", re.ASCII)


def _fields(head: bytes) -> list[list[bytes]]:
    """Header fields as lists of physical lines (a field plus its folded continuations)."""
    fields: list[list[bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1].append(line)
        else:
            fields.append([line])
    return fields


def _name(field: list[bytes]) -> bytes:
    match = _FIELD.match(field[0])
    return match.group(1).lower() if match else b""


def mark_as_test(settings: Settings, message: bytes) -> bytes:
    """Prefix the Subject with "[TEST]", drop an old DKIM-Signature and sign again if set up."""
    head, sep, body = message.partition(b"\r\n\r\n")
    fields = []
    for field in _fields(head):
        name = _name(field)
        if name == b"dkim-signature":
            continue
        if name == b"subject":
            field = _test_subject(field)
        fields.append(field)
    result = b"\r\n".join(b"\r\n".join(f) for f in fields) + sep + body
    return _sign(settings, result)


def _test_subject(field: list[bytes]) -> list[bytes]:
    """The Subject field with "[TEST]" before its text, written again by our own encoder.

    Our Subject holds its text in encoded-words, so decoding it gives back the literal text;
    that text (even a decoded line break, were it there) goes back through ``unstructured``.
    """
    raw = b"".join(field).split(b":", 1)[1].decode("ascii", "replace")
    old = str(default.header_factory("Subject", raw.strip()))
    return unstructured("Subject", f"{PREFIX} {old}").rstrip(b"\r\n").split(b"\r\n")


def _sign(settings: Settings, message: bytes) -> bytes:
    """DKIM-sign when configured, else return the message as it is."""
    signer = DKIMSigner.from_settings(settings)
    return message if signer is None else signer.sign(message)


def inert_reader(address: str, frequency: str | None) -> Reader:
    """A reader who follows every topic and got nothing yet, whose links belong to nobody."""
    # Subscriber 0 exists in no table: its signed links are refused as "not valid" (a one-click
    # POST still answers 200), so a test or check copy can be clicked without touching a reader.
    return Reader(
        subscriber_id=0,
        email=address,
        name="",
        token_version=0,
        timezone="UTC",
        topics=(),
        frequency=frequency,
        sent_post_ids=frozenset(),
    )
