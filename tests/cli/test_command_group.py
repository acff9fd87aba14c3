"""The ``newsletter`` group itself: only our commands and options, and no database by accident.

Run as a newcomer would, in a subprocess from a folder of its own with no NEWSLETTER_* set.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.worker import NEWSLETTER, base_env

SECRET = "command-group-secret-key-that-is-long-enough-0123"


def newsletter(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`newsletter ARGS` in ``cwd`` with only ``env`` among the NEWSLETTER_* variables."""
    return subprocess.run(
        [*NEWSLETTER, *args],
        cwd=cwd,
        env=base_env(NEWSLETTER_ENV="testing", NEWSLETTER_SECRET_KEY=SECRET, **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_help_shows_our_commands_and_options_only(tmp_path: Path) -> None:
    result = newsletter(["--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for leftover in ("--app", "-A,", "--debug", "--env-file", "dotenv", "limiter", " run "):
        assert leftover not in out, leftover
    commands = {line.split()[0] for line in out.split("Commands:", 1)[1].splitlines() if line}
    assert {"dev", "digest", "issues", "shell", "routes", "web", "worker", "beat"} <= commands
    assert "run" not in commands and "limiter" not in commands
    assert list(tmp_path.iterdir()) == []  # listing commands built no app and no data folder


def test_a_command_in_the_wrong_folder_says_where_it_looked_and_creates_nothing(
    tmp_path: Path,
) -> None:
    result = newsletter(["issues", "list"], tmp_path)
    assert result.returncode == 2
    assert f"no database at {tmp_path / 'instance' / 'newsletter.db'}" in result.stderr
    assert "NEWSLETTER_DATA_DIR" in result.stderr and "relative to this folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
    # Asking for help is never refused, nor a group's usage.
    assert newsletter(["issues", "list", "--help"], tmp_path).returncode == 0
    bare = newsletter(["issues"], tmp_path)
    assert "Usage: newsletter issues" in bare.stdout + bare.stderr and "no database" not in (
        bare.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_an_explicit_database_url_that_names_no_file_is_refused_the_same_way(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "elsewhere" / "news.db"
    result = newsletter(
        ["newsletters", "list"], tmp_path, NEWSLETTER_DATABASE_URL=f"sqlite:///{missing}"
    )
    assert result.returncode == 2
    assert f"no database at {missing}" in result.stderr
    assert "NEWSLETTER_DATABASE_URL names it" in result.stderr
    assert not missing.parent.exists()


def test_db_upgrade_creates_the_database_and_then_commands_find_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert newsletter(["db", "upgrade"], tmp_path, NEWSLETTER_DATA_DIR=str(data)).returncode == 0
    assert (data / "newsletter.db").is_file()
    listed = newsletter(["newsletters", "list"], tmp_path, NEWSLETTER_DATA_DIR=str(data))
    assert listed.returncode == 0, listed.stderr
    assert "No newsletters yet" in listed.stdout
