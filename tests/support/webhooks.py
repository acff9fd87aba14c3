"""Provider webhooks for tests: the payload samples of tests/data/webhooks, and each provider's
signature made with keys the tests generate (a self-signed "SNS" certificate, an HMAC key, an
ECDSA P-256 pair). The SNS canonical string is written here from AWS's documentation, apart
from the code under test, so the two check each other."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

DATA = Path(__file__).parents[1] / "data" / "webhooks"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-feedback"
CERT_URL = (
    "https://sns.us-east-1.amazonaws.com/"
    "SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"
)
MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "correct horse battery staple"


def payload(name: str, **values: str) -> Any:
    """A sample from tests/data/webhooks, its $placeholders filled in (JSON-escaped), parsed."""
    escaped = {k: json.dumps(v)[1:-1] for k, v in values.items()}
    return json.loads(Template((DATA / name).read_text()).safe_substitute(escaped))


# --- Amazon SNS ----------------------------------------------------------------------------------


@cache
def sns_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed certificate for it (PEM), one per test process."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


def sns_string_to_sign(message: dict[str, Any]) -> bytes:
    """AWS's canonical form: each signed key and value on its own line, keys in byte order."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{k}\n{message[k]}\n" for k in keys if k in message).encode()


def sns_signed(message: dict[str, Any], version: str = "1") -> dict[str, Any]:
    """The message signed as SNS signs it (SignatureVersion 1: SHA1, 2: SHA256)."""
    key, _pem = sns_key()
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(sns_string_to_sign(message), padding.PKCS1v15(), algorithm)
    return {
        **message,
        "SignatureVersion": version,
        "Signature": base64.b64encode(signature).decode(),
    }


def ses_notification(sample: str, version: str = "1", sns_id: str = "", **values: str) -> dict:
    """An SES notification sample inside a signed SNS Notification envelope."""
    body = payload(sample, **values)
    envelope = payload("sns-notification.json", sns_id=sns_id or f"sns-{sample}-{values}")
    envelope["Message"] = json.dumps(body)
    return sns_signed(envelope, version)


@dataclass
class Fetcher:
    """Stands in for requests: serves the test certificate at the SNS URL, records every URL."""

    seen: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        """The certificate for a .pem URL, an SNS-like answer for anything else."""
        self.seen.append(url)
        if url.split("?", 1)[0].endswith(".pem"):
            return sns_key()[1]
        return b"<ConfirmSubscriptionResponse><ConfirmSubscriptionResult/>"


# --- Mailgun and SendGrid ------------------------------------------------------------------------


def mailgun_signature(timestamp: str, token: str, key: str = MAILGUN_KEY) -> str:
    """Mailgun's hex HMAC-SHA256 of timestamp + token."""
    return hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


@cache
def sendgrid_key() -> ec.EllipticCurvePrivateKey:
    """An ECDSA P-256 key, one per test process."""
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public_key() -> str:
    """The verification key as SendGrid shows it: base64 DER SubjectPublicKeyInfo."""
    der = (
        sendgrid_key()
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return base64.b64encode(der).decode()


def sendgrid_headers(raw: bytes, timestamp: str) -> dict[str, str]:
    """The signature headers SendGrid sends with a body."""
    signature = sendgrid_key().sign(timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
    }
