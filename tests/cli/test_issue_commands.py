"""`newsletter digest|issues|campaigns|schedules` in-process (click), on SQLite and aiosmtpd.

The commands enqueue on Celery; here that queue runs the tasks inline as soon as they are
enqueued, so `--wait` sees the send finish. The real worker is exercised by
tests/integration/test_dispatch.py (including `digest send --wait` as a subprocess).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

import newsletter.app
from newsletter.cli import cli
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, session_scope
from newsletter.store.models import Delivery, Issue, NewsletterKind, Schedule
from tests.support import dispatching as seed
from tests.support.smtp import SMTPSink
from tests.support.worker import SECRET_KEY


@pytest.fixture
def cli_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, smtp_sink: SMTPSink
) -> Iterator[dict[str, str]]:
    """NEWSLETTER_* for a fresh SQLite database, mail to the sink, tasks run inline."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    env = {
        "NEWSLETTER_ENV": "testing",
        "NEWSLETTER_DATA_DIR": str(tmp_path),
        "NEWSLETTER_SECRET_KEY": SECRET_KEY,
        "NEWSLETTER_SMTP_URL": smtp_sink.url,
        "NEWSLETTER_BATCH_SIZE": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")
    # Every command builds its own app: give each the inline queue instead of Celery's.
    monkeypatch.setattr(
        newsletter.app, "CeleryQueue", lambda: seed.InlineQueue(Settings.from_env(), eager=True)
    )
    assert invoke("db", "upgrade").exit_code == 0
    yield env
    close_transports()
    dispose_engines()


def invoke(*args: str) -> Result:
    """Run the command group in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def database_url(env: dict[str, str]) -> str:
    """The SQLite URL the CLI uses."""
    return f"sqlite:///{Path(env['NEWSLETTER_DATA_DIR']).resolve() / 'newsletter.db'}"


@pytest.fixture
def readers(cli_env: dict[str, str]) -> dict[str, str]:
    """A digest list with posts and three readers, and a campaign list."""
    with session_scope(database_url(cli_env)) as db:
        daily = seed.newsletter(db, "daily")
        offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
        seed.posts(db, 3)
        for i in range(3):
            seed.reader(db, f"r{i}@example.com", [daily, offers])
    return cli_env


def test_digest_preview_and_link(readers: dict[str, str]) -> None:
    shown = invoke("digest", "preview", "--newsletter", "daily")
    assert shown.exit_code == 0, shown.output
    assert shown.output.startswith("Subject: ") and "Story 2" in shown.output
    link = invoke("digest", "preview", "--newsletter", "daily", "--link")
    assert re.fullmatch(r"http://127\.0\.0\.1:5000/preview/\S+\n", link.output)
    missing = invoke("digest", "preview", "--newsletter", "nope")
    assert missing.exit_code == 1 and "There is no newsletter 'nope'" in missing.output
    with session_scope(database_url(readers)) as db:
        assert db.scalar(select(func.count()).select_from(Issue)) == 0


def test_digest_send_wait_prints_progress_until_sent(
    readers: dict[str, str], smtp_sink: SMTPSink
) -> None:
    result = invoke("digest", "send", "--newsletter", "daily", "--wait")
    assert result.exit_code == 0, result.output
    created = re.match(r"Issue (\d+) created: '.+' \(\d+ posts?\)\n", result.output)
    assert created, result.output
    issue_id = int(created.group(1))
    assert re.search(rf"issue {issue_id}: sent, 3/3 sent, 0 failed, 0 skipped", result.output)
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == [
        f"r{i}@example.com" for i in range(3)
    ]
    # Nothing new since: the next one is recorded as skipped and says so.
    again = invoke("digest", "send", "--newsletter", "daily")
    assert again.exit_code == 0 and "Nothing to send: nothing new" in again.output
    shown = invoke("issues", "show", str(issue_id))
    assert "status:     sent" in shown.output and "3/3 sent" in shown.output
    resumed = invoke("issues", "resume", str(issue_id))
    assert resumed.exit_code == 1
    assert f"Issue {issue_id} is sent; only paused or failed issues can be resumed." in (
        resumed.output
    )


def test_digest_send_wait_exits_non_zero_when_every_mail_fails(
    readers: dict[str, str], smtp_sink: SMTPSink
) -> None:
    smtp_sink.handler.fail_all_with = "554 5.7.1 rejected by policy"
    result = invoke("digest", "send", "--newsletter", "daily", "--wait")
    assert result.exit_code == 1
    assert "failed: every delivery failed" in result.output


def test_a_send_the_deliverability_guard_paused_says_why_and_how_many(
    readers: dict[str, str], smtp_sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEWSLETTER_GUARD_BOUNCE_RATE", "0.3")
    monkeypatch.setenv("NEWSLETTER_GUARD_MIN_SAMPLE", "3")
    smtp_sink.handler.reply_for["r1@example.com"] = "550 5.1.1 no such user"
    result = invoke("digest", "send", "--newsletter", "daily", "--wait")
    assert result.exit_code == 1
    reason = (
        "auto-paused: 1 of the first 2 mails hard-bounced: more than the 30% limit "
        "(NEWSLETTER_GUARD_BOUNCE_RATE) allows in the first 3"
    )
    assert f"is paused ({reason}" in result.output
    created = re.match(r"Issue (\d+) created", result.output)
    assert created, result.output
    issue_id = created.group(1)
    shown = invoke("issues", "show", issue_id).output
    assert f"reason:     {reason}" in shown
    assert f"issue {issue_id}: paused, 1/3 sent, 1 failed, 0 skipped, 1 hard-bounced" in shown


def test_digest_test_sends_a_marked_copy_and_stores_nothing(
    readers: dict[str, str], smtp_sink: SMTPSink
) -> None:
    result = invoke("digest", "test", "--newsletter", "daily", "--to", "editor@example.com")
    assert result.exit_code == 0, result.output
    assert "editor@example.com: sent" in result.output
    assert [m.rcpt_tos for m in smtp_sink.messages] == [["editor@example.com"]]
    assert smtp_sink.messages[0].message["Subject"].startswith("[TEST] ")
    with session_scope(database_url(readers)) as db:
        assert db.scalar(select(func.count()).select_from(Issue)) == 0
        assert db.scalar(select(func.count()).select_from(Delivery)) == 0
    bad = invoke("digest", "test", "--newsletter", "daily", "--to", "not-an-address")
    assert bad.exit_code == 1 and "not valid" in bad.output


def test_campaign_lifecycle(readers: dict[str, str], tmp_path: Path, smtp_sink: SMTPSink) -> None:
    html = tmp_path / "offer.html"
    html.write_text("<h1>Offer</h1><p>Two for one, this week only.</p>", encoding="utf-8")
    created = invoke(
        "campaigns",
        "create",
        "--newsletter",
        "offers",
        "--subject",
        "Two for one",
        "--html",
        str(html),
    )
    assert created.exit_code == 0, created.output
    assert created.output.startswith("Issue ") and "created: 'Two for one', a draft" in (
        created.output
    )
    issue_id = created.output.split()[1]
    listed = invoke("issues", "list")
    assert re.search(rf"^{issue_id}\s+offers\s+campaign\s+draft\s+Two for one", listed.output, re.M)

    paused = invoke("issues", "pause", issue_id)
    assert paused.exit_code == 1
    assert f"Issue {issue_id} is draft; only sending issues can be paused." in paused.output
    tested = invoke("issues", "test", issue_id, "--to", "desk@example.com")
    assert tested.exit_code == 0 and "desk@example.com: sent" in tested.output
    sent = invoke("issues", "send", issue_id, "--wait")
    assert sent.exit_code == 0, sent.output
    assert "sent, 3/3 sent" in sent.output
    assert len(smtp_sink.messages) == 4
    missing = invoke(
        "campaigns",
        "create",
        "--newsletter",
        "offers",
        "--subject",
        "x",
        "--html",
        str(tmp_path / "nope.html"),
    )
    assert missing.exit_code != 0


def test_schedules_commands(readers: dict[str, str]) -> None:
    created = invoke(
        "schedules",
        "create",
        "--newsletter",
        "daily",
        "--cron",
        "0 8 * * *",
        "--timezone",
        "Europe/Paris",
        "--prepare-minutes",
        "60",
    )
    assert created.exit_code == 0, created.output
    made = re.match(
        r"Schedule (\d+) created: 0 8 \* \* \* \(Europe/Paris\), next run 20", created.output
    )
    assert made, created.output
    sid = made.group(1)
    listed = invoke("schedules", "list")
    assert re.search(rf"^{sid}\s+daily\s+0 8 \* \* \*\s+Europe/Paris", listed.output, re.M)
    assert "prepare 60 min" in listed.output
    assert invoke("schedules", "disable", sid).output.strip() == f"Schedule {sid} disabled."
    assert "(disabled)" in invoke("schedules", "list").output
    assert invoke("schedules", "enable", sid).exit_code == 0
    bad = invoke("schedules", "create", "--newsletter", "daily", "--cron", "8am")
    assert bad.exit_code == 1 and "is not a cron expression" in bad.output
    hour = invoke("schedules", "create", "--newsletter", "daily", "--cron", "0 25 * * *")
    assert hour.exit_code == 1 and "the hour field '25' is wrong: hours run 0-23" in hour.output
    local = invoke(
        "schedules", "create", "--newsletter", "daily", "--cron", "0 8 * * *", "--reader-local-time"
    )
    assert local.exit_code == 0, local.output
    span = re.search(
        r"next run (\S+ \S+) to (\S+ \S+) UTC \(each reader's local hour", local.output
    )
    assert span, local.output
    first, last = (datetime.fromisoformat(f"{value}+00:00") for value in span.groups())
    assert last - first == timedelta(hours=26) and first.hour == 18  # 08:00 at UTC+14
    zone = invoke(
        "schedules", "create", "--newsletter", "daily", "--cron", "0 8 * * *", "--timezone", "Paris"
    )
    assert zone.exit_code == 1 and "Unknown time zone 'Paris'" in zone.output
    assert invoke("schedules", "delete", sid).exit_code == 0
    gone = invoke("schedules", "delete", sid)
    assert gone.exit_code == 1 and f"There is no schedule {sid}." in gone.output
    assert invoke("schedules", "delete", local.output.split()[1]).exit_code == 0
    with session_scope(database_url(readers)) as db:
        assert db.scalar(select(func.count()).select_from(Schedule)) == 0


def test_create_commands_print_only_the_id_or_json_for_scripts(readers: dict[str, str]) -> None:
    quiet = invoke("schedules", "create", "--newsletter", "daily", "--cron", "0 9 * * *", "-q")
    assert quiet.exit_code == 0, quiet.output
    assert re.fullmatch(r"\d+\n", quiet.output)
    as_json = invoke(
        "schedules", "create", "--newsletter", "daily", "--cron", "0 10 * * *", "--json"
    )
    schedule = json.loads(as_json.output)["schedule"]
    assert schedule["cron"] == "0 10 * * *" and schedule["id"] == int(quiet.output) + 1
    assert schedule["next_runs"] and schedule["next_runs"][0].endswith("+00:00")
    sent = invoke("digest", "send", "--newsletter", "daily", "--wait", "--quiet")
    assert sent.exit_code == 0, sent.output
    assert re.fullmatch(r"\d+\n", sent.output)  # no progress lines either
    again = invoke("digest", "send", "--newsletter", "daily", "--json")
    issue = json.loads(again.output)["issue"]
    assert issue["status"] == "skipped" and issue["id"] == int(sent.output) + 1
    both = invoke(
        "schedules", "create", "--newsletter", "daily", "--cron", "0 11 * * *", "-q", "--json"
    )
    assert both.exit_code == 2 and "either --quiet or --json" in both.output
    with session_scope(database_url(readers)) as db:
        crons = set(db.scalars(select(Schedule.cron)))
    assert "0 11 * * *" not in crons  # refused before anything was created
