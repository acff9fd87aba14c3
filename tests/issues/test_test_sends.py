"""mark_as_test: "[TEST]" before a hostile Subject keeps it one field of literal text."""

from __future__ import annotations

import email.policy
from email.parser import BytesParser

from newsletter.issues.test_sends import mark_as_test
from newsletter.mail.headers import unstructured
from newsletter.settings import Settings

HOSTILE = "=?utf-8?q?Hello=0D=0ABcc:_x@evil.example?= Café"


def test_a_test_copy_of_a_hostile_subject_stays_one_line_of_text() -> None:
    message = b"".join(
        [b"From: a@example.com\r\n", unstructured("Subject", HOSTILE), b"\r\nbody\r\n"]
    )
    marked = mark_as_test(Settings(env="testing"), message)
    msg = BytesParser(policy=email.policy.default).parsebytes(marked)
    assert list(msg.keys()) == ["From", "Subject"]
    assert str(msg["Subject"]) == f"[TEST] {HOSTILE}"
    assert not msg.defects and not msg["Subject"].defects
    assert b"\r\nBcc" not in marked
