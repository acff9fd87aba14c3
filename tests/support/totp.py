"""TOTP codes for tests, computed the way an authenticator app does (pyotp)."""

from __future__ import annotations

from datetime import datetime

import pyotp


def code_at(secret: str, when: datetime) -> str:
    """The six-digit code an app shows for ``secret`` at ``when``."""
    return pyotp.TOTP(secret).at(when)
