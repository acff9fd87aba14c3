"""The CI guard: with CI=true a skip for an unreachable service fails the run; locally it skips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.ci_skips import is_service_skip
from tests.support.pytest_run import run_pytest

SAMPLE = """
import pytest

def test_needs_redis():
    pytest.skip("Redis is unreachable at 127.0.0.1:6379")

def test_needs_postgres():
    pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")

def test_other_reason():
    pytest.skip("only meaningful on Windows")

def test_runs():
    assert True
"""


def run_sample(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run pytest with the plugin on a sample file, with or without CI set."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    return run_pytest([str(tmp_path / "test_sample.py")], cwd=tmp_path, ci=ci)


def test_in_ci_service_skips_fail_the_run(tmp_path: Path) -> None:
    result = run_sample(tmp_path, "true")
    assert result.returncode == 1, result.stdout
    assert "2 failed, 1 passed, 1 skipped" in result.stdout
    assert "CI must run every integration test" in result.stdout


def test_locally_service_skips_stay_skips(tmp_path: Path) -> None:
    result = run_sample(tmp_path, None)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 3 skipped" in result.stdout


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("Redis is unreachable at 127.0.0.1:6379", True),
        ("PostgreSQL is not reachable on 127.0.0.1:5432", True),
        ("chromium not installed at /usr/bin/chromium", True),
        ("spamassassin is not installed (Debian's package spamassassin)", True),
        ("SpamAssassin rules checked by hand", False),
        ("needs dkimpy", False),
        ("Redis-specific behaviour checked elsewhere", False),
    ],
)
def test_which_skips_count_as_service_unreachable(reason: str, expected: bool) -> None:
    assert is_service_skip(reason) is expected
