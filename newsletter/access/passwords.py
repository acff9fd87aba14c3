"""Console passwords: argon2id through argon2-cffi, rehashed when the parameters change.

Verifying a password for an address that has no account still costs one argon2 verification
(:func:`dummy_verify`), so the time a login takes does not tell which accounts exist.
"""

from __future__ import annotations

import secrets
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

# argon2-cffi's defaults are RFC 9106's low-memory profile (argon2id, 64 MiB, 3 passes): when a
# later version raises them, a stored hash is upgraded at its owner's next login.
HASHER = PasswordHasher()
MIN_LENGTH = 12
MAX_LENGTH = 1024  # argon2 takes any length; this bounds the work one request can ask for


class PasswordError(ValueError):
    """A new password that does not meet the rules; the message says which."""


def hash_password(password: str, hasher: PasswordHasher = HASHER) -> str:
    """The argon2id hash of ``password`` (PHC string, salt and parameters included)."""
    return hasher.hash(password)


def verify_password(stored: str, password: str, hasher: PasswordHasher = HASHER) -> bool:
    """True when ``password`` matches the ``stored`` hash; a malformed hash never matches."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str, hasher: PasswordHasher = HASHER) -> bool:
    """True when ``stored`` was made with other parameters than ``hasher`` uses now."""
    try:
        return hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@cache
def _dummy_hash() -> str:
    # Made once per process with the current parameters: a dummy check costs what a real one does.
    return HASHER.hash(secrets.token_urlsafe(16))


def dummy_verify(password: str) -> None:
    """Spend one verification for a login with no account behind it (the result is ignored)."""
    verify_password(_dummy_hash(), password)


def check_new_password(password: str, *, email: str = "") -> str:
    """``password`` when it may become a console password, else PasswordError saying why."""
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"A password needs at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"A password may have at most {MAX_LENGTH} characters.")
    if not password.strip():
        raise PasswordError("A password cannot be only spaces.")
    if email and password.strip().lower() == email.strip().lower():
        raise PasswordError("A password cannot be the account's email address.")
    return password


def one_time_password() -> str:
    """A random password to hand out once (about 96 bits), to be replaced at the first login."""
    return secrets.token_urlsafe(12)
