"""A regular (non-editable) install works: the wheel carries templates, migrations and demo data,
and the installed package runs from outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the wheel the way `pip install .` would (no network: hatchling is installed)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("newsletter-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel installed into a folder of its own (dependencies come from this venv)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    yield target


def names(wheel: Path) -> set[str]:
    """Files in the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_contains_templates_migrations_and_demo_data(wheel: Path) -> None:
    files = names(wheel)
    assert "newsletter/_templates/web/error.html" in files
    assert "newsletter/_templates/web/devmail/index.html" in files
    assert any(n.startswith("newsletter/_templates/email/") for n in files)
    assert "newsletter/store/migrations/env.py" in files
    assert "newsletter/store/migrations/script.py.mako" in files
    versions = [n for n in files if n.startswith("newsletter/store/migrations/versions/")]
    assert any(n.endswith(".py") for n in versions)
    assert "newsletter/ops/demo/sample-feed.xml" in files
    assert "newsletter/_templates/static/demo/border.jpg" in files  # the demo feed's images
    assert "worker/tasks.py" in files
    assert "newsletter/cli/__main__.py" in files
    assert not any(n.startswith(("tests/", "bench/")) for n in files)


def test_wheel_declares_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        entry_points = next(
            archive.read(n).decode() for n in archive.namelist() if n.endswith("entry_points.txt")
        )
    assert "newsletter = newsletter.cli:main" in entry_points


def test_installed_package_runs_outside_the_source_tree(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(PYTHONPATH=str(installed), NEWSLETTER_DATA_DIR=str(tmp_path / "data"))

    def python(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    where = python(
        "import newsletter, newsletter.mail.templates as t; print(newsletter.__file__);"
        "print(t.templates_root())"
    )
    module_file, templates = where.splitlines()
    assert module_file.startswith(str(installed))
    assert templates == str(installed / "newsletter" / "_templates")

    upgraded = subprocess.run(
        [sys.executable, "-m", "newsletter.cli", "db", "upgrade"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert "is at revision" in upgraded.stdout

    status = python(
        "from newsletter import create_app; c = create_app().test_client();"
        "print(c.get('/dev/mail/').status_code, c.get('/healthz').status_code)"
    )
    assert status == "200 200"
    assert python("from newsletter.ops.demo import DEMO_FEED; print(DEMO_FEED.is_file())") == "True"
