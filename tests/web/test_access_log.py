"""The access log names the route pattern and the status of each request, never a token: not
in the path of a mailed link, not in its query, not in a path no route matches."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.cli.servers import gunicorn_argv
from newsletter.readers import links
from newsletter.settings import Settings
from newsletter.store.models import SubscriberStatus
from newsletter.web.access_log import UNMATCHED
from tests.support.readers import add_subscriber, make_lists

ACCESS = "newsletter.access"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The access log's lines so far."""
    return [r.getMessage() for r in caplog.records if r.name == ACCESS]


def test_mailed_links_are_logged_by_their_route_pattern_never_their_token(
    client: FlaskClient, db: Session, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    lists = make_lists(db)
    reader = add_subscriber(db, "reader@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    manage = links.manage_token(settings, links.subscriber_claim(reader))
    unsubscribe = links.unsubscribe_token(settings, links.subscriber_claim(reader, lists.daily.id))
    forged = "eyJzIjoxfQ.forged-signature-that-is-still-a-secret"
    requests = [
        (f"/preferences/{manage}", "GET /preferences/<token> 200 "),
        (f"/unsubscribe/{unsubscribe}", "GET /unsubscribe/<token> 200 "),
        (f"/confirm/{forged}?x=secret-in-the-query", "GET /confirm/<token> "),
        (f"/archive/{forged}", "GET /archive/<token> "),
        (f"/no-such-page/{manage}", f"GET {UNMATCHED} 404 "),
        (f"/preferences/{manage}/extra?t={unsubscribe}", f"GET {UNMATCHED} 404 "),
    ]
    caplog.set_level(logging.INFO)
    for path, expected in requests:
        caplog.clear()
        response = client.get(path)
        lines = access_lines(caplog)
        assert len(lines) == 1, (path, lines)
        assert lines[0].startswith(expected), (path, lines)
        status, duration, size = lines[0].split()[2:]
        assert status == str(response.status_code) and duration.endswith("ms")
        assert size == f"{len(response.get_data())}B"
        # Nothing logged while serving it (access line, errors, anything) holds a secret.
        for record in caplog.records:
            text = record.getMessage()
            for secret in (manage, unsubscribe, forged, "secret-in-the-query", "?"):
                assert secret not in text, (path, record.name, text)


def test_a_post_and_an_api_error_are_logged_alike(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client.post("/unsubscribe/abc.def-ghi")
    client.get("/api/v1/issues?token=abc.def-ghi")
    lines = access_lines(caplog)
    assert lines[0].startswith("POST /unsubscribe/<token> ")
    assert lines[1].startswith("GET /api/v1/issues 401 ")
    assert not [line for line in lines if "abc.def" in line]


def test_gunicorn_writes_no_access_log_of_its_own() -> None:
    argv = gunicorn_argv("127.0.0.1", 5000, 2, 4)
    assert "--access-logfile" not in argv and not [a for a in argv if "access" in a]
    assert argv[argv.index("--error-logfile") + 1] == "-"
