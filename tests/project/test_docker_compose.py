"""docker-compose.yml and the Dockerfile, checked without a Docker engine: the compose-spec schema,
the structure operators rely on, and that every command in them is a real `newsletter` command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from ruamel.yaml import YAML

from newsletter.cli import cli
from newsletter.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "worker", "mailer", "beat")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as plain data (YAML merge keys resolved)."""
    data: dict[str, Any] = YAML(typ="safe").load(COMPOSE.read_text())
    return data


def interpolate(value: str) -> str:
    """Resolve ${VAR:-default} the way compose does when VAR is unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def parse_newsletter_command(argv: list[str]) -> click.Context:
    """Parse `newsletter SUB [ARGS]` with the real command definitions (raises on bad options)."""
    assert argv[0] == "newsletter", argv
    args = [interpolate(a) for a in argv[1:]]
    ctx = click.Context(cli, info_name="newsletter")
    group: click.Group = cli
    while True:
        name, args = args[0], args[1:]
        command = group.get_command(ctx, name)
        assert command is not None, f"`newsletter {name}` does not exist"
        if isinstance(command, click.Group):
            ctx, group = click.Context(command, info_name=name, parent=ctx), command
            continue
        return command.make_context(name, args, parent=ctx)


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_services_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "migrate",
        "web",
        "worker",
        "mailer",
        "beat",
        "redis",
        "postgres",
        "mailpit",
    }


def test_app_services_wait_for_a_successful_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["newsletter", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("web", "worker", "mailer", "beat"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    web = " ".join(services["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in web  # database, broker and Redis, not just the process
    worker = services["worker"]["healthcheck"]["test"]
    assert worker[0] == "CMD-SHELL" and worker[1].startswith("newsletter ping --node")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]


def test_configuration_is_by_newsletter_variables_and_the_secret_is_required(
    compose: dict[str, Any],
) -> None:
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert all(key.startswith("NEWSLETTER_") for key in env), name
        assert env["NEWSLETTER_SECRET_KEY"].startswith("${NEWSLETTER_SECRET_KEY:?"), name
        assert env["NEWSLETTER_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["NEWSLETTER_BROKER_URL"] == "redis://redis:6379/0"
        assert env["NEWSLETTER_SMTP_URL"] == "${NEWSLETTER_SMTP_URL:-smtp://mailpit:1025}"
        assert compose["services"][name]["image"] == "newsletter:latest"


def test_every_command_in_the_compose_file_is_a_valid_newsletter_command(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    parsed = {name: parse_newsletter_command(services[name]["command"]) for name in APP_SERVICES}
    assert parsed["web"].params["host"] == "0.0.0.0"
    assert parsed["web"].params["port"] == 8000
    assert parsed["worker"].params["concurrency"] == 2
    # Bulk and housekeeping on the workers, the reader's own mails on a fast lane of their own.
    assert parsed["worker"].params["queues"] == ("bulk", "housekeeping")
    assert parsed["mailer"].params["queues"] == ("transactional",)
    nodes = {"worker": "newsletter-bulk-housekeeping", "mailer": "newsletter-transactional"}
    for name, node in nodes.items():
        health = shlex.split(services[name]["healthcheck"]["test"][1].replace("$$", "$"))
        assert parse_newsletter_command(health).params["nodes"] == (f"{node}@$HOSTNAME",)


def test_dockerfile_installs_the_package_and_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    instructions = [
        line.split(None, 1)
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith((" ", "#"))
    ]
    assert instructions[0] == ["FROM", "python:3.11-slim"]
    assert any(i[0] == "RUN" and "pip install ." in i[1] for i in instructions)
    users = [i[1].strip() for i in instructions if i[0] == "USER"]
    assert users and users[-1] not in {"root", "0"}
    for copied in ("newsletter", "worker", "templates", "pyproject.toml"):
        assert any(i[0] == "COPY" and copied in i[1] for i in instructions), copied
    cmd = next(i[1] for i in instructions if i[0] == "CMD")
    assert parse_newsletter_command(json.loads(cmd))  # exec form is a JSON array


def test_the_image_and_compose_run_in_production_by_default(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    env_block = dockerfile.split("\nENV ", 1)[1].split("\n\n", 1)[0]
    assert re.search(r"\bNEWSLETTER_ENV=production\b", env_block)
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert interpolate(env["NEWSLETTER_ENV"]) == "production", name


def test_production_settings_refuse_the_default_secret_key() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"NEWSLETTER_ENV": "production", "NEWSLETTER_DATA_DIR": "/nonexistent"})
    assert "NEWSLETTER_SECRET_KEY" in str(refused.value)


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "instance/"} <= ignored
