"""Typed settings, read once from ``NEWSLETTER_*`` environment variables.

Unset means the embedded default: a SQLite file, a filesystem Celery broker and mail captured to
files, all under the data directory, so a newcomer needs no server at all. The Flask app and the
Celery app are both built from the same :class:`Settings` object.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key"  # noqa: S105 - refused in production
ENVIRONMENTS = ("development", "production", "testing")
# The pre-send check's modes ("" = by environment: see Settings.presend_mode).
PRESEND_MODES = ("", "block", "warn", "off")
LOG_FORMATS = ("text", "json")


class SettingsError(RuntimeError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def _bool(value: str) -> bool:
    """Parse the usual spellings of a boolean environment variable."""
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true/false, got {value!r}")


def _number(value: str, kind: type[int] | type[float], what: str) -> int | float:
    """Parse a numeric variable; the error names what was expected, not Python's parser."""
    try:
        number = kind(value.strip())
    except ValueError:
        raise ValueError(f"expected {what}, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):  # nan, inf
        raise ValueError(f"expected {what}, got {value!r}")
    return number


def _list(value: str) -> tuple[str, ...]:
    """Parse a comma-separated list, dropping blanks."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    """Every knob of the service. Field ``foo_bar`` is read from ``NEWSLETTER_FOO_BAR``."""

    env: str = "development"
    data_dir: Path = Path("instance")
    database_url: str = ""
    broker_url: str = ""
    redis_url: str = ""
    smtp_url: str = ""
    base_url: str = "http://127.0.0.1:5000"
    secret_key: str = DEFAULT_SECRET_KEY
    mail_from: str = "The Daily Brief <newsletter@news.example.com>"
    reply_to: str = ""
    bounce_address: str = ""
    unsubscribe_mailto: str = ""
    site_name: str = "The Daily Brief"
    site_url: str = "https://news.example.com"
    postal_address: str = "The Daily Brief, 1 Example Street, New York, NY 10001, USA"
    # The masthead of every mail: the site's logo when set (an absolute http(s) URL), else its
    # name in type. The width is what the logo is shown at (px); a height of 0 keeps its shape.
    logo_url: str = ""
    logo_width: int = 180
    logo_height: int = 0
    template_dir: str = ""
    trusted_proxies: int = 0
    # Signup and consent
    confirm_expiry_days: int = 7
    consent_version: str = "2024-07-v1"
    # How long the pseudonymised proof of consent of an erased reader is kept (readers/erasure):
    # three years, the usual limitation period for claims that would need the proof.
    erased_consent_days: int = 3 * 365
    # The bounds of one subscriber CSV import (readers/importing): bytes and data rows.
    import_max_bytes: int = 20 * 1024 * 1024
    import_max_rows: int = 200_000
    allowed_redirect_hosts: tuple[str, ...] = ("news.example.com",)
    signup_rate_limit: str = "20/minute;200/hour"
    address_rate_limit: str = "5/hour"
    signup_mails_per_day: int = 3
    # The per-address limit and the daily mail cap count per inbox: ann+x@ is ann@ when true.
    inbox_strip_plus_tags: bool = True
    # A proof of work the signup forms' script solves (readers.signup_challenge); its difficulty
    # is the largest secret number: a browser tries half of them on average.
    signup_challenge: bool = False
    signup_challenge_max_number: int = 50_000
    max_body_bytes: int = 64 * 1024
    # Delivery
    smtp_pool_size: int = 2
    smtp_timeout: float = 30.0
    send_rate_per_second: float = 0.0
    send_rate_per_hour: int = 0
    # The share of those rates bulk sends leave to the reader's own mails (confirmations,
    # welcome, links), which go out at once on the transactional queue: so a send that uses its
    # whole budget never pushes the relay past its limit when a reader signs up.
    send_rate_reserve: float = 0.1
    # Readers per send_batch task: each batch costs ~10 statements and a task, so 500 makes
    # them a few percent of a mail's cost (bench/README.md). Pause/cancel is seen within a
    # second: a running batch looks for it once a second, not only between batches.
    batch_size: int = 500
    autopause_error_threshold: float = 0.2
    autopause_min_attempts: int = 50
    # The deliverability guard (newsletter/inbound/guard.py): a send pauses itself before its
    # hard-bounce or spam-complaint rate passes these (0 turns that guard off). 0.3% is the
    # complaint rate Gmail's and Yahoo's bulk-sender rules (2024) say never to reach (aim under
    # 0.1%); 5% hard bounces is where ESPs step in (Amazon SES puts an account under review at
    # 5% and may pause its sending at 10%). A rate is taken over at least guard_min_sample
    # mails, so the first bounces of a send do not stop it: the limits allow 50 bounces and 3
    # complaints in the first 1000 mails (over 200, 0.3% would be 0.6: the first complaint
    # would pause any send).
    guard_bounce_rate: float = 0.05
    guard_complaint_rate: float = 0.003
    guard_min_sample: int = 1000
    # The send engine (newsletter/issues, newsletter/delivery)
    delivery_lease_seconds: int = 300
    send_inflight_batches: int = 8
    send_retry_base_seconds: float = 5.0
    send_retry_max_seconds: float = 300.0
    send_max_attempts: int = 8
    dkim_key_file: str = ""
    dkim_selector: str = ""
    dkim_domain: str = ""
    # Where `newsletter dns` looks records up: "ip", "ip:port" or "[v6]:port", comma-separated
    # (unset: the system's resolvers).
    dns_nameservers: tuple[str, ...] = ()
    feedback_id_sender: str = "newsletter"
    # Digests and feeds
    feeds: tuple[str, ...] = ()
    feed_interval_minutes: int = 10
    # One deadline per fetch: connecting, every redirect and the whole body.
    feed_timeout_seconds: float = 10.0
    # Feeds are fetched from public addresses only, unless this is on (a feed on the LAN).
    feed_allow_private_networks: bool = False
    feed_max_bytes: int = 5 * 1024 * 1024
    feed_max_backoff_minutes: int = 360
    posts_api_max_bytes: int = 2 * 1024 * 1024
    digest_lookback_hours: int = 24
    digest_max_posts: int = 12
    beat_tick_seconds: int = 30
    # Inbound mail: bounces, complaints, mailto unsubscribes (newsletter/inbound/processing.py)
    # The pre-send check before a send starts (newsletter/issues/presend.py): "block" (a failure
    # stops the send unless overridden), "warn" (logged, the send goes on) or "off". Unset:
    # block in production, warn in development, off in testing (tests turn it on themselves).
    presend_check: str = ""
    inbound_max_bytes: int = 10 * 1024 * 1024
    # The bounce mailbox `newsletter inbound poll` reads: imaps://user:password@host/FOLDER or
    # pop3s://… (newsletter/inbound/poller.py). A secret: it holds the mailbox's password.
    inbound_mailbox_url: str = ""
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 30
    # Provider webhooks (newsletter/web/api_webhooks.py): each endpoint is off (404) until its
    # secret is set. SES: only these SNS topics are accepted (anyone can make a signed topic).
    ses_topic_arns: tuple[str, ...] = ()
    postmark_webhook_user: str = ""
    postmark_webhook_password: str = ""
    mailgun_signing_key: str = ""
    # SendGrid's Signed Event Webhook verification key, base64 DER as SendGrid shows it.
    sendgrid_public_key: str = ""
    # Operations (newsletter/ops): log lines as text or JSON (unset: JSON in production only),
    # and the port a worker serves its task-duration metrics on (0: none).
    log_format: str = ""
    worker_metrics_port: int = 0
    worker_metrics_host: str = "127.0.0.1"
    # The newsroom console (newsletter/web/console): a session ends after this many hours
    # without a request, and this many days after its login whatever happens.
    console_session_idle_hours: int = 12
    console_session_max_days: int = 7
    # This many wrong passwords or codes in a row lock an account for this many minutes.
    console_login_max_failures: int = 5
    console_lockout_minutes: int = 15
    # Login posts per IP, across accounts (429 beyond).
    console_login_rate_limit: str = "10/minute;100/hour"
    # Outbound webhooks to the site's own systems (newsletter/hooks): each POST has this long
    # to answer; a failed one is tried again after base * 4^(n-1) seconds (at most max), up to
    # max_attempts times in all. An endpoint is disabled when disable_after_failures deliveries
    # in a row failed for good, or when none of its attempts succeeded for disable_after_hours.
    webhook_timeout_seconds: float = 10.0
    webhook_retry_base_seconds: float = 30.0
    webhook_retry_max_seconds: float = 6 * 3600.0
    webhook_max_attempts: int = 8
    webhook_disable_after_failures: int = 5
    webhook_disable_after_hours: float = 24.0
    # Endpoints are public addresses only, unless this is on (a CRM on the LAN, tests).
    webhook_allow_private_networks: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``NEWSLETTER_*`` variables, filling embedded defaults."""
        return cls.read_env(environ).with_defaults()

    @classmethod
    def read_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The ``NEWSLETTER_*`` variables as settings, embedded defaults not yet filled in.

        Reading creates nothing (no data directory), so a command can first ask where the
        database would be.
        """
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"NEWSLETTER_{f.name.upper()}")
            if raw is None:
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    values[f.name] = _bool(raw)
                elif isinstance(default, int):
                    values[f.name] = _number(raw, int, "a whole number")
                elif isinstance(default, float):
                    values[f.name] = _number(raw, float, "a number")
                elif isinstance(default, tuple):
                    values[f.name] = _list(raw)
                elif isinstance(default, Path):
                    values[f.name] = Path(raw)
                else:
                    values[f.name] = raw.strip()
            except ValueError as exc:
                raise SettingsError(f"NEWSLETTER_{f.name.upper()}: {exc}") from exc
        return cls(**values)  # type: ignore[arg-type]

    def sqlite_file(self) -> Path | None:
        """The SQLite file the database URL names (the embedded default if unset), else None."""
        url = self.database_url or f"sqlite:///{self.data_dir.resolve() / 'newsletter.db'}"
        if not url.startswith("sqlite:///"):
            return None
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path).resolve()

    def with_defaults(self) -> Settings:
        """Fill the embedded defaults, validate, and create the data directory they live in."""
        result = self.filled()
        data_dir = result.data_dir
        if self._uses_embedded_defaults():
            # An embedded default lives in the data directory: say now, in one line, if it
            # cannot, rather than with a traceback from whichever part first writes there.
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SettingsError(
                    f"NEWSLETTER_DATA_DIR={data_dir} cannot be created ({exc.strerror}); "
                    "point it at a writable folder"
                ) from exc
        return result

    def filled(self) -> Settings:
        """The embedded defaults that depend on the data directory filled in, then validated.

        Creates nothing: :meth:`with_defaults` is this plus the data directory.
        """
        data_dir = self.data_dir.resolve()
        changes: dict[str, object] = {"data_dir": data_dir}
        if not self.database_url:
            changes["database_url"] = f"sqlite:///{data_dir / 'newsletter.db'}"
        if not self.broker_url:
            changes["broker_url"] = "filesystem://"
        if not self.smtp_url:
            changes["smtp_url"] = f"capture://{data_dir / 'mail'}"
        if not self.log_format:
            changes["log_format"] = "json" if self.is_production else "text"
        result = replace(self, **changes)  # type: ignore[arg-type]
        result.validate()
        return result

    def _uses_embedded_defaults(self) -> bool:
        """Does any part live in the data directory (an unset database, broker or mail URL)?"""
        return not (self.database_url and self.broker_url and self.smtp_url)

    def validate(self) -> None:
        """Refuse settings that would run insecurely or cannot work, saying why."""
        if self.env not in ENVIRONMENTS:
            raise SettingsError(
                f"NEWSLETTER_ENV must be one of {', '.join(ENVIRONMENTS)}, not {self.env!r}"
            )
        if self.is_production:
            if not self.secret_key or self.secret_key == DEFAULT_SECRET_KEY:
                raise SettingsError(
                    "NEWSLETTER_SECRET_KEY is unset or the development default; production "
                    "refuses to start without a secret of its own. Generate one with: "
                    "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
                )
            if len(self.secret_key) < 32:
                raise SettingsError("NEWSLETTER_SECRET_KEY must be at least 32 characters long")
        scheme = urlsplit(self.smtp_url).scheme
        if scheme not in {"smtp", "smtps", "capture"}:
            raise SettingsError(
                "NEWSLETTER_SMTP_URL must start with smtp://, smtps:// or capture://, "
                f"not {scheme!r}"
            )
        if self.presend_check not in PRESEND_MODES:
            raise SettingsError(
                f"NEWSLETTER_PRESEND_CHECK must be block, warn or off, not {self.presend_check!r}"
            )
        if self.batch_size < 1:
            raise SettingsError("NEWSLETTER_BATCH_SIZE must be at least 1")
        for name in ("guard_bounce_rate", "guard_complaint_rate"):
            if not 0 <= getattr(self, name) < 1:
                raise SettingsError(
                    f"NEWSLETTER_{name.upper()} must be a share from 0 (off) to below 1, "
                    "e.g. 0.05 for 5%"
                )
        if self.guard_min_sample < 0:
            raise SettingsError("NEWSLETTER_GUARD_MIN_SAMPLE must be 0 or more")
        if not 0 <= self.send_rate_reserve < 1:
            raise SettingsError("NEWSLETTER_SEND_RATE_RESERVE must be at least 0 and below 1")
        if self.logo_url and urlsplit(self.logo_url).scheme not in {"http", "https"}:
            raise SettingsError(
                f"NEWSLETTER_LOGO_URL must be an http:// or https:// address, not {self.logo_url!r}"
            )
        if not 1 <= self.logo_width <= 600 or not 0 <= self.logo_height <= 600:
            raise SettingsError(
                "NEWSLETTER_LOGO_WIDTH must be 1 to 600 and NEWSLETTER_LOGO_HEIGHT 0 to 600 (px)"
            )
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(
                f"NEWSLETTER_LOG_FORMAT must be text or json, not {self.log_format!r}"
            )
        if not 0 <= self.worker_metrics_port <= 65535:
            raise SettingsError("NEWSLETTER_WORKER_METRICS_PORT must be 0 (off) or a port 1-65535")
        if self.confirm_expiry_days < 1:
            raise SettingsError("NEWSLETTER_CONFIRM_EXPIRY_DAYS must be at least 1")
        if self.erased_consent_days < 1:
            raise SettingsError("NEWSLETTER_ERASED_CONSENT_DAYS must be at least 1")
        if self.import_max_bytes < 1 or self.import_max_rows < 1:
            raise SettingsError(
                "NEWSLETTER_IMPORT_MAX_BYTES and NEWSLETTER_IMPORT_MAX_ROWS must be at least 1"
            )
        if not 1 <= self.signup_challenge_max_number <= 10_000_000:
            raise SettingsError("NEWSLETTER_SIGNUP_CHALLENGE_MAX_NUMBER must be 1 to 10000000")
        for name in (
            "console_session_idle_hours",
            "console_session_max_days",
            "console_login_max_failures",
            "console_lockout_minutes",
        ):
            if getattr(self, name) < 1:
                raise SettingsError(f"NEWSLETTER_{name.upper()} must be at least 1")
        if self.webhook_max_attempts < 1 or self.webhook_disable_after_failures < 1:
            raise SettingsError(
                "NEWSLETTER_WEBHOOK_MAX_ATTEMPTS and NEWSLETTER_WEBHOOK_DISABLE_AFTER_FAILURES "
                "must be at least 1"
            )
        if not 0 < self.webhook_timeout_seconds <= 60 or self.webhook_retry_base_seconds < 0:
            raise SettingsError(
                "NEWSLETTER_WEBHOOK_TIMEOUT_SECONDS must be above 0 and at most 60, and "
                "NEWSLETTER_WEBHOOK_RETRY_BASE_SECONDS 0 or more"
            )
        self._validate_urls()
        self._validate_mail()

    def _validate_urls(self) -> None:
        """URLs that would otherwise fail later, deep inside a request or a worker."""
        from limits import parse_many
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(self.database_url)
        except ArgumentError:
            raise SettingsError(
                "NEWSLETTER_DATABASE_URL is not a database URL; use e.g. "
                "postgresql+psycopg://user:pass@host/db or sqlite:////path/to/file.db"
            ) from None
        if self.redis_url and urlsplit(self.redis_url).scheme not in {"redis", "rediss", "unix"}:
            raise SettingsError(
                "NEWSLETTER_REDIS_URL must start with redis://, rediss:// or unix://"
            )
        if self.smtp_url.startswith(("smtp:", "smtps:")):
            try:
                port = urlsplit(self.smtp_url).port
            except ValueError:
                port = 0
            if port == 0:
                raise SettingsError("NEWSLETTER_SMTP_URL has a port that is not a number 1-65535")
        if urlsplit(self.base_url).scheme not in {"http", "https"}:
            raise SettingsError(
                f"NEWSLETTER_BASE_URL must be an http:// or https:// address, not {self.base_url!r}"
            )
        for name in ("signup_rate_limit", "address_rate_limit", "console_login_rate_limit"):
            try:
                parse_many(getattr(self, name))
            except ValueError:
                raise SettingsError(
                    f"NEWSLETTER_{name.upper()} must be limits such as 20/minute;200/hour, "
                    f"not {getattr(self, name)!r}"
                ) from None

    def _validate_mail(self) -> None:
        """The From address every mail carries (and whose domain names Message-IDs)."""
        from email.utils import parseaddr

        if "@" not in parseaddr(self.mail_from)[1]:
            raise SettingsError(
                "NEWSLETTER_MAIL_FROM must be an address such as "
                f"'The Daily Brief <news@example.com>', not {self.mail_from!r}"
            )

    @property
    def is_production(self) -> bool:
        """True when running with production safeguards."""
        return self.env == "production"

    @property
    def broker_is_embedded(self) -> bool:
        """True when Celery uses the filesystem broker (no Redis needed)."""
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_dir(self) -> Path:
        """Folder that holds the embedded broker's queue files."""
        return self.data_dir / "broker"

    @property
    def mail_capture_dir(self) -> Path | None:
        """Folder that captured mail is written to, when the transport is ``capture://``."""
        parts = urlsplit(self.smtp_url)
        if parts.scheme != "capture":
            return None
        return (
            Path(parts.netloc + parts.path)
            if (parts.netloc or parts.path)
            else (self.data_dir / "mail")
        )

    @property
    def mail_from_domain(self) -> str:
        """Domain part of the From address, used for Message-IDs and List-Id."""
        address = self.mail_from.rsplit("<", 1)[-1].rstrip(">").strip()
        return address.rpartition("@")[2] or "localhost"

    @property
    def unsubscribe_address(self) -> str:
        """The mailto address offered in List-Unsubscribe."""
        return self.unsubscribe_mailto or f"unsubscribe@{self.mail_from_domain}"

    @property
    def bulk_rate_per_second(self) -> float:
        """The per-second rate bulk sends may use: the send rate less the reserve (0 = none)."""
        return self.send_rate_per_second * (1 - self.send_rate_reserve)

    @property
    def bulk_rate_per_hour(self) -> int:
        """The hourly cap bulk sends may use (at least 1 when a cap is set; 0 = none)."""
        if self.send_rate_per_hour <= 0:
            return 0
        return max(1, math.floor(self.send_rate_per_hour * (1 - self.send_rate_reserve)))

    @property
    def presend_mode(self) -> str:
        """block, warn or off: the setting, else by environment."""
        if self.presend_check:
            return self.presend_check
        return {"production": "block", "testing": "off"}.get(self.env, "warn")

    @property
    def street_address(self) -> str:
        """The postal address without a leading site name: footers print the name once."""
        address = self.postal_address.strip()
        name = self.site_name.strip()
        rest = address[len(name) :]
        if name and address.casefold().startswith(name.casefold()) and rest[:1] in _SEPARATORS:
            address = rest.lstrip("".join(_SEPARATORS)).strip()
        return address


# What may follow the site name at the start of a postal address ("" when it is all there is).
_SEPARATORS = ("", " ", ",", "\u00b7", "-", "\u2013", "\u2014")  # middle dot, dashes


def redact_url(url: str) -> str:
    """Hide the password of a URL so it can be logged or shown.

    Read by hand rather than with urlsplit: a password typed with an unescaped ``/``, ``#``,
    ``?`` or ``@`` ends urlsplit's netloc early, and the rest would be shown in clear. Everything
    from the ``:`` after the user to the last ``@`` is hidden (more than the password when a
    query holds an ``@``, never less).
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, host = rest.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    if not colon:
        return url
    return f"{scheme}://{user}:***@{host}"
