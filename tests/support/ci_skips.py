"""pytest plugin (``-p tests.support.ci_skips``, used by scripts/test): with CI=true, a test
skipped because a real service is unreachable FAILS instead, so CI cannot pass by skipping the
integration tests. Locally such skips stay skips, with their reason shown by ``-ra``.

A skip counts as "service unreachable" when its reason mentions Redis, PostgreSQL, RabbitMQ,
Chromium, Dovecot or dnsmasq together with unreachable / not reachable / not running / unavailable /
not installed / missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator

import pytest

SERVICE = re.compile(r"redis|postgres|rabbitmq|chromium|playwright|dovecot|dnsmasq", re.IGNORECASE)
UNAVAILABLE = re.compile(
    r"unreachable|not reachable|not running|not available|unavailable|not installed|missing"
    r"|cannot connect|refused|is down",
    re.IGNORECASE,
)


def in_ci() -> bool:
    """True when the CI variable is set the way CI systems set it."""
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def is_service_skip(reason: str) -> bool:
    """Does this skip reason say a real service was unreachable?"""
    return bool(SERVICE.search(reason) and UNAVAILABLE.search(reason))


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Turn a service-unreachable skip into a failure when running in CI."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if is_service_skip(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"CI=true and this test was skipped: {reason}\n"
            "CI must run every integration test: start the service (see .ci/run)."
        )
