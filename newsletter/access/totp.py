"""TOTP second factor (RFC 6238, pyotp): enrolment with a QR code, codes accepted once.

A code is good for its 30-second step and one step either side (clocks drift). The step of
the last code accepted is stored, and only a later step is accepted after it, with one
conditional UPDATE: a code seen over someone's shoulder, or replayed by a second process at the
same moment, is refused.
"""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from newsletter.store.db import utcnow
from newsletter.store.models import User

WINDOW = 1  # steps either side of now
DIGITS = 6


class TotpError(ValueError):
    """A TOTP change that cannot be made; the message says why."""


def begin_enrolment(user: User) -> str:
    """Make a new secret for ``user`` to confirm with a code; returns it (base32)."""
    user.totp_pending_secret = pyotp.random_base32()
    return user.totp_pending_secret


def provisioning_uri(secret: str, email: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads (from the QR code or typed in)."""
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str, title: str) -> str:
    """The URI as a QR code: an inline SVG element with a title for screen readers."""
    code = segno.make(uri, error="m")
    svg: str = code.svg_inline(scale=5, border=2, title=title, dark="#1c1b19", light="#ffffff")
    return svg


def _clean(code: str) -> str:
    return "".join(code.split())


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step within the window whose code is ``code``, or None."""
    if not secret or len(code) != DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(session: Session, user: User, step: int) -> bool:
    """Record ``step`` as used unless it (or a later one) was used already; atomic."""
    done = session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    if not done.rowcount:  # type: ignore[attr-defined]
        return False
    user.totp_last_step = step
    return True


def verify_code(session: Session, user: User, code: str, *, now: datetime | None = None) -> bool:
    """True once per step for the right code of ``user``'s confirmed secret."""
    step = _matching_step(user.totp_secret, _clean(code), now or utcnow())
    return step is not None and _claim_step(session, user, step)


def confirm_enrolment(
    session: Session, user: User, code: str, *, now: datetime | None = None
) -> bool:
    """Turn the pending secret on when ``code`` comes from it; False (nothing changed) if not."""
    step = _matching_step(user.totp_pending_secret, _clean(code), now or utcnow())
    if step is None:
        return False
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = ""
    user.totp_last_step = None
    session.flush()
    return _claim_step(session, user, step)


def disable_totp(user: User) -> None:
    """Forget ``user``'s secret, unless an admin requires a second factor of them."""
    if user.totp_required:
        raise TotpError("an admin requires a second factor for this account: it stays on")
    user.totp_secret = ""
    user.totp_pending_secret = ""
    user.totp_last_step = None
