"""Standard Webhooks signatures: the spec's own example, and the spec receiver's verdicts."""

from __future__ import annotations

import time

import pytest

from newsletter.hooks.signing import BadSecret, new_secret, signature, signed_headers, signing_key
from tests.support.webhook_receiver import verify

# The example of the Standard Webhooks reference libraries' tests.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_signature_of_the_spec_example() -> None:
    assert signature(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_new_secret_is_whsec_and_32_random_bytes() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second
    assert len(signing_key(first)) == 32


@pytest.mark.parametrize("secret", ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_not base64!"])
def test_a_secret_that_is_not_whsec_base64_is_refused(secret: str) -> None:
    with pytest.raises(BadSecret):
        signing_key(secret)


def test_the_receiver_accepts_our_headers_and_refuses_any_change() -> None:
    secret, now = new_secret(), int(time.time())
    body = b'{"type":"ping","data":{}}'
    headers = signed_headers(secret, "msg_1", now, body)
    assert headers["content-type"] == "application/json"
    assert verify(secret, headers, body, now) == ""
    assert verify(secret, headers, body + b" ", now) == "no valid signature"
    assert verify(new_secret(), headers, body, now) == "no valid signature"
    assert verify(secret, {**headers, "webhook-id": "msg_2"}, body, now) == "no valid signature"
    # A replay: the same request ten minutes later is outside the five-minute tolerance.
    assert verify(secret, headers, body, now + 600) == "timestamp outside the tolerance"
