"""Running pytest in a subprocess with the CI guard plugin, for tests of the test machinery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(
    targets: list[str], *, cwd: Path, ci: str | None, **env: str
) -> subprocess.CompletedProcess[str]:
    """pytest TARGETS with tests.support.ci_skips, CI set to ``ci`` (or unset), ``env`` added."""
    full = {k: v for k, v in os.environ.items() if k != "CI"}
    full["PYTHONPATH"] = str(ROOT)
    full.update(env)
    if ci is not None:
        full["CI"] = ci
    argv = [sys.executable, "-m", "pytest", "-p", "tests.support.ci_skips", "-q", "-rs"]
    argv += ["-p", "no:cacheprovider", "-o", "addopts=", *targets]
    return subprocess.run(
        argv, cwd=cwd, env=full, capture_output=True, text=True, timeout=300, check=False
    )
