"""The signup forms' proof of work (ALTCHA): a stateless challenge a browser pays some hashes for.

The server issues a random salt with an expiry, the SHA-256 of that salt and a secret number
between 0 and the difficulty, and an HMAC of that hash under a key derived from the secret key
for this purpose only. The page's script (``templates/static/signup-challenge.js``) finds the
number by brute force with ``crypto.subtle`` and posts it back, base64 JSON in the ``altcha``
field. Verifying needs nothing stored but a replay guard: the signature, the expiry and the hash
are checked from the solution alone, then the caller's guard refuses a second use of one
challenge while it is alive. A form-filling bot pays the same work for every post; a person's
browser does it while they type.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Final

import altcha

from newsletter.store.db import utcnow

CHALLENGE_PURPOSE = b"newsletter.signup-challenge.v1"
ALGORITHM: Final = "SHA-256"
# Long enough for a reader who leaves the page open a while; a solution older than this is
# refused with a fresh challenge, which the page solves again before the next press.
CHALLENGE_LIFETIME = timedelta(hours=1)
MAX_SOLUTION_LENGTH = 2000

MISSING = (
    "This form checks that it is sent by a person, which needs JavaScript. "
    "Please turn JavaScript on, reload the page and try again."
)
INVALID = "The check that this form is sent by a person failed. Please press Subscribe again."
EXPIRED = "The form was open too long. Please press Subscribe again."
REPLAYED = "This form was sent already. Please press Subscribe again."


class InvalidSolution(ValueError):
    """A missing, forged, expired or reused solution; the message is safe to show the reader."""


def challenge_key(secret_key: str) -> bytes:
    """The HMAC key of the challenges: derived, so it can sign nothing else the secret signs."""
    return hmac.new(secret_key.encode(), CHALLENGE_PURPOSE, hashlib.sha256).digest()


def issue_challenge(secret_key: str, max_number: int, now: datetime | None = None) -> str:
    """A fresh challenge as the JSON the page's script reads (algorithm, salt, hash, signature)."""
    options = altcha.ChallengeOptionsV1(
        algorithm=ALGORITHM,
        max_number=max_number,
        hmac_key=challenge_key(secret_key),
        expires=(now or utcnow()) + CHALLENGE_LIFETIME,
    )
    challenge = altcha.create_challenge_v1(options)
    return json.dumps(challenge.to_dict(), separators=(",", ":"))


def verify_solution(secret_key: str, encoded: str, first_use: Callable[[str], bool]) -> None:
    """Accept a solution or raise InvalidSolution: signed by us, unexpired, right, never used.

    ``first_use(challenge)`` marks a challenge used for :data:`CHALLENGE_LIFETIME` and says
    whether it was new (the limiter's storage: Redis when configured, memory in tests).
    """
    payload = _decode(encoded)
    key = challenge_key(secret_key)
    expected = altcha.hmac_hex(ALGORITHM, payload["challenge"].encode(), key)
    # Compared in constant time before the library's own checks, which compare with ==.
    if not hmac.compare_digest(expected.encode(), payload["signature"].encode()):
        raise InvalidSolution(INVALID)
    solution = altcha.PayloadV1(
        ALGORITHM, payload["challenge"], payload["number"], payload["salt"], payload["signature"]
    )
    ok, error = altcha.verify_solution_v1(solution, key, check_expires=True)
    if not ok:
        raise InvalidSolution(EXPIRED if error and "expired" in error else INVALID)
    if not first_use(payload["challenge"]):
        raise InvalidSolution(REPLAYED)


def _decode(encoded: str) -> dict[str, Any]:
    """The solution's fields, checked for shape; InvalidSolution if it is not one of ours."""
    encoded = encoded.strip()
    if not encoded:
        raise InvalidSolution(MISSING)
    if len(encoded) > MAX_SOLUTION_LENGTH:
        raise InvalidSolution(INVALID)
    try:
        payload = json.loads(base64.b64decode(encoded, validate=True))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidSolution(INVALID) from None
    strings = ("algorithm", "challenge", "salt", "signature")
    if (
        not isinstance(payload, dict)
        or not all(isinstance(payload.get(k), str) for k in strings)
        or type(payload.get("number")) is not int
        or payload["algorithm"] != ALGORITHM
    ):
        raise InvalidSolution(INVALID)
    return payload
