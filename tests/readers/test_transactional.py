"""Every kind of mail to one reader goes out one way: DKIM-signed when configured, QP within 76.

The confirmation, welcome, already-subscribed, new-links and data-link mails are built by
:func:`newsletter.readers.transactional.send_mail` through ``mail.compose.build_message``; the
bulk mails are signed by the renderer (tests/mail/test_dkim.py, tests/issues).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.mail.dkim import DKIMSigner
from newsletter.readers import link_mails, signup_mails
from newsletter.readers.signup import Signup, subscribe
from newsletter.readers.transactional import MailOutcome, MailResult
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from newsletter.store.models import SubscriberStatus
from tests.support.readers import Lists, add_subscriber, make_lists

DOMAIN = "news.example.com"
SELECTOR = "mail2026"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signed(settings: Settings, key: rsa.RSAPrivateKey, tmp_path: Path) -> Settings:
    """The test settings with a DKIM key for the sending domain."""
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return replace(settings, dkim_key_file=str(path), dkim_selector=SELECTOR, dkim_domain=DOMAIN)


@pytest.fixture
def app_ctx(signed: Settings) -> Iterator[Flask]:
    app = create_app(signed)
    with app.app_context():
        yield app
    dispose_engines()


def raw_mails(settings: Settings) -> list[bytes]:
    """Every captured message as the bytes that went out, oldest first."""
    folder = settings.mail_capture_dir
    assert folder is not None
    return [p.read_bytes() for p in sorted(Path(folder).glob("*.eml"))]


Sender = Callable[[Session, Settings, Flask, Lists], MailResult]


def confirmation(db: Session, s: Settings, app: Flask, lists: Lists) -> MailResult:
    signup = Signup(email="new@example.com", newsletter_ids=(lists.daily.id,), consent_text="t")
    result = subscribe(db, s, signup)
    db.commit()
    assert result.consent_id is not None
    return signup_mails.send_confirmation(db, s, app.jinja_env, result.consent_id)


def welcome(db: Session, s: Settings, app: Flask, lists: Lists) -> MailResult:
    reader = add_subscriber(db, "w@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    return signup_mails.send_welcome(db, s, app.jinja_env, reader.id, [lists.daily.id])


def already(db: Session, s: Settings, app: Flask, lists: Lists) -> MailResult:
    reader = add_subscriber(db, "a@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    return signup_mails.send_already_subscribed(db, s, app.jinja_env, reader.id)


def new_links(db: Session, s: Settings, app: Flask, lists: Lists) -> MailResult:
    reader = add_subscriber(db, "l@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    return link_mails.send_manage_link(db, s, app.jinja_env, reader.id)


def data_link(db: Session, s: Settings, app: Flask, lists: Lists) -> MailResult:
    reader = add_subscriber(db, "d@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    return link_mails.send_data_link(db, s, app.jinja_env, reader.id)


@pytest.mark.parametrize("send", [confirmation, welcome, already, new_links, data_link])
def test_every_mail_to_a_reader_is_signed_and_its_lines_are_short(
    app_ctx: Flask, db: Session, signed: Settings, key: rsa.RSAPrivateKey, send: Sender
) -> None:
    lists = make_lists(db)
    assert send(db, signed, app_ctx, lists).outcome == MailOutcome.SENT
    db.commit()
    [message] = raw_mails(signed)
    signer = DKIMSigner(key, DOMAIN, SELECTOR)

    def dns(name: bytes | str, timeout: int = 5) -> bytes:
        return signer.dns_record().encode()

    head, _, body = message.partition(b"\r\n\r\n")
    assert b"\r\nDKIM-Signature: v=1; a=rsa-sha256;" in head  # after the capture's envelope
    assert dkim.verify(message, dnsfunc=dns)
    too_long = [line for line in body.split(b"\r\n") if len(line) > 76]
    assert too_long == []  # RFC 2045: quoted-printable lines of at most 76 characters
