"""Solve the signup forms' proof of work in Python, as the page's script does in the browser."""

from __future__ import annotations

import html
import json
import re

import altcha

CHALLENGE_RE = re.compile(r'data-challenge="([^"]+)"')


def challenge_of(page: str) -> dict[str, object]:
    """The challenge a rendered signup page carries."""
    match = CHALLENGE_RE.search(page)
    assert match, "the page carries no challenge"
    data: dict[str, object] = json.loads(html.unescape(match.group(1)))
    return data


def solve(challenge: str | dict[str, object]) -> str:
    """The base64 JSON solution of a challenge (its JSON or its dict), for the ``altcha`` field."""
    data = json.loads(challenge) if isinstance(challenge, str) else challenge
    found = altcha.solve_challenge_v1(
        str(data["challenge"]), str(data["salt"]), "SHA-256", int(str(data["maxNumber"]))
    )
    assert found is not None, "no number solves this challenge"
    return solution(data, found.number)


def solution(data: dict[str, object], number: int) -> str:
    """The solution field for this challenge and number (right or wrong)."""
    payload = {k: data[k] for k in ("algorithm", "challenge", "salt", "signature")}
    payload["number"] = number
    return altcha.PayloadV1.from_dict(payload).to_base64()  # type: ignore[arg-type]


def solve_page(page: str) -> str:
    """The solution to the challenge of a rendered signup page."""
    return solve(challenge_of(page))
