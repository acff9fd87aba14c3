"""The Flask extensions every blueprint shares: CSRF protection and the rate limiter.

They live here, not in the app factory, so a blueprint can use them without importing the
factory that imports it (the factory only calls ``init_app``). The limiter keeps its counts in
Redis when NEWSLETTER_REDIS_URL is set, so all web processes share them.
"""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
