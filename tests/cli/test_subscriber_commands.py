"""`newsletter subscribers`: import (both modes, the report, bad options), export, list, show,
unsubscribe, suppress, erase and export-data, in-process through click on a fresh database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from newsletter.cli import cli
from newsletter.store.db import session_scope
from newsletter.store.models import (
    ConsentRecord,
    ErasedConsent,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from tests.cli import test_commands
from tests.cli.test_commands import database_url, invoke
from tests.support.readers import row_counts

# The in-process command tests' fixture: NEWSLETTER_* for a fresh SQLite database.
cli_env = test_commands.cli_env


def ready(tmp_path: Path, env: dict[str, str], rows: int = 0) -> Path:
    """A migrated database with the 'daily' and 'offers' lists, and a CSV of ``rows`` readers."""
    assert invoke("db", "upgrade").exit_code == 0
    assert invoke("newsletters", "create", "daily", "--name", "Daily").exit_code == 0
    assert (
        invoke(
            "newsletters", "create", "offers", "--name", "Offers", "--kind", "campaign"
        ).exit_code
        == 0
    )
    path = tmp_path / "readers.csv"
    lines = ["email,name"] + [f"reader{i}@example.com,Reader {i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def count(env: dict[str, str], model: type) -> int:
    """Rows of one table."""
    with session_scope(database_url(env)) as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def test_import_consented_then_export_list_and_show(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = ready(tmp_path, cli_env, rows=1000)
    result = invoke(
        "subscribers",
        "import",
        str(path),
        "--newsletter",
        "daily",
        "--consented",
        "signup sheet, fair 2024",
    )
    assert result.exit_code == 0, result.output
    assert "1000 rows: 1000 ok" in result.output
    assert "Imported 1000 readers (1000 new) into daily." in result.output
    assert count(cli_env, ConsentRecord) == 1000
    with session_scope(database_url(cli_env)) as db:
        sources = set(db.scalars(select(ConsentRecord.source)))
    assert len(sources) == 1 and "signup sheet, fair 2024" in sources.pop()

    exported = invoke("subscribers", "export", "--newsletter", "daily", "--status", "active")
    assert exported.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(exported.output)))
    assert len(rows) == 1000 and rows[0]["email"] == "reader0@example.com"
    assert rows[0]["newsletters"] == "daily:active" and rows[0]["confirmed_at"]
    assert invoke("subscribers", "export", "--newsletter", "offers").output.strip() == (
        "email,name,status,newsletters,subscribed_at,confirmed_at"
    )
    out = tmp_path / "out.csv"
    to_file = invoke("subscribers", "export", "--status", "active", "-o", str(out))
    assert to_file.exit_code == 0 and len(out.read_text().splitlines()) == 1001

    page = invoke("subscribers", "list", "--newsletter", "daily", "--limit", "3")
    assert page.exit_code == 0 and "reader2@example.com" in page.output
    assert "1000 matching" in page.output and "More: add --after 3" in page.output
    nxt = invoke("subscribers", "list", "--newsletter", "daily", "--limit", "3", "--after", "3")
    assert "reader3@example.com" in nxt.output and "reader2@example.com" not in nxt.output
    found = invoke("subscribers", "list", "--search", "READER99")
    assert "reader999@example.com" in found.output and "11 matching" in found.output

    shown = invoke("subscribers", "show", "Reader5@example.com")
    assert shown.exit_code == 0 and "Reader 5" in shown.output and "signup sheet" in shown.output
    data = invoke("subscribers", "export-data", "reader5@example.com")
    assert data.exit_code == 0 and json.loads(data.output)["subscriber"]["name"] == "Reader 5"


def test_import_confirm_by_mail_queues_one_confirmation_each(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    path = ready(tmp_path, cli_env, rows=1000)
    result = invoke(
        "subscribers", "import", str(path), "--newsletter", "daily", "--confirm-by-mail"
    )
    assert result.exit_code == 0, result.output
    assert "1000 confirmation mails queued" in result.output
    queued = list((tmp_path / "broker").glob("*.msg"))
    assert len(queued) == 1000
    assert all(
        json.loads(p.read_text())["headers"]["task"] == "newsletter.send_confirmation"
        for p in queued
    )
    with session_scope(database_url(cli_env)) as db:
        statuses = set(db.scalars(select(Subscription.status)))
        assert statuses == {SubscriptionStatus.PENDING}
        assert set(db.scalars(select(Subscriber.status))) == {SubscriberStatus.PENDING}


def test_import_report_dry_run_and_bad_options(tmp_path: Path, cli_env: dict[str, str]) -> None:
    ready(tmp_path, cli_env)
    path = tmp_path / "mixed.csv"
    path.write_text("email,colour\nok@example.com,red\nnope,\nOK@example.com,\n", encoding="utf-8")
    with session_scope(database_url(cli_env)) as db:
        before = row_counts(db)

    dry = invoke(
        "subscribers", "import", str(path), "--newsletter", "daily", "--consented", "x", "--dry-run"
    )
    assert dry.exit_code == 0, dry.output
    assert "3 rows: 1 ok, 1 invalid, 1 duplicate" in dry.output
    assert "Ignored columns: colour" in dry.output
    assert "row 3: nope: invalid: That email address is not valid" in dry.output
    assert "row 4: OK@example.com: duplicate: same address as row 2" in dry.output
    assert "nothing stored" in dry.output

    for bad in ([], ["--confirm-by-mail", "--consented", "x"], ["--consented", "  "]):
        refused = invoke("subscribers", "import", str(path), "--newsletter", "daily", *bad)
        assert refused.exit_code == 1 and "Error:" in refused.output, bad
    unknown = invoke(
        "subscribers", "import", str(path), "--newsletter", "nope", "--confirm-by-mail"
    )
    assert unknown.exit_code == 1 and "no newsletter with slug 'nope'" in unknown.output

    invalid = tmp_path / "invalid.csv"
    invalid.write_text("email\nnot-an-address\n", encoding="utf-8")
    nothing = invoke(
        "subscribers", "import", str(invalid), "--newsletter", "daily", "--confirm-by-mail"
    )
    assert nothing.exit_code == 1 and "no row is valid" in nothing.output

    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    refused = invoke(
        "subscribers", "import", str(binary), "--newsletter", "daily", "--confirm-by-mail"
    )
    assert refused.exit_code == 1 and "NUL bytes" in refused.output

    huge = tmp_path / "huge.csv"
    with huge.open("wb") as f:
        f.truncate(21 * 1024 * 1024)  # a sparse 21 MB file: refused by its size, unread
    too_big = invoke(
        "subscribers", "import", str(huge), "--newsletter", "daily", "--confirm-by-mail"
    )
    assert too_big.exit_code == 1 and "larger than 20 MB" in too_big.output

    with session_scope(database_url(cli_env)) as db:
        assert row_counts(db) == before


def test_unsubscribe_suppress_and_erase(tmp_path: Path, cli_env: dict[str, str]) -> None:
    path = ready(tmp_path, cli_env, rows=3)
    invoke("subscribers", "import", str(path), "--newsletter", "daily", "--consented", "form")
    invoke("subscribers", "import", str(path), "--newsletter", "offers", "--consented", "form")

    left = invoke("subscribers", "unsubscribe", "reader0@example.com", "--newsletter", "offers")
    assert left.exit_code == 0 and "left offers" in left.output
    assert "left daily" in invoke("subscribers", "unsubscribe", "reader0@example.com").output
    again = invoke(
        "subscribers", "import", str(path), "--newsletter", "daily", "--consented", "form"
    )
    assert "row 2: reader0@example.com: unsubscribed: left this list" in again.output

    suppressed = invoke("subscribers", "suppress", "reader1@example.com", "--detail", "phoned")
    assert suppressed.exit_code == 0 and "(editor)" in suppressed.output

    refused = CliRunner().invoke(cli, ["subscribers", "erase", "reader2@example.com"], input="n\n")
    assert refused.exit_code == 1 and count(cli_env, Subscriber) == 3
    erased = invoke("subscribers", "erase", "reader2@example.com", "--yes")
    assert erased.exit_code == 0, erased.output
    assert "2 consent proofs kept" in erased.output
    assert count(cli_env, Subscriber) == 2 and count(cli_env, ErasedConsent) == 2
    assert count(cli_env, Suppression) == 2
    gone = invoke("subscribers", "show", "reader2@example.com")
    assert gone.exit_code == 1 and "it was erased" in gone.output
    assert invoke("subscribers", "erase", "nobody@example.com", "--yes").exit_code == 1
    assert invoke("subscribers", "unsubscribe", "not an address").exit_code == 1
