"""SNS signatures: the canonical string, the hosts a certificate may come from, the cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from newsletter.inbound.events import Unverified
from newsletter.inbound.providers import sns
from tests.support.feed_server import FeedServer, Route
from tests.support.webhooks import TOPIC, Fetcher, payload, sns_signed, sns_string_to_sign

TOPICS = (TOPIC,)


def notification(**fields: str) -> dict[str, str]:
    """A Notification envelope with a small message, not yet signed."""
    envelope = payload("sns-notification.json", sns_id="unit")
    return {**envelope, "Message": '{"notificationType":"Delivery"}', **fields}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A real HTTP server on loopback."""
    running = FeedServer().start()
    yield running
    running.stop()


@pytest.mark.parametrize(
    "message",
    [
        notification(),
        notification(Subject="Amazon SES Email Event Notification"),
        payload("sns-subscription-confirmation.json"),
    ],
)
def test_the_canonical_string_is_the_one_aws_documents(message: dict[str, str]) -> None:
    signed = sns.SIGNED_FIELDS[message["Type"]]
    assert sns.canonical(message, signed) == sns_string_to_sign(message)


@pytest.mark.parametrize("version", ["1", "2"])
def test_a_signed_message_verifies_and_any_change_does_not(version: str) -> None:
    message = sns_signed(notification(), version)
    sns.verify(message, TOPICS, Fetcher())
    for name in ("Message", "MessageId", "Timestamp"):
        with pytest.raises(Unverified):
            sns.verify({**message, name: message[name] + "x"}, TOPICS, Fetcher())
    # The same signature under the other hash does not hold either.
    other = "2" if version == "1" else "1"
    with pytest.raises(Unverified):
        sns.verify({**message, "SignatureVersion": other}, TOPICS, Fetcher())


@pytest.mark.parametrize(
    "host",
    [
        "sns.us-east-1.amazonaws.com",
        "sns.eu-west-3.amazonaws.com",
        "sns.cn-north-1.amazonaws.com.cn",
    ],
)
def test_sns_hosts_of_every_region_are_accepted(host: str) -> None:
    url = f"https://{host}/SimpleNotificationService-abc.pem"
    assert sns.check_aws_url(url, "SigningCertURL") == url


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://sns-us-east-1.amazonaws.com/x.pem",
        "https://evil.example/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us_east.amazonaws.com/x.pem",
        "https://sns..amazonaws.com/x.pem",
        "ftp://sns.us-east-1.amazonaws.com/x.pem",
        "",
    ],
)
def test_other_hosts_and_schemes_are_refused(url: str) -> None:
    with pytest.raises(Unverified):
        sns.check_aws_url(url, "SigningCertURL")


def test_the_certificate_is_fetched_once_per_process() -> None:
    url = "https://sns.ap-south-1.amazonaws.com/SimpleNotificationService-once.pem"
    message = sns_signed(notification(SigningCertURL=url))
    fetch = Fetcher()
    sns.verify(message, TOPICS, fetch)
    sns.verify(message, TOPICS, fetch)
    assert fetch.seen == [url]


def test_a_certificate_without_an_rsa_key_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    url = "https://sns.ap-south-1.amazonaws.com/SimpleNotificationService-ec.pem"
    message = sns_signed(notification(SigningCertURL=url))
    with pytest.raises(Unverified, match="RSA"):
        sns.verify(message, TOPICS, lambda _url: cert.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(Unverified, match="unusable"):
        sns.verify(message, TOPICS, lambda _url: b"not a certificate")


def test_the_real_fetcher_reads_no_more_than_a_certificate_can_be(server: FeedServer) -> None:
    server.routes["/big.pem"] = Route(body=b"A" * (1024 * 1024), content_type="text/plain")
    server.routes["/moved.pem"] = Route(status=302, location=server.url("/big.pem"))
    assert len(sns.fetch_https(server.url("/big.pem"))) == sns.MAX_CERT_BYTES
    with pytest.raises(requests.HTTPError):  # a redirect could lead off the SNS hosts
        sns.fetch_https(server.url("/moved.pem"))
