"""Decoding a display name the way RFC 2047 says, for tests of the header encoder."""

from __future__ import annotations

from email.header import decode_header, make_header


def legacy_display_name(field: bytes) -> str:
    """The display name of one ``Name: phrase <addr>`` field, decoded as RFC 2047 section 6.2
    says: the space between two encoded-words dropped (the modern parser keeps it)."""
    unfolded = field.decode("ascii").split(":", 1)[1].replace("\r\n", "").strip()
    return str(make_header(decode_header(unfolded.rsplit(" <", 1)[0])))
