"""The newsroom console at /console: server-rendered pages for editors, behind a login.

``guard`` holds the blueprint and what every view wears (the session cookie, the role guards);
the views register themselves on it: ``auth`` (login, logout, password, TOTP, sessions),
``users`` (the admin's page of accounts), ``dashboard`` and ``subscribers`` (find, change,
erase, export and import readers; ``uploads`` keeps an import's file until it is applied).
Importing this package makes the blueprint complete.
"""

from newsletter.web.console import (  # noqa: F401  (add their routes)
    auth,
    dashboard,
    subscribers,
    users,
)
from newsletter.web.console.guard import bp

__all__ = ["bp"]
