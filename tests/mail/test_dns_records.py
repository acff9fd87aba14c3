"""``newsletter dns``: the records to publish, and a real DNS server (dnsmasq) asked for them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.cli import cli
from newsletter.mail.dkim import DKIMSigner
from newsletter.mail.dns_records import Record, State, look_up, records, resolver
from newsletter.settings import Settings
from tests.support.dnsmasq import dns_server
from tests.support.smtp import free_port

DOMAIN = "news.example.com"


@pytest.fixture
def signed(settings: Settings, tmp_path: Path) -> Settings:
    """Settings with a DKIM key, a VERP bounce domain and Amazon SES as the relay."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return replace(
        settings,
        mail_from=f"The Daily Brief <news@{DOMAIN}>",
        bounce_address=f"bounces+@mail.{DOMAIN}",
        smtp_url="smtp://email-smtp.eu-west-1.amazonaws.com:587",
        dkim_key_file=str(path),
        dkim_selector="mail",
        dkim_domain=DOMAIN,
    )


def by_kind(settings: Settings) -> dict[str, Record]:
    """The records to publish, by kind."""
    return {r.kind: r for r in records(settings)}


def test_the_records_follow_from_the_settings(signed: Settings) -> None:
    wanted = by_kind(signed)
    signer = DKIMSigner.from_settings(signed)
    assert signer is not None
    assert wanted["DKIM"].name == f"mail._domainkey.{DOMAIN}"
    assert wanted["DKIM"].value == signer.dns_record()
    # SPF is checked on the envelope sender, the VERP bounce domain; SES documents its include.
    assert wanted["SPF"].name == f"mail.{DOMAIN}"
    assert wanted["SPF"].value == "v=spf1 include:amazonses.com ~all"
    # DMARC aligns with the From domain; start at p=none and collect the reports.
    assert wanted["DMARC"].name == f"_dmarc.{DOMAIN}"
    assert wanted["DMARC"].value.startswith("v=DMARC1; p=none; rua=mailto:dmarc-reports@")
    # A TXT string holds 255 octets: the 2048-bit key's record is split for the zone file.
    line = wanted["DKIM"].zone_line()
    assert line.startswith(f'mail._domainkey.{DOMAIN}. 3600 IN TXT "v=DKIM1; k=rsa; p=')
    strings = line.split(" IN TXT ", 1)[1].split('" "')
    assert len(strings) == 2 and all(len(s.strip('"')) <= 255 for s in strings)
    assert "".join(s.strip('"') for s in strings) == wanted["DKIM"].value


@pytest.mark.parametrize(
    ("smtp_url", "mechanism"),
    [
        ("smtp://smtp.mailgun.org:587", "include:mailgun.org"),
        ("smtps://smtp.sendgrid.net:465", "include:sendgrid.net"),
        ("smtp://smtp.postmarkapp.com", "include:spf.mtasv.net"),
        ("smtp://smtp.office365.com:587", "include:spf.protection.outlook.com"),
        ("smtp://relay.news.example.com:25", "a:relay.news.example.com"),
        ("smtp://127.0.0.1:2525", "include:YOUR-RELAY-SPF-DOMAIN"),
    ],
)
def test_spf_names_the_relay(signed: Settings, smtp_url: str, mechanism: str) -> None:
    assert by_kind(replace(signed, smtp_url=smtp_url))["SPF"].value == f"v=spf1 {mechanism} ~all"


def test_without_a_key_there_is_no_dkim_record(settings: Settings) -> None:
    assert [r.kind for r in records(settings)] == ["SPF", "DMARC"]


@pytest.fixture
def published(signed: Settings, tmp_path: Path) -> Iterator[str]:
    """A DNS server holding what `newsletter dns` asks for, a second (old) key and two SPFs."""
    wanted = by_kind(signed)
    other = DKIMSigner(
        rsa.generate_private_key(public_exponent=65537, key_size=2048), "old.example", "old"
    )
    zone = {
        wanted["DKIM"].name: [wanted["DKIM"].value],
        wanted["SPF"].name: ["v=spf1 mx include:amazonses.com ~all"],
        wanted["DMARC"].name: ["v=DMARC1; p=quarantine; rua=mailto:d@news.example.com"],
        "old._domainkey.old.example": [other.dns_record()],
        "twice.example": ["v=spf1 a ~all", "v=spf1 mx ~all"],
        "_dmarc.bare.example": ["v=DMARC1; p=none"],
    }
    with dns_server(tmp_path, zone) as server:
        yield server


def test_published_records_are_compared_with_what_they_should_be(
    signed: Settings, published: str
) -> None:
    ask = resolver((published,))
    wanted = by_kind(signed)
    for kind in ("DKIM", "SPF", "DMARC"):
        found = look_up(wanted[kind], ask)
        assert found.state == State.OK, (kind, found.detail)
    assert look_up(wanted["DMARC"], ask).detail == "p=quarantine"

    stale = replace(wanted["DKIM"], name="old._domainkey.old.example")
    assert look_up(stale, ask).state == State.DIFFERENT
    twice = look_up(replace(wanted["SPF"], name="twice.example"), ask)
    assert twice.state == State.DIFFERENT and "more than one v=spf1" in twice.detail
    bare = look_up(replace(wanted["DMARC"], name="_dmarc.bare.example"), ask)
    assert bare.state == State.OK and "no rua" in bare.detail
    # dnsmasq refuses names it does not hold: no answer to be had, which is said, not guessed.
    elsewhere = look_up(replace(wanted["SPF"], name="nowhere.example"), ask)
    assert elsewhere.state == State.UNKNOWN and elsewhere.detail.startswith("cannot look up")


def test_no_name_server_is_unknown_not_missing(signed: Settings) -> None:
    ask = resolver((f"127.0.0.1:{free_port()}",))
    found = look_up(by_kind(signed)["DMARC"], ask)
    assert found.state == State.UNKNOWN


@pytest.fixture
def dns_env(signed: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """NEWSLETTER_* for the command: the signed settings (no database needed)."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    for name in ("env", "data_dir", "secret_key", "mail_from", "bounce_address", "smtp_url"):
        monkeypatch.setenv(f"NEWSLETTER_{name.upper()}", str(getattr(signed, name)))
    for name in ("dkim_key_file", "dkim_selector", "dkim_domain"):
        monkeypatch.setenv(f"NEWSLETTER_{name.upper()}", str(getattr(signed, name)))
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")
    return signed


def test_the_command_prints_the_records_and_checks_them(
    dns_env: Settings, published: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    offline = CliRunner().invoke(cli, ["dns", "--no-check"])
    assert offline.exit_code == 0, offline.output
    assert f'_dmarc.{DOMAIN}. 3600 IN TXT "v=DMARC1; p=none;' in offline.output
    assert "Published:" not in offline.output

    monkeypatch.setenv("NEWSLETTER_DNS_NAMESERVERS", published)
    checked = CliRunner().invoke(cli, ["dns"])
    assert checked.exit_code == 0, checked.output
    assert f"  ok        DKIM  mail._domainkey.{DOMAIN}: the published key" in checked.output

    with dns_server(tmp_path / "empty", {}, zones=(DOMAIN,)) as nothing:
        monkeypatch.setenv("NEWSLETTER_DNS_NAMESERVERS", nothing)
        missing = CliRunner().invoke(cli, ["dns"])
    assert missing.exit_code == 1
    assert "3 record(s) to publish or fix" in missing.output

    monkeypatch.setenv("NEWSLETTER_DNS_NAMESERVERS", "127.0.0.1:notaport")
    bad = CliRunner().invoke(cli, ["dns"])
    assert bad.exit_code == 2 and "NEWSLETTER_DNS_NAMESERVERS" in bad.output
