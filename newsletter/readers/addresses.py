"""Email addresses: validation, normalisation and the hash the suppression list is keyed on."""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

MAX_ADDRESS_LENGTH = 254  # RFC 5321 path limit minus the angle brackets


class InvalidAddress(ValueError):
    """The address is not one we can mail; the message is safe to show the reader."""


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
        raise InvalidAddress(f"That email address is not valid: {exc}") from exc
    return str(result.normalized)


def email_key(normalised: str) -> str:
    """The case-insensitive key an address is unique on."""
    return normalised.casefold()


def email_hash(normalised: str) -> str:
    """SHA-256 of the address key: what the suppression list stores instead of the address."""
    return hashlib.sha256(email_key(normalised).encode()).hexdigest()
