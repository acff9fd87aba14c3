"""The signup proof of work: issued statelessly, verified from the solution and a replay guard."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest

from newsletter.readers.signup_challenge import (
    CHALLENGE_LIFETIME,
    EXPIRED,
    INVALID,
    MISSING,
    REPLAYED,
    InvalidSolution,
    issue_challenge,
    verify_solution,
)
from newsletter.store.db import utcnow
from tests.support.challenge import solution, solve

SECRET = "challenge-test-secret-that-is-long-enough-0123"


class Guard:
    """The replay guard: remembers every challenge it was shown."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, challenge: str) -> bool:
        new = challenge not in self.used
        self.used.add(challenge)
        return new


def refused(encoded: str, guard: Guard | None = None, secret: str = SECRET) -> str:
    with pytest.raises(InvalidSolution) as info:
        verify_solution(secret, encoded, guard or Guard())
    return str(info.value)


def test_a_solved_challenge_is_accepted_once() -> None:
    issued = issue_challenge(SECRET, 500)
    data = json.loads(issued)
    assert data["algorithm"] == "SHA-256" and data["maxNumber"] == 500
    assert "expires=" in data["salt"]
    guard = Guard()
    answer = solve(issued)
    verify_solution(SECRET, answer, guard)
    assert guard.used == {data["challenge"]}
    assert refused(answer, guard) == REPLAYED


def test_each_challenge_is_new() -> None:
    first, second = (json.loads(issue_challenge(SECRET, 500)) for _ in range(2))
    assert first["salt"] != second["salt"] and first["challenge"] != second["challenge"]


def test_an_expired_solution_is_refused() -> None:
    old = utcnow() - CHALLENGE_LIFETIME - timedelta(seconds=5)
    assert refused(solve(issue_challenge(SECRET, 200, now=old))) == EXPIRED


def test_a_wrong_number_is_refused() -> None:
    data = json.loads(issue_challenge(SECRET, 200))
    right = json.loads(base64.b64decode(solve(data)))["number"]
    assert refused(solution(data, right + 1)) == INVALID


@pytest.mark.parametrize("field", ["salt", "challenge", "signature"])
def test_a_tampered_field_is_refused(field: str) -> None:
    data = json.loads(issue_challenge(SECRET, 200))
    number = json.loads(base64.b64decode(solve(data)))["number"]
    value = str(data[field])
    data[field] = ("0" if value[0] != "0" else "1") + value[1:]
    assert refused(solution(data, number)) == INVALID


def test_a_longer_lifetime_cannot_be_spliced_into_the_salt() -> None:
    data = json.loads(issue_challenge(SECRET, 200, now=utcnow() - timedelta(days=1)))
    number = json.loads(base64.b64decode(solve(data)))["number"]
    data["salt"] = str(data["salt"]).split("?")[0] + "?expires=9999999999&"
    assert refused(solution(data, number)) == INVALID


def test_a_challenge_of_another_secret_is_refused() -> None:
    answer = solve(issue_challenge("another-secret-that-is-long-enough-987654321", 200))
    assert refused(answer) == INVALID


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("", MISSING),
        ("   ", MISSING),
        ("not base64!", INVALID),
        (base64.b64encode(b"not json").decode(), INVALID),
        (base64.b64encode(b"[1, 2]").decode(), INVALID),
        (base64.b64encode(b'{"number": 1}').decode(), INVALID),
        ("A" * 3000, INVALID),
    ],
)
def test_garbage_is_refused_with_a_message_not_an_error(encoded: str, message: str) -> None:
    assert refused(encoded) == message


@pytest.mark.parametrize(
    "change",
    [
        {"algorithm": "SHA-1"},
        {"number": "7"},
        {"number": 1.0},
        {"number": True},
        {"signature": None},
        {"signature": "\u00e9" * 64},
    ],
)
def test_fields_of_the_wrong_kind_are_refused(change: dict[str, object]) -> None:
    data = json.loads(issue_challenge(SECRET, 200))
    payload = json.loads(base64.b64decode(solve(data)))
    payload.update(change)
    assert refused(base64.b64encode(json.dumps(payload).encode()).decode()) == INVALID
