"""Debian's Chromium (/usr/bin/chromium) through Playwright, for the browser tests.

The session-scoped ``chromium`` fixture launches it once and hands the same browser to every
browser test. When it is not installed, or is there but does not start, every test that asks
for it skips with the reason, and under CI=true that skip fails the run (tests/support/ci_skips.py
matches "Chromium ... not installed / unavailable"). ``TEST_CHROMIUM`` points the fixture at
another executable (the tests of this helper use a missing path and /bin/false).

Registered for the whole suite by tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Error, Page, sync_playwright

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
LAUNCH_TIMEOUT_MS = 60_000


def chromium_path() -> Path:
    """The Chromium to drive: $TEST_CHROMIUM, else Debian's."""
    return Path(os.environ.get("TEST_CHROMIUM") or DEFAULT_CHROMIUM)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Playwright's are long)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """One Chromium for the session; skips with the reason when it is missing or cannot start.

    A fixture that raises pytest.skip is not retried: pytest reports the same skip for every
    later test that asks for it, so the launch is attempted once per session.
    """
    path = chromium_path()
    if not path.is_file():
        pytest.skip(f"Chromium is not installed at {path}")
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(
                executable_path=str(path), args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
            )
        except Error as exc:
            pytest.skip(f"Chromium is unavailable ({path} does not start): {first_line(exc)}")
        yield browser
        browser.close()


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies) and page."""
    context = chromium.new_context()
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()
