"""DKIM signing: signatures our signer makes must verify with dkimpy, and break when tampered."""

from __future__ import annotations

from dataclasses import replace
from email.header import Header
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from newsletter.mail.dkim import (
    DKIMKeyError,
    DKIMSigner,
    canonical_body,
    canonical_header,
    split_message,
)
from newsletter.settings import Settings, SettingsError

DOMAIN = "news.example.com"
SELECTOR = "nl2024"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def signer(key: rsa.RSAPrivateKey) -> DKIMSigner:
    return DKIMSigner(key, DOMAIN, SELECTOR)


def verifies(signer: DKIMSigner, message: bytes) -> bool:
    """dkimpy's verdict, with DNS answered by the signer's own public key."""

    def dnsfunc(name: bytes | str, timeout: int = 5) -> bytes:
        wanted = f"{SELECTOR}._domainkey.{DOMAIN}."
        got = name.decode() if isinstance(name, bytes) else name
        assert got.rstrip(".") + "." == wanted
        return signer.dns_record().encode()

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def mail(body: bytes = b"Hello reader,\r\n\r\nToday's news.\r\n", **extra: str) -> bytes:
    headers = {
        "From": "The Daily Brief <newsletter@news.example.com>",
        "To": "Ann Reader <ann@example.org>",
        "Subject": "Your daily digest",
        "Date": "Mon, 01 Jul 2024 08:00:00 +0000",
        "Message-ID": "<abc123@news.example.com>",
        "List-Id": "Daily digest <daily.news.example.com>",
        "List-Unsubscribe": "<https://news.example.com/unsubscribe/tok>, "
        "<mailto:unsubscribe@news.example.com?subject=tok>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "MIME-Version": "1.0",
        "Content-Type": 'text/plain; charset="utf-8"',
    }
    headers.update(extra)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


def signature_tags(signed: bytes) -> dict[str, str]:
    fields, _ = split_message(signed)
    name, raw = fields[0]
    assert name == b"dkim-signature"
    value = canonical_header(raw).decode().split(":", 1)[1]
    tags = {}
    for part in value.split(";"):
        if "=" in part:
            k, v = part.split("=", 1)
            tags[k.strip()] = v.replace(" ", "").strip()
    return tags


def test_signature_verifies_and_covers_list_headers(signer: DKIMSigner) -> None:
    signed = signer.sign(mail())
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verifies(signer, signed)
    tags = signature_tags(signed)
    covered = tags["h"].split(":")
    for name in (
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "list-id",
        "list-unsubscribe",
        "list-unsubscribe-post",
        "mime-version",
        "content-type",
    ):
        assert covered.count(name) == 2, name  # present once, oversigned once
    assert tags["d"] == DOMAIN and tags["s"] == SELECTOR
    dkim_header = signed.split(b"\r\nFrom:")[0]
    assert all(len(line) <= 78 for line in dkim_header.split(b"\r\n"))


@pytest.mark.parametrize(
    "header, value",
    [
        ("List-Unsubscribe", "<https://evil.example.net/unsubscribe>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=Nope"),
        ("Subject", "Changed"),
    ],
)
def test_tampered_header_fails(signer: DKIMSigner, header: str, value: str) -> None:
    signed = signer.sign(mail())
    fields, _ = split_message(signed)
    original = next(raw for name, raw in fields if name == header.lower().encode())
    tampered = signed.replace(original, f"{header}: {value}".encode())
    assert tampered != signed
    assert not verifies(signer, tampered)


def test_added_second_list_unsubscribe_fails(signer: DKIMSigner) -> None:
    signed = signer.sign(mail())
    injected = signed.replace(
        b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example.net/x>\r\n\r\n", 1
    )
    assert not verifies(signer, injected)


def test_tampered_body_fails(signer: DKIMSigner) -> None:
    signed = signer.sign(mail())
    assert not verifies(signer, signed.replace(b"Today's news.", b"Today's NEWS."))


def test_folded_headers_and_unicode_subject(signer: DKIMSigner) -> None:
    subject = Header("Les nouvelles du jour — café, crème brûlée et ünïcödé", "utf-8").encode(
        maxlinelen=60
    )
    assert "\n" in subject  # really folded
    folded_to = "Ann Reader\r\n <ann@example.org>"
    message = mail(Subject=subject.replace("\n", "\r\n"), To=folded_to)
    signed = signer.sign(message)
    assert verifies(signer, signed)
    refolded = signed.replace(b"Ann Reader\r\n <ann", b"Ann   Reader <ann")
    assert verifies(signer, refolded)  # relaxed: whitespace changes are allowed


def test_long_body_trailing_blank_lines_and_whitespace(signer: DKIMSigner) -> None:
    line = b"A long line of news with  double  spaces and a tab\there.   \r\n"
    body = line * 5000 + b"\r\n\r\n\r\n"
    signed = signer.sign(mail(body))
    assert verifies(signer, signed)
    # Relaxed body canonicalisation ignores trailing blank lines and trailing whitespace.
    assert verifies(signer, signed + b"\r\n\r\n")
    assert not verifies(signer, signed[:-200] + b"cut\r\n")


def test_bare_line_feeds_are_signed_as_sent(signer: DKIMSigner) -> None:
    message = mail().replace(b"\r\n", b"\n")
    signed = signer.sign(message)
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert verifies(signer, signed)


def test_multipart_message_from_email_package(signer: DKIMSigner) -> None:
    from email.message import EmailMessage
    from email.policy import SMTP

    msg = EmailMessage(policy=SMTP)
    msg["From"] = "The Daily Brief <newsletter@news.example.com>"
    msg["To"] = "ann@example.org"
    msg["Subject"] = "Ünïcode digest"
    msg["List-Unsubscribe"] = "<https://news.example.com/u/t>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content("text part\n.leading dot\n", cte="quoted-printable")
    msg.add_alternative("<p>html part</p>", subtype="html", cte="quoted-printable")
    signed = signer.sign(msg.as_bytes())
    assert verifies(signer, signed)


def test_empty_body(signer: DKIMSigner) -> None:
    assert verifies(signer, signer.sign(mail(b"")))


def test_canonicalisation_examples() -> None:
    # RFC 6376 §3.4.5 example.
    assert canonical_header(b"A: X") == b"a:X\r\n"
    assert canonical_header(b"B : Y\t\r\n\tZ  ") == b"b:Y Z\r\n"
    assert canonical_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"
    assert canonical_body(b"") == b""
    assert canonical_body(b"\r\n\r\n") == b""
    assert canonical_body(b"end  ") == b"end\r\n"


def write_key(path: Path, key: object) -> Path:
    path.write_bytes(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_from_settings(settings: Settings, key: rsa.RSAPrivateKey, tmp_path: Path) -> None:
    assert DKIMSigner.from_settings(settings) is None
    path = write_key(tmp_path / "dkim.pem", key)
    s = replace(settings, dkim_key_file=str(path), dkim_selector=SELECTOR, dkim_domain=DOMAIN)
    signer = DKIMSigner.from_settings(s)
    assert signer is not None
    assert DKIMSigner.from_settings(s) is signer  # loaded once per process
    assert verifies(signer, signer.sign(mail()))


def test_bad_key_settings_say_what_to_fix(settings: Settings, tmp_path: Path) -> None:
    with pytest.raises(DKIMKeyError, match="NEWSLETTER_DKIM_DOMAIN"):
        DKIMSigner.from_settings(
            replace(settings, dkim_key_file=str(tmp_path / "k.pem"), dkim_selector="s")
        )
    missing = replace(
        settings, dkim_key_file=str(tmp_path / "nope.pem"), dkim_selector="s", dkim_domain=DOMAIN
    )
    with pytest.raises(SettingsError, match="cannot be read"):
        DKIMSigner.from_settings(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(DKIMKeyError, match="not a PEM private key"):
        DKIMSigner.from_settings(replace(missing, dkim_key_file=str(garbage)))
    ec_path = write_key(tmp_path / "ec.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(DKIMKeyError, match="must be RSA"):
        DKIMSigner.from_settings(replace(missing, dkim_key_file=str(ec_path)))
