"""Schemathesis against the app, from its own OpenAPI document: no server error, no answer that
breaks the document (schema, status, content type), and no operation that answers without the
token its document asks for. Bounded (a few examples an operation) so it stays quick."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    CheckContext,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.issues import lifecycle
from newsletter.issues.schedules import create_schedule
from newsletter.mail.transport import close_transports
from newsletter.readers.erasure import suppress_reader
from newsletter.settings import Settings
from newsletter.store.models import Delivery, DeliveryStatus, NewsletterKind
from tests.support import dispatching as seed

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
BOUNDED = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@schemathesis.serializer("message/rfc822")
def raw_message(ctx: schemathesis.SerializationContext, value: object) -> dict[str, Any]:
    """The generated message as the raw bytes POST /inbound reads."""
    return {"data": value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")}


@pytest.fixture
def rows(settings: Settings, db: Session) -> dict[str, list[Any]]:
    """A fresh database with a little of everything; what a case may point at."""
    daily = seed.newsletter(db, "daily")
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    posts = seed.posts(db, 3)
    readers = [
        seed.reader(db, f"reader{n}@example.com", [daily, offers], name=f"Reader {n}")
        for n in range(3)
    ]
    suppress_reader(db, "gone@example.com", "asked by phone")
    schedule = create_schedule(db, newsletter="daily", cron="0 7 * * *")
    issues = [
        lifecycle.create_campaign(db, settings, offers, subject=f"Offer {n}", body_html="<p>Hi</p>")
        for n in range(3)
    ]
    digest = lifecycle.create_digest(db, settings, daily)
    answers = ("250 2.0.0 Ok", "550 5.1.1 user unknown")
    for subscriber, answer in zip(readers, answers, strict=False):
        db.add(
            Delivery(
                issue_id=issues[0].id,
                subscriber_id=subscriber.id,
                status=DeliveryStatus.SENT if answer.startswith("250") else DeliveryStatus.FAILED,
                smtp_code=int(answer[:3]),
                smtp_response=answer,
            )
        )
    db.commit()
    return {
        "issue_id": [i.id for i in [*issues, digest]],
        "schedule_id": [schedule.id],
        "slug": ["daily", "offers"],
        "key": [p.guid for p in posts],
        "newsletter": ["daily", "offers"],
        "subscriber_id": [r.id for r in readers],
    }


@pytest.fixture
def api_app(app: Flask, settings: Settings, rows: dict[str, list[Any]]) -> Iterator[Flask]:
    """The app over that database, enqueuing in process."""
    app.extensions["newsletter.task_queue"] = seed.InlineQueue(settings)
    yield app
    close_transports()


def pointed_at_rows(case: schemathesis.Case, rows: dict[str, list[Any]]) -> schemathesis.Case:
    """Most generated ids match no row (a 404 each): point three cases in four at a real one,
    chosen by the generated value, so the operations' successes are checked too."""
    for name, value in (case.path_parameters or {}).items():
        known = rows.get(name, [])
        choice = zlib.crc32(str(value).encode()) % (len(known) * 4 // 3 + 1)
        if choice < len(known):
            case.path_parameters[name] = known[choice]
    return with_a_real_newsletter(case, rows)


def with_a_real_newsletter(
    case: schemathesis.Case, rows: dict[str, list[Any]]
) -> schemathesis.Case:
    """A body naming newsletters names ones that exist (else nearly every create is a 404)."""
    if isinstance(case.body, dict) and isinstance(case.body.get("newsletter"), str):
        case.body["newsletter"] = rows["newsletter"][len(case.body["newsletter"]) % 2]
    if isinstance(case.body, dict) and isinstance(case.body.get("newsletters"), list):
        case.body["newsletters"] = [
            rows["newsletter"][len(str(slug)) % 2] for slug in case.body["newsletters"]
        ]
    return case


@pytest.fixture
def token(db: Session) -> str:
    """A bearer token with every scope."""
    _, plaintext = create_token(db, "schemathesis", SCOPES)
    db.commit()
    return plaintext


@pytest.fixture
def api_schema(api_app: Flask) -> schemathesis.BaseSchema:
    """The document the app serves, loaded through the app (calls go to the app too)."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app)


def for_each_operation(
    api_schema: schemathesis.BaseSchema, test: Callable[[schemathesis.Case], None]
) -> None:
    """Run ``test`` on a few generated cases of every operation; fail naming the operation."""
    count, calls = 0, []
    for result in api_schema.get_all_operations():
        operation = result.ok()

        @BOUNDED
        @given(case=operation.as_strategy())
        def run(case: schemathesis.Case) -> None:
            calls.append(case.operation.label)
            test(case)

        try:
            run()
        except Exception as exc:
            raise AssertionError(f"{operation.label}: {exc}") from exc
        count += 1
    documented = {
        f"{method.upper()} {path}"
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
    }
    # Every operation ran, but the document itself (schemathesis leaves out where it loaded it).
    assert set(calls) == documented - {"GET /api/v1/openapi.json"} and count == len(documented) - 1


def test_the_api_keeps_its_document(
    api_schema: schemathesis.BaseSchema, token: str, rows: dict[str, list[Any]]
) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    for_each_operation(
        api_schema,
        lambda case: pointed_at_rows(case, rows).call_and_validate(headers=auth, checks=CHECKS),
    )


def needs_the_token(
    ctx: CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool:
    """An operation whose document asks for a bearer token answers 401 without one."""
    if case.operation.definition.raw.get("x-required-scope") and response.status_code != 401:
        raise AssertionError(
            f"{case.method} {case.formatted_path} answered {response.status_code} without a token"
        )
    return True


def test_no_token_no_answer(api_schema: schemathesis.BaseSchema) -> None:
    def without_token(case: schemathesis.Case) -> None:
        case.headers = {
            k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"
        }
        case.call_and_validate(
            checks=[not_a_server_error, content_type_conformance, needs_the_token]
        )

    for_each_operation(api_schema, without_token)


def test_linked_workflows_keep_the_document(
    api_schema: schemathesis.BaseSchema, token: str, rows: dict[str, list[Any]]
) -> None:
    """Stateful: create an issue or a schedule, then act on it through the document's links."""
    auth = {"Authorization": f"Bearer {token}"}

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: schemathesis.Case) -> None:
            with_a_real_newsletter(case, rows)
            case.headers = {**(case.headers or {}), **auth}

        def validate_response(
            self, response: schemathesis.Response, case: schemathesis.Case, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, headers=auth)

    Workflow.run(
        settings=settings(
            max_examples=15,
            stateful_step_count=6,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
    )
