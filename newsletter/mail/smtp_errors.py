"""What an SMTP failure means for the reader: retry later, never retry, or fix our own setup.

The dispatch engine acts on the class of the exception, not on reply codes:

* :class:`TemporaryFailure` (4xx, connection refused/reset, timeout, disconnect): retry later.
* :class:`PermanentFailure` (5xx for this recipient or this message): never retry this mail; the
  address may be suppressed when :attr:`DeliveryError.bad_address` says the mailbox is the problem.
* :class:`TransportConfigError` (a kind of TemporaryFailure): our credentials, TLS setup or sender
  address were refused. Retrying each reader will not help and the reader is not to blame, so a send
  should pause and tell an operator; it is never a reason to mark a reader bounced.
"""

from __future__ import annotations

import re

# RFC 3463 enhanced status code at the start of a reply text, e.g. "5.1.1".
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")


class DeliveryError(Exception):
    """Sending one message failed; ``code`` is the SMTP reply code when there was one.

    ``str(exc)`` is the server's answer ("550 5.1.1 no such user") or what went wrong on the wire.
    """

    permanent = False

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code

    @property
    def enhanced_code(self) -> str | None:
        """The RFC 3463 status ("5.1.1") the server gave after its reply code, if any."""
        text = str(self)
        if self.code is not None and text.startswith(str(self.code)):
            text = text[3:].lstrip(" -")
        match = _ENHANCED.match(text)
        return ".".join(match.groups()) if match else None

    @property
    def bad_address(self) -> bool:
        """True when a permanent failure blames the mailbox itself (unknown user, bad domain).

        Policy rejections (5.7.x: spam, DMARC) and full mailboxes (5.2.x) are not the address's
        fault and should not suppress it; without an enhanced code, 550/551/553 at RCPT do.
        """
        if not self.permanent:
            return False
        enhanced = self.enhanced_code
        if enhanced is not None:
            return enhanced.startswith("5.1.")
        return self.code in {550, 551, 553}


class TemporaryFailure(DeliveryError):
    """4xx or a connection problem: the same message may succeed later."""


class PermanentFailure(DeliveryError):
    """5xx for this recipient or this message: retrying will not help."""

    permanent = True


class TransportConfigError(TemporaryFailure):
    """Our own SMTP setup was refused (AUTH, TLS, sender): pause the send, do not blame readers."""


def reply_text(code: int, text: bytes | str) -> str:
    """``"550 5.1.1 no such user"`` from a code and smtplib's (possibly multi-line) text."""
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(decoded.split())}".rstrip()


def failure_for(code: int, text: bytes | str, *, recipient_stage: bool = True) -> DeliveryError:
    """The exception for a non-success reply; ``recipient_stage`` is False for MAIL FROM.

    5xx at MAIL FROM refuses *our* sender (or demands AUTH), so it is a configuration error.
    """
    message = reply_text(code, text)
    if 500 <= code < 600:
        if recipient_stage:
            return PermanentFailure(message, code)
        return TransportConfigError(f"the SMTP server refused our sender: {message}", code)
    return TemporaryFailure(message, code)
