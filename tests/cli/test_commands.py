"""The `newsletter` command: in-process through click for the logic, as a real subprocess for
exit codes, stderr and the long-running commands (dev, web)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from itertools import pairwise
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from newsletter.access.api_tokens import SCOPES, authenticate, token_scopes
from newsletter.cli import cli
from newsletter.ops.demo import DEMO_FEED
from newsletter.ops.devserver import recent_dates
from newsletter.store.db import dispose_engines, session_scope
from newsletter.store.models import (
    MAX_ID,
    ApiToken,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.smtp import free_port
from tests.support.worker import SECRET_KEY, DevProcess, WebProcess, base_env, run_newsletter

HUGE = str(MAX_ID + 1)  # one past the largest id an id column holds

# --- in-process --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """NEWSLETTER_* for a fresh SQLite database under tmp_path, set in this process."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    env = {
        "NEWSLETTER_ENV": "testing",
        "NEWSLETTER_DATA_DIR": str(tmp_path),
        "NEWSLETTER_SECRET_KEY": SECRET_KEY,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")  # FlaskGroup sets it; restore afterwards
    yield env
    dispose_engines()


def invoke(*args: str) -> Result:
    """Run the command group in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def database_url(env: dict[str, str]) -> str:
    """The SQLite URL the CLI uses for this environment."""
    return f"sqlite:///{Path(env['NEWSLETTER_DATA_DIR']).resolve() / 'newsletter.db'}"


def test_db_upgrade_creates_the_schema_and_current_reports_head(cli_env: dict[str, str]) -> None:
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert re.search(r"is at revision \w+\.", result.output)

    current = invoke("db", "current")
    assert current.exit_code == 0
    assert current.output.strip().endswith("(head)")


def test_db_current_on_an_empty_database_says_what_to_do(cli_env: dict[str, str]) -> None:
    Path(cli_env["NEWSLETTER_DATA_DIR"], "newsletter.db").touch()
    result = invoke("db", "current")
    assert result.exit_code == 1
    assert "run `newsletter db upgrade`" in result.output


def test_db_current_without_a_database_says_where_it_looked(cli_env: dict[str, str]) -> None:
    result = invoke("db", "current")
    assert result.exit_code == 2
    path = Path(cli_env["NEWSLETTER_DATA_DIR"], "newsletter.db").resolve()
    assert f"no database at {path}" in result.output
    assert not path.exists()


def test_newsletters_create_and_list_with_active_subscriber_counts(
    cli_env: dict[str, str],
) -> None:
    invoke("db", "upgrade")
    created = invoke(
        "newsletters", "create", "daily", "--name", "Daily digest", "--categories", "World, Asia"
    )
    assert created.exit_code == 0, created.output
    assert "Created newsletter 'daily'" in created.output
    offers = invoke("newsletters", "create", "offers", "--name", "Offers", "--kind", "campaign")
    assert offers.exit_code == 0, offers.output

    with session_scope(database_url(cli_env)) as db:
        daily = db.scalars(select(Newsletter).where(Newsletter.slug == "daily")).one()
        assert daily.categories == ["World", "Asia"]
        assert daily.kind.value == "digest" and daily.default_frequency.value == "daily"
        for i, (reader, sub) in enumerate(
            [
                (SubscriberStatus.ACTIVE, SubscriptionStatus.ACTIVE),
                (SubscriberStatus.ACTIVE, SubscriptionStatus.ACTIVE),
                (SubscriberStatus.PENDING, SubscriptionStatus.PENDING),
                (SubscriberStatus.ACTIVE, SubscriptionStatus.UNSUBSCRIBED),
            ]
        ):
            s = Subscriber(email=f"r{i}@example.com", email_key=f"r{i}@example.com", status=reader)
            s.subscriptions.append(Subscription(newsletter_id=daily.id, status=sub))
            db.add(s)

    listed = invoke("newsletters", "list")
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    assert lines[0].split() == ["slug", "name", "kind", "frequency", "active", "subscribers"]
    daily_line = next(line for line in lines if line.startswith("daily"))
    assert daily_line.split()[-1] == "2"  # pending and unsubscribed readers do not count
    assert next(line for line in lines if line.startswith("offers")).split()[-1] == "0"


@pytest.mark.parametrize(
    "slug", ["Daily", "daily digest", "-daily", "daily-", "a--b", "daily_1", "é", "x" * 65]
)
def test_newsletters_create_rejects_bad_slugs_and_stores_nothing(
    cli_env: dict[str, str], slug: str
) -> None:
    invoke("db", "upgrade")
    result = invoke("newsletters", "create", "--name", "Name", "--", slug)
    assert result.exit_code == 1
    assert "invalid slug" in result.output
    with session_scope(database_url(cli_env)) as db:
        assert db.scalar(select(func.count()).select_from(Newsletter)) == 0


def test_newsletters_create_refuses_a_duplicate_slug(cli_env: dict[str, str]) -> None:
    invoke("db", "upgrade")
    assert invoke("newsletters", "create", "daily", "--name", "Daily").exit_code == 0
    again = invoke("newsletters", "create", "daily", "--name", "Another")
    assert again.exit_code == 1
    assert "already exists" in again.output
    with session_scope(database_url(cli_env)) as db:
        names = db.scalars(select(Newsletter.name)).all()
    assert names == ["Daily"]


def test_newsletters_create_validates_kind_and_name(cli_env: dict[str, str]) -> None:
    invoke("db", "upgrade")
    bad_kind = invoke("newsletters", "create", "x", "--name", "X", "--kind", "blast")
    assert bad_kind.exit_code == 2
    assert "'blast' is not one of 'digest', 'campaign'" in bad_kind.output
    empty_name = invoke("newsletters", "create", "x", "--name", "  ")
    assert empty_name.exit_code == 1
    assert "needs a name" in empty_name.output


def test_newsletters_list_when_there_are_none_says_how_to_create_one(
    cli_env: dict[str, str],
) -> None:
    invoke("db", "upgrade")
    result = invoke("newsletters", "list")
    assert result.exit_code == 0
    assert "newsletter newsletters create" in result.output


def test_tokens_create_prints_a_working_token_once_and_revoke_disables_it(
    cli_env: dict[str, str],
) -> None:
    invoke("db", "upgrade")
    args = ["tokens", "create", "cms", "--scope", "posts:write", "--scope", "posts:read"]
    created = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert token.startswith("nlt_") and "\n" not in token
    assert "only its hash is kept" in created.stderr
    assert "with scopes: posts:write posts:read." in created.stderr

    with session_scope(database_url(cli_env)) as db:
        row = authenticate(db, token)
        assert row is not None and row.name == "cms"
        assert token_scopes(row) == ["posts:write", "posts:read"]
        token_id = row.id

    listed = invoke("tokens", "list")
    assert "scopes" in listed.output.splitlines()[0]
    [line] = [line for line in listed.output.splitlines() if " cms " in line]
    assert "active" in line and "posts:write posts:read" in line
    assert token not in listed.output

    assert invoke("tokens", "revoke", str(token_id)).exit_code == 0
    with session_scope(database_url(cli_env)) as db:
        assert authenticate(db, token) is None
    assert "revoked" in invoke("tokens", "list").output

    again = invoke("tokens", "revoke", str(token_id))
    assert again.exit_code == 1
    assert f"no active token with id {token_id}" in again.output


def test_tokens_create_needs_a_name(cli_env: dict[str, str]) -> None:
    invoke("db", "upgrade")
    result = invoke("tokens", "create", "  ", "--scope", "posts:write")
    assert result.exit_code == 1
    assert "needs a name" in result.output


def test_tokens_create_all_grants_every_scope_and_list_shows_them(
    cli_env: dict[str, str],
) -> None:
    invoke("db", "upgrade")
    created = CliRunner().invoke(cli, ["tokens", "create", "console", "--scope", "all"])
    assert created.exit_code == 0
    assert f"with scopes: {' '.join(SCOPES)}." in created.stderr
    assert " ".join(SCOPES) in invoke("tokens", "list").output


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ((), "a token needs at least one --scope"),
        (("--scope", "posts:wirte"), "'posts:wirte' is not one of"),
        (("--scope", "posts:write", "--scope", "admin"), "'admin' is not one of"),
    ],
)
def test_tokens_create_without_a_scope_or_with_an_unknown_one_is_a_usage_error(
    cli_env: dict[str, str], scopes: tuple[str, ...], message: str
) -> None:
    invoke("db", "upgrade")
    result = invoke("tokens", "create", "cms", *scopes)
    assert result.exit_code == 2
    assert message in result.output
    assert all(scope in result.output for scope in SCOPES)  # it lists what to choose from
    assert "Traceback" not in result.output
    with session_scope(database_url(cli_env)) as db:
        assert db.scalar(select(func.count()).select_from(ApiToken)) == 0


def test_tokens_create_without_a_scope_shows_an_example(cli_env: dict[str, str]) -> None:
    invoke("db", "upgrade")
    result = invoke("tokens", "create", "cms")
    assert "For example: newsletter tokens create cms --scope posts:write" in result.output
    assert "every scope above" in result.output  # `all`, explicitly


def test_subscribers_export_data_prints_json_or_says_there_is_nobody(
    cli_env: dict[str, str],
) -> None:
    invoke("db", "upgrade")
    with session_scope(database_url(cli_env)) as db:
        reader = Subscriber(
            email="Reader@Example.com",
            email_key="reader@example.com",
            name="Ada",
            status=SubscriberStatus.ACTIVE,
        )
        db.add(reader)

    found = invoke("subscribers", "export-data", "reader@example.com")
    assert found.exit_code == 0, found.output
    data = json.loads(found.output)
    assert "Reader@Example.com" in json.dumps(data)

    missing = invoke("subscribers", "export-data", "nobody@example.com")
    assert missing.exit_code == 1
    assert "no subscriber" in missing.output

    invalid = invoke("subscribers", "export-data", "not an address")
    assert invalid.exit_code == 1
    assert "not valid" in invalid.output


def test_check_reports_each_part_and_fails_when_the_database_is_not_migrated(
    cli_env: dict[str, str],
) -> None:
    before = invoke("check")
    assert before.exit_code == 1
    assert re.search(r"FAIL\s+database\s+no database at .*newsletter db upgrade", before.output)
    assert not Path(cli_env["NEWSLETTER_DATA_DIR"], "newsletter.db").exists()
    assert re.search(r"(OK|WARN)\s+mail\b", before.output)  # the other parts are still checked
    # Run in the wrong folder, a check leaves nothing behind: no data, broker or mail folder.
    assert list(Path(cli_env["NEWSLETTER_DATA_DIR"]).iterdir()) == []

    invoke("db", "upgrade")
    after = invoke("check")
    assert after.exit_code == 0, after.output
    for name in ("settings", "database", "broker", "mail"):
        assert re.search(rf"(OK|WARN)\s+{name}\b", after.output)
    assert "All checks passed." in after.output


def test_check_fails_for_an_unreachable_smtp_server(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("db", "upgrade")
    monkeypatch.setenv("NEWSLETTER_SMTP_URL", f"smtp://u:secret@127.0.0.1:{free_port()}")
    result = invoke("check")
    assert result.exit_code == 1
    assert re.search(r"FAIL\s+mail\s+smtp://u:\*\*\*@127\.0\.0\.1", result.output)
    assert "secret" not in result.output


def test_flask_cli_conventions_hold(cli_env: dict[str, str]) -> None:
    invoke("db", "upgrade")
    routes = invoke("routes")
    assert routes.exit_code == 0
    assert "/healthz" in routes.output and "/dev/mail/" in routes.output


# --- as a real process -------------------------------------------------------------------------


def run(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `newsletter ARGS` in a subprocess with NEWSLETTER_* = env only."""
    full = base_env(NEWSLETTER_DATA_DIR=str(tmp_path), **env)
    return run_newsletter(args, full, check=False, timeout=60)


@pytest.mark.parametrize(
    "args",
    [["db", "upgrade"], ["newsletters", "list"], ["web"], ["worker"], ["beat"], ["dev"], ["check"]],
)
def test_production_without_a_secret_is_one_clear_line_and_exit_2(
    tmp_path: Path, args: list[str]
) -> None:
    result = run(args, tmp_path, NEWSLETTER_ENV="production")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: NEWSLETTER_SECRET_KEY is unset")


def test_a_malformed_setting_names_the_variable(tmp_path: Path) -> None:
    result = run(["db", "upgrade"], tmp_path, NEWSLETTER_BATCH_SIZE="lots")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: NEWSLETTER_BATCH_SIZE")
    assert "Traceback" not in result.stderr


def test_a_database_that_is_not_migrated_gets_a_hint_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "newsletter.db").touch()  # a file, but no tables
    result = run(["newsletters", "list"], tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "`newsletter db upgrade`" in result.stderr


def test_an_unreachable_database_gets_a_clear_message(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/nothing"
    result = run(["tokens", "list"], tmp_path, NEWSLETTER_DATABASE_URL=url)
    assert result.returncode == 1
    assert result.stderr.startswith("Error: database problem:")
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(["sned"], tmp_path)
    assert result.returncode == 2
    assert "No such command 'sned'" in result.stderr


def test_version_and_help(tmp_path: Path) -> None:
    version = run(["--version"], tmp_path)
    assert version.returncode == 0
    assert re.match(r"newsletter \d+\.\d+", version.stdout)
    helptext = run(["--help"], tmp_path)
    for name in ("dev", "web", "worker", "beat", "db", "newsletters", "tokens", "subscribers"):
        assert re.search(rf"^\s+{name}\s", helptext.stdout, re.MULTILINE), name


def test_dev_refuses_production(tmp_path: Path) -> None:
    result = run(["dev"], tmp_path, NEWSLETTER_ENV="production", NEWSLETTER_SECRET_KEY=SECRET_KEY)
    assert result.returncode == 2
    assert "for development" in result.stderr


def test_dev_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run(["dev", "--port", str(port)], tmp_path)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_demo_feed_dates_are_moved_so_the_newest_post_is_an_hour_old() -> None:
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    moved = recent_dates(DEMO_FEED.read_text(), now)
    dates = [parsedate_to_datetime(d) for d in re.findall(r"<pubDate>([^<]+)</pubDate>", moved)]
    original = [
        parsedate_to_datetime(d)
        for d in re.findall(r"<pubDate>([^<]+)</pubDate>", DEMO_FEED.read_text())
    ]
    assert max(dates) == now - timedelta(hours=1)
    assert [a - b for a, b in pairwise(dates)] == [a - b for a, b in pairwise(original)]
    assert moved.count("<item>") == DEMO_FEED.read_text().count("<item>") == 4


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True while a process with this id exists (and is not a zombie)."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@pytest.mark.slow
def test_dev_prepares_demo_data_runs_all_parts_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path,
) -> None:
    dev = DevProcess(base_env(NEWSLETTER_DATA_DIR=str(tmp_path / "data")), tmp_path / "dev.log")
    with dev:
        dev.wait_for_log(r"dev mail viewer\s+http://127\.0\.0\.1:\d+/dev/mail/")
        dev.wait_for_log(r"beat\s+\| .*beat: Starting")
        out = dev.log_text()
        assert "Created demo newsletters: daily, weekly, offers, announcements." in out
        assert re.search(r"Demo feed: .*demo-feed\.xml: 4 new", out), out

        base = f"http://127.0.0.1:{dev.port}"
        health = requests.get(f"{base}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert requests.get(f"{base}/dev/mail/", timeout=5).status_code == 200
        # The web child's only request log is ours: no werkzeug line with the token in it.
        token = "eyJzIjoxfQ.a-token-from-a-mail"
        requests.get(f"{base}/preferences/{token}?x=secret-query", timeout=5)
        dev.wait_for_log(r"web\s+\| .*\[access\] GET /preferences/<token> \d+ ")
        assert token not in dev.log_text() and "secret-query" not in dev.log_text()
        assert '"GET /healthz' not in dev.log_text()  # werkzeug's request line is gone

        db = f"sqlite:///{tmp_path / 'data' / 'newsletter.db'}"
        with session_scope(db) as session:
            slugs = {
                n.slug: (n.kind.value, n.default_frequency.value)
                for n in session.scalars(select(Newsletter))
            }
        dispose_engines()
        assert slugs == {
            "daily": ("digest", "daily"),
            "weekly": ("digest", "weekly"),
            "offers": ("campaign", "daily"),
            "announcements": ("campaign", "daily"),
        }

        children = children_of(dev.pid)
        assert len(children) == 4  # web, the bulk worker, the fast-lane worker, beat
        os.kill(dev.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        assert dev.proc is not None and dev.proc.wait(timeout=40) == 0
        assert "Stopping web, workers and beat" in dev.log_text()
        assert not [pid for pid in children if alive(pid)]


@pytest.mark.slow
def test_dev_seeding_is_idempotent_and_a_dead_child_stops_the_rest(tmp_path: Path) -> None:
    dev = DevProcess(base_env(NEWSLETTER_DATA_DIR=str(tmp_path / "data")), tmp_path / "dev.log")
    with dev:
        assert "Created demo newsletters" in dev.log_text()
        children = children_of(dev.pid)
        commands = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children}
        worker = next(pid for pid, cmd in commands.items() if b"\0worker\0" in cmd)
        os.kill(worker, signal.SIGKILL)

        assert dev.proc is not None and dev.proc.wait(timeout=40) == 1
        assert re.search(r"worker was killed by SIGKILL; stopping the others", dev.log_text())
        assert not [pid for pid in children if alive(pid)]

        # A second run finds the demo newsletters already there; SIGTERM stops it cleanly.
        dev.start()
        assert "Created demo newsletters" not in dev.log_text()
        assert dev.stop() == 0


@pytest.mark.slow
def test_web_serves_the_app_with_gunicorn(tmp_path: Path) -> None:
    env = base_env(
        NEWSLETTER_DATA_DIR=str(tmp_path),
        NEWSLETTER_ENV="production",
        NEWSLETTER_SECRET_KEY=SECRET_KEY,
    )
    run_newsletter(["db", "upgrade"], env)
    with WebProcess(env, tmp_path / "web.log", workers=2) as web:
        response = requests.get(f"{web.url}/healthz", timeout=5)
        assert response.json() == {"status": "ok"}
        assert response.headers["Cache-Control"] == "no-store"
        ready = requests.get(f"{web.url}/readyz", timeout=5)
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
        assert requests.get(f"{web.url}/dev/mail/", timeout=5).status_code == 404  # production
        assert re.search(r"Booting worker with pid", web.log_text())
        # The access log is ours: the route pattern, never the token in a mailed link's path;
        # in production, as a JSON line.
        token = "eyJzIjoxfQ.a-token-from-a-mail"
        gone = requests.get(f"{web.url}/unsubscribe/{token}?x=secret-query", timeout=5)
        found = web.wait_for_log(r'\{[^\n]*"route": "/unsubscribe/<token>"[^\n]*\}')
        line = json.loads(found.group(0))
        assert line["logger"] == "newsletter.access" and line["method"] == "GET"
        assert line["status"] == gone.status_code
        assert line["request_id"] == gone.headers["X-Request-ID"]
        assert token not in web.log_text() and "secret-query" not in web.log_text()
        assert len(re.findall(r'"message": "GET /healthz 200', web.log_text())) >= 1
    assert not web.alive


@pytest.fixture
def migrated_env(cli_env: dict[str, str]) -> dict[str, str]:
    """cli_env with its database migrated."""
    assert invoke("db", "upgrade").exit_code == 0
    return cli_env


@pytest.mark.parametrize(
    "args",
    [
        ("issues", "show", HUGE),
        ("issues", "pause", HUGE),
        ("issues", "show", "0"),
        ("schedules", "delete", HUGE),
        ("tokens", "revoke", HUGE),
    ],
)
def test_cli_ids_out_of_range_are_usage_errors(
    migrated_env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "is not in the range" in result.output


def test_cli_feeds_remove_huge_id_is_a_message(migrated_env: dict[str, str]) -> None:
    result = invoke("feeds", "remove", HUGE)
    assert result.exit_code == 1
    assert "no feed" in result.output


def test_cli_send_at_out_of_range_is_a_message(migrated_env: dict[str, str]) -> None:
    result = invoke("issues", "send", "1", "--at", "0001-01-01T00:00:00+14:00")
    assert result.exit_code == 1
    assert "is out of range" in result.output


def test_cli_db_upgrade_to_an_unknown_revision_is_a_message(migrated_env: dict[str, str]) -> None:
    result = invoke("db", "upgrade", "--revision", "nope")
    assert result.exit_code == 1
    assert "Can't locate revision identified by 'nope'" in result.output


def test_cli_newsletter_name_with_a_line_break_is_refused(migrated_env: dict[str, str]) -> None:
    result = invoke("newsletters", "create", "daily", "--name", "Daily\r\nBcc: x@example.com")
    assert result.exit_code == 1
    assert "one line" in result.output
    assert invoke("newsletters", "list").output.startswith("No newsletters")


@pytest.mark.parametrize("queues", ["mail", "transactional,bulky", ","])
def test_worker_queues_must_be_ours(cli_env: dict[str, str], queues: str) -> None:
    invoke("db", "upgrade")
    result = CliRunner().invoke(cli, ["worker", "--queues", queues])
    assert result.exit_code == 2
    assert "choose from transactional, bulk, housekeeping" in result.output


def test_worker_help_explains_the_queues(cli_env: dict[str, str]) -> None:
    result = invoke("worker", "--help")
    assert result.exit_code == 0
    assert "transactional,bulk,housekeeping" in result.output
    assert "transactional alone" in " ".join(result.output.split())


def test_check_in_the_wrong_folder_creates_no_data_folder(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nowhere = tmp_path / "not-here"
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(nowhere))
    result = invoke("check")
    assert result.exit_code == 1 and f"no database at {nowhere}" in result.output
    assert "(created on first use)" in result.output
    assert not nowhere.exists()
