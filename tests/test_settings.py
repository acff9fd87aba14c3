"""Settings from NEWSLETTER_* variables: embedded defaults, parsing, and refusals that say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.settings import DEFAULT_SECRET_KEY, Settings, SettingsError, redact_url

GOOD_SECRET = "s" * 40


def test_unset_means_embedded_defaults_under_the_data_dir(tmp_path: Path) -> None:
    s = Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path / "data")})
    data = (tmp_path / "data").resolve()
    assert s.env == "development"
    assert s.data_dir == data
    assert s.database_url == f"sqlite:///{data / 'newsletter.db'}"
    assert s.broker_url == "filesystem://"
    assert s.broker_is_embedded
    assert s.broker_dir == data / "broker"
    assert s.mail_capture_dir == data / "mail"


def test_relative_data_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.from_env({})
    assert s.data_dir == (tmp_path / "instance").resolve()
    assert s.data_dir.is_absolute()


def test_values_are_parsed_by_the_type_of_their_default(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "NEWSLETTER_DATA_DIR": str(tmp_path),
            "NEWSLETTER_BATCH_SIZE": " 250 ",
            "NEWSLETTER_SMTP_TIMEOUT": "2.5",
            "NEWSLETTER_FEEDS": "https://a.example/feed, ,https://b.example/rss ",
            "NEWSLETTER_SITE_NAME": "  The Evening Post  ",
            "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://u@db/newsletter",
            "NEWSLETTER_BROKER_URL": "redis://redis:6379/0",
            "NEWSLETTER_SMTP_URL": "smtp://mail:1025",
            "UNRELATED": "ignored",
        }
    )
    assert s.batch_size == 250
    assert s.smtp_timeout == 2.5
    assert s.feeds == ("https://a.example/feed", "https://b.example/rss")
    assert s.site_name == "The Evening Post"
    assert s.database_url == "postgresql+psycopg://u@db/newsletter"
    assert not s.broker_is_embedded
    assert s.mail_capture_dir is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("NEWSLETTER_BATCH_SIZE", "many"), ("NEWSLETTER_SMTP_TIMEOUT", "soon")],
)
def test_a_malformed_value_names_its_variable(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}: "):
        Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path), name: value})


def test_unknown_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_ENV must be one of"):
        Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_ENV": "prod"})


@pytest.mark.parametrize("secret", [None, DEFAULT_SECRET_KEY, ""])
def test_production_refuses_the_default_or_missing_secret(
    tmp_path: Path, secret: str | None
) -> None:
    env = {"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_ENV": "production"}
    if secret is not None:
        env["NEWSLETTER_SECRET_KEY"] = secret
    with pytest.raises(SettingsError, match=r"NEWSLETTER_SECRET_KEY .*secrets\.token_urlsafe"):
        Settings.from_env(env)


def test_production_refuses_a_short_secret_and_accepts_a_long_one(tmp_path: Path) -> None:
    env = {"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_ENV": "production"}
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings.from_env({**env, "NEWSLETTER_SECRET_KEY": "short-but-not-default"})
    s = Settings.from_env({**env, "NEWSLETTER_SECRET_KEY": GOOD_SECRET})
    assert s.is_production


def test_development_accepts_the_default_secret(tmp_path: Path) -> None:
    assert Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path)}).secret_key == (
        DEFAULT_SECRET_KEY
    )


@pytest.mark.parametrize("url", ["http://mail.example.com", "sendmail:///usr/sbin/sendmail"])
def test_unsupported_mail_transports_are_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_SMTP_URL must start with smtp://"):
        Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_SMTP_URL": url})


def test_batch_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="NEWSLETTER_BATCH_SIZE must be at least 1"):
        Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_BATCH_SIZE": "0"})


def test_capture_url_with_an_explicit_folder(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    s = Settings.from_env(
        {"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_SMTP_URL": f"capture://{folder}"}
    )
    assert s.mail_capture_dir == folder


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("smtp://user:hunter2@mail.example.com:587?starttls=true") == (
        "smtp://user:***@mail.example.com:587?starttls=true"
    )
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url("redis://:hunter2@redis:6379/0") == "redis://:***@redis:6379/0"
    assert redact_url("smtp://user@mail.example.com") == "smtp://user@mail.example.com"


@pytest.mark.parametrize("password", ["pa/ss", "pa#ss", "pa?ss", "p@ss", "a/b?c#d@e", "::"])
def test_redact_url_hides_a_password_with_url_characters_typed_as_they_are(
    password: str,
) -> None:
    url = f"postgresql+psycopg://news:{password}@db.example.com:5432/newsletter"
    shown = redact_url(url)
    assert shown == "postgresql+psycopg://news:***@db.example.com:5432/newsletter"
    assert password not in shown


def test_addresses_derived_from_the_sender() -> None:
    s = Settings(mail_from="The Evening Post <news@post.example.org>")
    assert s.mail_from_domain == "post.example.org"
    assert s.unsubscribe_address == "unsubscribe@post.example.org"
    assert Settings(unsubscribe_mailto="leave@post.example.org").unsubscribe_address == (
        "leave@post.example.org"
    )


def test_an_unusable_data_directory_is_one_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SettingsError, match=r"NEWSLETTER_DATA_DIR=.*cannot be created"):
        Settings.from_env({"NEWSLETTER_DATA_DIR": str(blocker / "data")})
    # With every part configured, nothing lives in the data directory, so nothing is created.
    configured = Settings.from_env(
        {
            "NEWSLETTER_DATA_DIR": str(blocker / "data"),
            "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://db/newsletter",
            "NEWSLETTER_BROKER_URL": "redis://127.0.0.1:6379/0",
            "NEWSLETTER_SMTP_URL": "smtp://127.0.0.1:25",
        }
    )
    assert configured.database_url.startswith("postgresql")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BATCH_SIZE", "abc", "NEWSLETTER_BATCH_SIZE: expected a whole number, got 'abc'"),
        ("SMTP_TIMEOUT", "nan", "NEWSLETTER_SMTP_TIMEOUT: expected a number"),
        ("DATABASE_URL", "bogus", "NEWSLETTER_DATABASE_URL is not a database URL"),
        ("REDIS_URL", "localhost:6379", "NEWSLETTER_REDIS_URL must start with redis://"),
        ("SMTP_URL", "smtp://relay:abc", "NEWSLETTER_SMTP_URL has a port"),
        ("BASE_URL", "newsletter.example.com", "NEWSLETTER_BASE_URL must be an http"),
        ("SIGNUP_RATE_LIMIT", "lots", "NEWSLETTER_SIGNUP_RATE_LIMIT must be limits"),
        ("ADDRESS_RATE_LIMIT", "5 an hour", "NEWSLETTER_ADDRESS_RATE_LIMIT must be limits"),
        ("MAIL_FROM", "newsletter", "NEWSLETTER_MAIL_FROM must be an address"),
        ("LOGO_URL", "logo.png", "NEWSLETTER_LOGO_URL must be an http:// or https:// address"),
        ("LOGO_WIDTH", "0", "NEWSLETTER_LOGO_WIDTH must be 1 to 600"),
        ("LOGO_HEIGHT", "900", "NEWSLETTER_LOGO_HEIGHT 0 to 600"),
        ("GUARD_BOUNCE_RATE", "5", "NEWSLETTER_GUARD_BOUNCE_RATE must be a share from 0"),
        ("GUARD_COMPLAINT_RATE", "-0.1", "NEWSLETTER_GUARD_COMPLAINT_RATE must be a share"),
        ("GUARD_MIN_SAMPLE", "-1", "NEWSLETTER_GUARD_MIN_SAMPLE must be 0 or more"),
    ],
)
def test_malformed_settings_are_refused_in_one_clear_line(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    environ = {"NEWSLETTER_DATA_DIR": str(tmp_path), f"NEWSLETTER_{variable}": value}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_readme_examples_of_settings_are_accepted(tmp_path: Path) -> None:
    environ = {
        "NEWSLETTER_DATA_DIR": str(tmp_path),
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://newsletter:pw@db/newsletter",
        "NEWSLETTER_REDIS_URL": "redis://redis:6379/1",
        "NEWSLETTER_SMTP_URL": "smtp://user:pass@smtp.example.com:587?starttls=true",
        "NEWSLETTER_BASE_URL": "https://newsletter.example.com",
        "NEWSLETTER_MAIL_FROM": "The Daily Brief <news@example.com>",
        "NEWSLETTER_SIGNUP_RATE_LIMIT": "20/minute;200/hour",
        "NEWSLETTER_LOGO_URL": "https://news.example.com/logo.png",
        "NEWSLETTER_LOGO_WIDTH": "200",
        "NEWSLETTER_LOGO_HEIGHT": "48",
    }
    settings = Settings.from_env(environ)
    assert settings.redis_url == "redis://redis:6379/1"
    assert (settings.logo_url, settings.logo_width, settings.logo_height) == (
        "https://news.example.com/logo.png",
        200,
        48,
    )


@pytest.mark.parametrize(
    ("postal", "street"),
    [
        ("The Daily Brief, 1 Example Street, New York", "1 Example Street, New York"),
        ("the daily brief · 1 Example Street", "1 Example Street"),
        ("1 Example Street, New York", "1 Example Street, New York"),
        ("The Daily Briefing Company, 2 Road", "The Daily Briefing Company, 2 Road"),
        ("The Daily Brief", ""),
    ],
)
def test_footers_print_the_site_name_once(postal: str, street: str) -> None:
    settings = Settings(site_name="The Daily Brief", postal_address=postal)
    assert settings.street_address == street


def test_the_signup_trust_settings_default_and_parse(tmp_path: Path) -> None:
    default = Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path)})
    assert default.inbox_strip_plus_tags is True
    assert default.signup_challenge is False and default.signup_challenge_max_number == 50_000
    s = Settings.from_env(
        {
            "NEWSLETTER_DATA_DIR": str(tmp_path),
            "NEWSLETTER_INBOX_STRIP_PLUS_TAGS": "false",
            "NEWSLETTER_SIGNUP_CHALLENGE": "yes",
            "NEWSLETTER_SIGNUP_CHALLENGE_MAX_NUMBER": "200000",
        }
    )
    assert s.inbox_strip_plus_tags is False
    assert s.signup_challenge is True and s.signup_challenge_max_number == 200_000
    with pytest.raises(SettingsError, match="NEWSLETTER_SIGNUP_CHALLENGE_MAX_NUMBER"):
        Settings.from_env(
            {"NEWSLETTER_DATA_DIR": str(tmp_path), "NEWSLETTER_SIGNUP_CHALLENGE_MAX_NUMBER": "0"}
        )


def test_the_deliverability_guard_defaults_and_turns_off_with_zero(tmp_path: Path) -> None:
    default = Settings.from_env({"NEWSLETTER_DATA_DIR": str(tmp_path)})
    assert (default.guard_bounce_rate, default.guard_complaint_rate) == (0.05, 0.003)
    assert default.guard_min_sample == 1000
    off = Settings.from_env(
        {
            "NEWSLETTER_DATA_DIR": str(tmp_path),
            "NEWSLETTER_GUARD_BOUNCE_RATE": "0",
            "NEWSLETTER_GUARD_COMPLAINT_RATE": "0",
        }
    )
    assert (off.guard_bounce_rate, off.guard_complaint_rate) == (0.0, 0.0)


def test_logs_are_json_in_production_and_text_elsewhere_unless_set(tmp_path: Path) -> None:
    base = {"NEWSLETTER_DATA_DIR": str(tmp_path)}
    production = {**base, "NEWSLETTER_ENV": "production", "NEWSLETTER_SECRET_KEY": GOOD_SECRET}
    assert Settings.from_env(base).log_format == "text"
    assert Settings.from_env({**base, "NEWSLETTER_ENV": "testing"}).log_format == "text"
    assert Settings.from_env(production).log_format == "json"
    assert Settings.from_env({**production, "NEWSLETTER_LOG_FORMAT": "text"}).log_format == "text"
    assert Settings.from_env({**base, "NEWSLETTER_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match="NEWSLETTER_LOG_FORMAT must be text or json"):
        Settings.from_env({**base, "NEWSLETTER_LOG_FORMAT": "yaml"})


def test_the_worker_metrics_port_is_off_or_a_port(tmp_path: Path) -> None:
    base = {"NEWSLETTER_DATA_DIR": str(tmp_path)}
    assert Settings.from_env(base).worker_metrics_port == 0
    chosen = Settings.from_env({**base, "NEWSLETTER_WORKER_METRICS_PORT": "9101"})
    assert chosen.worker_metrics_port == 9101
    with pytest.raises(SettingsError, match="NEWSLETTER_WORKER_METRICS_PORT"):
        Settings.from_env({**base, "NEWSLETTER_WORKER_METRICS_PORT": "70000"})
