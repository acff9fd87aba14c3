"""Hostile input as properties: whatever a form, a link's token or a query holds, the answer is a
page or a clear 4xx, never a 500, and a refused request stores nothing.

hypothesis writes the fields (any text: control characters, surrogates of other scripts, huge
values, lists where one value is expected) and the tokens (any text, and real tokens bent: cut,
extended, one character changed); each request goes through the real app with a valid CSRF
token where the form needs one, so the input reaches the code behind the protection.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.settings import Settings
from newsletter.store.models import SubscriberStatus
from tests.support.console import form_token
from tests.support.readers import Lists, add_subscriber, csrf_token, make_lists, row_counts

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Text as people, scripts and attackers type it: any code point but surrogates, up to 4 kB.
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=4096)
FIELD = st.one_of(TEXT, st.lists(TEXT, max_size=3))
SIGNUP_FIELDS = ("email", "name", "newsletter", "frequency", "topics", "next", "embed", "consent")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings with limits hypothesis's hundreds of requests from one IP stay under,
    so every example reaches the code behind them (the limits have tests of their own)."""
    return replace(
        settings,
        signup_rate_limit="100000/minute",
        address_rate_limit="100000/hour",
        console_login_rate_limit="100000/minute",
    )


@pytest.fixture
def lists(db: Session) -> Lists:
    """The lists the signup form offers."""
    return make_lists(db)


def form(draw_fields: dict[str, str | list[str]], token: str) -> dict[str, str | list[str]]:
    """The drawn fields with the CSRF token added."""
    return {**draw_fields, "csrf_token": token}


@PROPERTY
@given(fields=st.dictionaries(st.sampled_from(SIGNUP_FIELDS), FIELD, max_size=len(SIGNUP_FIELDS)))
def test_any_signup_form_is_answered_without_a_server_error(
    client: FlaskClient, lists: Lists, fields: dict[str, str | list[str]]
) -> None:
    for path in ("/", "/embed", "/subscribe"):
        response = client.post(path, data=form(fields, csrf_token(client)))
        assert response.status_code < 500, (path, fields)


def bent(token: str) -> st.SearchStrategy[str]:
    """A real token cut short, extended, or with one character changed."""
    index = st.integers(min_value=0, max_value=max(0, len(token) - 1))
    return st.one_of(
        index.map(lambda i: token[:i]),
        TEXT.map(lambda tail: token + tail),
        st.tuples(index, st.characters(blacklist_categories=("Cs",))).map(
            lambda pair: token[: pair[0]] + pair[1] + token[pair[0] + 1 :]
        ),
    )


@pytest.fixture
def reader_token(settings: Settings, db: Session, lists: Lists) -> str:
    """A real manage token of a real reader."""
    reader = add_subscriber(db, "reader@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    return links.manage_token(settings, links.subscriber_claim(reader))


READER_LINKS = (
    ("GET", "/confirm/{}"),
    ("POST", "/confirm/{}"),
    ("GET", "/unsubscribe/{}"),
    ("POST", "/unsubscribe/{}"),
    ("GET", "/preferences/{}"),
    ("POST", "/preferences/{}"),
    ("POST", "/preferences/{}/links"),
    ("POST", "/preferences/{}/data"),
    ("GET", "/data/{}"),
    ("GET", "/data/{}/export.json"),
    ("GET", "/archive/{}"),
    ("GET", "/preview/{}"),
)


@PROPERTY
@given(data=st.data())
def test_any_token_in_a_reader_link_is_answered_without_a_server_error(
    client: FlaskClient, db: Session, reader_token: str, data: st.DataObject
) -> None:
    token = data.draw(st.one_of(TEXT.filter(lambda t: "/" not in t and t), bent(reader_token)))
    fields = data.draw(st.dictionaries(TEXT, FIELD, max_size=4))
    before = row_counts(db)
    for method, pattern in READER_LINKS:
        path = pattern.format(token.replace("/", "%2F").replace("?", "%3F").replace("#", "%23"))
        if method == "GET":
            response = client.get(path)
        else:
            response = client.post(path, data=form(fields, csrf_token(client)))
        assert response.status_code < 500, (method, path)
    if token != reader_token:
        assert row_counts(db) == before  # a token that does not hold changes nothing


@PROPERTY
@given(fields=st.dictionaries(st.sampled_from(("email", "password", "code", "next")), FIELD))
def test_any_console_login_is_answered_without_a_server_error(
    client: FlaskClient, fields: dict[str, str | list[str]]
) -> None:
    page = "/console/login"
    response = client.post(page, data=form(fields, form_token(client, page)))
    assert response.status_code < 500, fields
