"""The port through which the reader's path has signups and mails handled in the background.

A submitted signup is recorded by a worker (``process_signup``), never in the request, so the
request does the same work for every address. Signup, confirmation, welcome and the mails asked
for from the preferences page go out from a worker after the request committed, so a slow mail
server never slows the page. The app factory provides the implementation
(``worker.tasks.CeleryMailQueue``); the core never imports ``worker``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class MailQueue(Protocol):
    """Where the reader's path enqueues signups and transactional mails (callers commit first)."""

    def process_signup(self, signup: Mapping[str, Any]) -> None:
        """Enqueue a submitted signup (``signup_requests.signup_request``) to be recorded."""
        ...

    def send_confirmation(self, consent_id: int) -> None:
        """Enqueue the double opt-in mail of one consent record."""
        ...

    def send_already_subscribed(self, subscriber_id: int) -> None:
        """Enqueue the "you are already subscribed" mail of a reader who signed up again."""
        ...

    def send_welcome(self, subscriber_id: int, newsletter_ids: Sequence[int]) -> None:
        """Enqueue the welcome mail for the lists a reader just confirmed."""
        ...

    def send_manage_link(self, subscriber_id: int) -> None:
        """Enqueue the mail with a reader's new preferences link ("log out all links")."""
        ...

    def send_data_link(self, subscriber_id: int) -> None:
        """Enqueue the mail with the one-hour link to what we hold about a reader."""
        ...
