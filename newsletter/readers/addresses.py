"""Email addresses: validation, normalisation, the hash the suppression list is keyed on, and
the inbox key the signup limits count on."""

from __future__ import annotations

import hashlib

import idna
from email_validator import EmailNotValidError, validate_email

from newsletter.readers.address_hints import reader_message

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit minus the angle brackets
# Gmail ignores dots in the local part, and googlemail.com is the same mailbox as gmail.com.
GMAIL_DOMAINS = {"gmail.com", "googlemail.com"}


class InvalidAddress(ValueError):
    """The address is not one we can mail.

    The message is precise (for editors, the CLI and the API); ``reader_message`` says it in
    the signup form's words, short enough for the field on a phone.
    """

    def __init__(self, message: str, reader_message: str | None = None) -> None:
        super().__init__(message)
        self.reader_message = reader_message or message


def normalise(raw: str) -> str:
    """Validate an address and return its normalised form (IDN domains to Unicode, NFC).

    No DNS look-ups: deliverability checks belong to the sending pipeline, and tests must not
    need a network.
    """
    candidate = raw.strip()
    if not candidate:
        raise InvalidAddress("Please enter your email address.")
    if len(candidate) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress("That email address is too long.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in candidate):
        raise InvalidAddress("That email address contains characters that are not allowed.")
    try:
        result = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(
            f"That email address is not valid: {exc}", reader_message(exc)
        ) from exc
    return str(result.normalized)


def email_key(normalised: str) -> str:
    """The case-insensitive key an address is unique on."""
    return normalised.casefold()


def email_hash(normalised: str) -> str:
    """SHA-256 of the address key: what the suppression list stores instead of the address."""
    return hashlib.sha256(email_key(normalised).encode()).hexdigest()


def inbox_key(normalised: str, strip_plus_tags: bool) -> str:
    """The inbox an address reaches, as one string: what the signup limits and caps count on.

    Case-folded, the domain as an A-label (``xn--…``), a ``+tag`` dropped when
    ``strip_plus_tags`` (most providers deliver ``ann+x@`` to ``ann@``), and for Gmail the dots
    in the local part dropped and googlemail.com read as gmail.com. Many spellings of one inbox
    then share one cap; the address itself is still stored (and unique) as typed.
    """
    local, _, domain = normalised.rpartition("@")
    local = local.casefold()
    domain = _ascii_domain(domain.casefold())
    tagless = local.split("+", 1)[0]
    if strip_plus_tags and tagless:
        local = tagless
    if domain in GMAIL_DOMAINS:
        domain = "gmail.com"
        local = local.replace(".", "") or local
    return f"{local}@{domain}"


def inbox_hash(normalised: str, strip_plus_tags: bool) -> str:
    """SHA-256 of :func:`inbox_key`: the key of the per-inbox limits, never the address."""
    return hashlib.sha256(inbox_key(normalised, strip_plus_tags).encode()).hexdigest()


def _ascii_domain(domain: str) -> str:
    """The domain in its ASCII (A-label) form; as given when it is not a valid IDN."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except UnicodeError:  # idna.IDNAError is one
        return domain
