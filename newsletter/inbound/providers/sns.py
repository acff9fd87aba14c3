"""Amazon SNS messages: the signature check and the subscription handshake.

An SNS message is signed by AWS with the key of the certificate at its ``SigningCertURL``
(SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA) over a canonical string of its fields. The
certificate is fetched only over https from an ``sns.<region>.amazonaws.com`` host, once per
process; the topic must be one of ours (a valid signature only proves that *some* AWS topic sent
it: anyone can make one). See
https://docs.aws.amazon.com/sns/latest/dg/sns-verify-signature-of-message.html
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.inbound.events import BadPayload, Unverified, WebhookError

Fetch = Callable[[str], bytes]

SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
FETCH_TIMEOUT = 10.0
MAX_CERT_BYTES = 64 * 1024
# The fields signed, in the order AWS signs them ("Subject" only when the message has one).
SIGNED_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
SIGNED_FIELDS["UnsubscribeConfirmation"] = SIGNED_FIELDS["SubscriptionConfirmation"]
HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}

_certificates: dict[str, rsa.RSAPublicKey] = {}
_lock = threading.Lock()


def fetch_https(url: str) -> bytes:
    """GET an AWS URL (its host already checked) and return the body; raises on any failure."""
    with requests.get(url, timeout=FETCH_TIMEOUT, allow_redirects=False, stream=True) as response:
        if response.status_code != 200:  # a redirect too: it could lead off the SNS hosts
            raise requests.HTTPError(f"{response.status_code} from AWS", response=response)
        # A certificate is a few KiB: read no more than that bound of whatever the server sends.
        return response.raw.read(MAX_CERT_BYTES, decode_content=True)


def check_aws_url(url: str, what: str) -> str:
    """The URL when it is https on an SNS host of AWS; else Unverified, naming ``what``."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or not SNS_HOST.match(host) or parts.port not in (None, 443):
        raise Unverified(f"{what} is not an https URL on an sns.<region>.amazonaws.com host")
    if parts.username or parts.password:
        raise Unverified(f"{what} must not carry credentials")
    return url


def verify(message: Mapping[str, Any], topics: tuple[str, ...], fetch: Fetch) -> None:
    """Raise Unverified unless AWS signed this SNS message and it comes from one of ``topics``."""
    kind = message.get("Type")
    signed = SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if signed is None:
        raise BadPayload(f"not an SNS message type we know: {str(kind)[:40]!r}")
    if message.get("TopicArn") not in topics:
        # Checked before any fetch: a stranger's topic costs us no request to AWS.
        raise Unverified("this SNS topic is not in NEWSLETTER_SES_TOPIC_ARNS", status=403)
    algorithm = HASHES.get(str(message.get("SignatureVersion", "")))
    if algorithm is None:
        raise Unverified("unknown SNS SignatureVersion (1 or 2 expected)")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Unverified("the SNS Signature is not base64") from None
    key = _certificate(str(message.get("SigningCertURL", "")), fetch)
    try:
        key.verify(signature, canonical(message, signed), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise Unverified("the SNS signature does not hold") from None


def canonical(message: Mapping[str, Any], signed: tuple[str, ...]) -> bytes:
    """The string AWS signs: ``name\\nvalue\\n`` for each signed field present, in order."""
    lines: list[str] = []
    for name in signed:
        value = message.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise BadPayload(f"the SNS message lacks its {name}")
        lines += [name, value]
    return ("\n".join(lines) + "\n").encode()


def subscribe(message: Mapping[str, Any], fetch: Fetch) -> str:
    """Confirm a verified SubscriptionConfirmation by visiting its SubscribeURL; returns it."""
    url = check_aws_url(str(message.get("SubscribeURL", "")), "SubscribeURL")
    try:
        fetch(url)
    except Exception as exc:  # any failure of the network or of AWS: SNS will ask again
        raise WebhookError(
            502, f"confirming the subscription at AWS failed ({type(exc).__name__}); SNS retries"
        ) from None
    return url


def _certificate(url: str, fetch: Fetch) -> rsa.RSAPublicKey:
    """The RSA key of the signing certificate at ``url``, fetched once per process."""
    check_aws_url(url, "SigningCertURL")
    if not urlsplit(url).path.endswith(".pem"):
        raise Unverified("SigningCertURL does not name a .pem certificate")
    with _lock:
        cached = _certificates.get(url)
    if cached is not None:
        return cached
    try:
        pem = fetch(url)
        key = x509.load_pem_x509_certificate(pem).public_key()
    except Exception as exc:  # unreachable, not a certificate: nothing can be verified
        raise Unverified(
            f"the SNS signing certificate is unusable ({type(exc).__name__})"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise Unverified("the SNS signing certificate has no RSA key")
    with _lock:
        _certificates[url] = key
    return key
