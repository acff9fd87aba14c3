"""The Chromium helper (tests/support/browser.py): a missing or broken Chromium skips the browser
tests with the reason, and under CI=true that skip fails the run."""

from __future__ import annotations

import subprocess

import pytest

from tests.support.pytest_run import ROOT, run_pytest

BROWSER_TESTS = [
    "tests/web/test_archive.py::test_preview_page_renders_the_mail_in_chromium",
    "tests/integration/test_browser.py",
]


def run_browser_tests(chromium: str, ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run the browser tests in a pytest subprocess with TEST_CHROMIUM and CI as given."""
    return run_pytest(BROWSER_TESTS, cwd=ROOT, ci=ci, TEST_CHROMIUM=chromium)


def test_without_chromium_the_browser_tests_skip_with_the_reason() -> None:
    result = run_browser_tests("/nonexistent/chromium", ci=None)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 skipped" in result.stdout, result.stdout
    assert "Chromium is not installed at /nonexistent/chromium" in result.stdout


def test_without_chromium_ci_fails_the_run() -> None:
    result = run_browser_tests("/nonexistent/chromium", ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    # The skip happens in the fixture, so pytest reports each as an error at setup.
    assert "3 errors" in result.stdout, result.stdout
    assert "CI must run every integration test" in result.stdout
    assert "Chromium is not installed at /nonexistent/chromium" in result.stdout


@pytest.mark.parametrize("ci", [None, "true"])
def test_a_chromium_that_cannot_start_skips_not_fails(ci: str | None) -> None:
    result = run_browser_tests("/bin/false", ci=ci)
    assert "Chromium is unavailable (/bin/false does not start): " in result.stdout, result.stdout
    if ci is None:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 skipped" in result.stdout, result.stdout
    else:
        assert result.returncode == 1, result.stdout + result.stderr
        assert "3 errors" in result.stdout, result.stdout
