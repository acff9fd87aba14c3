"""The DNS records a sending domain publishes (DKIM, SPF, DMARC), and a look at what is there.

Gmail and Yahoo (since 2024) and Outlook (since May 2025) require bulk senders to authenticate
with SPF and DKIM and to publish a DMARC policy aligned with the From domain. What to publish
follows from the settings: the DKIM key's public half under its selector, an SPF record for the
envelope sender's domain that lets the relay send (the relay's own include where it is a known
service), and a DMARC record to start with: ``p=none`` with aggregate reports (``rua``), to be
tightened once the reports show every mail aligned.

:func:`look_up` compares each with what the domain's DNS answers, through dnspython, with a
short timeout; where no answer can be had (no network, a resolver that refuses) it says so
rather than guessing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import urlsplit

import dns.exception
import dns.resolver

from newsletter.mail.dkim import DKIMSigner
from newsletter.settings import Settings

TIMEOUT = 3.0
# The SPF include each well-known relay documents, by the end of its SMTP host name.
RELAY_SPF = (
    ("amazonaws.com", "amazonses.com"),
    ("mailgun.org", "mailgun.org"),
    ("sendgrid.net", "sendgrid.net"),
    ("postmarkapp.com", "spf.mtasv.net"),
    ("sparkpostmail.com", "sparkpostmail.com"),
    ("mandrillapp.com", "spf.mandrillapp.com"),
    ("smtp-relay.gmail.com", "_spf.google.com"),
    ("smtp.gmail.com", "_spf.google.com"),
    ("office365.com", "spf.protection.outlook.com"),
    ("outlook.com", "spf.protection.outlook.com"),
)
TXT_CHUNK = 255  # one character-string of a TXT record holds at most 255 octets (RFC 1035)


class State(enum.StrEnum):
    """What the lookup found for one record."""

    OK = "ok"  # published as it should be
    MISSING = "missing"  # the name has no such record
    DIFFERENT = "different"  # published, but not what it should be
    UNKNOWN = "unknown"  # no answer could be had (no network, a resolver that refuses)
    SKIPPED = "skipped"  # nothing to look up (e.g. no DKIM key configured)


@dataclass(frozen=True)
class Record:
    """One TXT record to publish: its name, its value and why it is needed."""

    kind: str  # "DKIM", "SPF" or "DMARC"
    name: str
    value: str
    why: str

    def zone_line(self) -> str:
        """The record as a zone-file line, its value split into 255-octet strings."""
        chunks = [self.value[i : i + TXT_CHUNK] for i in range(0, len(self.value), TXT_CHUNK)]
        quoted = " ".join(f'"{chunk}"' for chunk in chunks or [""])
        return f"{self.name}. 3600 IN TXT {quoted}"


@dataclass(frozen=True)
class Found:
    """What the domain's DNS holds for one record, against what it should."""

    record: Record
    state: State
    detail: str


def from_domain(settings: Settings) -> str:
    """The domain of the From address: DMARC aligns DKIM and SPF with it."""
    return settings.mail_from_domain.lower()


def envelope_domain(settings: Settings) -> str:
    """The domain of the envelope sender (Return-Path), which SPF checks."""
    domain = settings.bounce_address.strip().rpartition("@")[2].lower()
    return domain or from_domain(settings)


def spf_mechanism(settings: Settings) -> str:
    """What lets the relay send: its documented include, or its host name."""
    host = (urlsplit(settings.smtp_url).hostname or "").lower().rstrip(".")
    for suffix, include in RELAY_SPF:
        if host == suffix or host.endswith("." + suffix):
            return f"include:{include}"
    if host and host not in {"localhost", "127.0.0.1", "::1"}:
        return f"a:{host}"
    return "include:YOUR-RELAY-SPF-DOMAIN"


def records(settings: Settings) -> list[Record]:
    """The records to publish for these settings (DKIM only when a key is configured)."""
    found: list[Record] = []
    signer = DKIMSigner.from_settings(settings)
    if signer is not None:
        found.append(
            Record(
                "DKIM",
                f"{signer.selector}._domainkey.{signer.domain}",
                signer.dns_record(),
                "the public half of NEWSLETTER_DKIM_KEY_FILE: receivers verify each mail's "
                "signature with it",
            )
        )
    found.append(
        Record(
            "SPF",
            envelope_domain(settings),
            f"v=spf1 {spf_mechanism(settings)} ~all",
            "lets the relay send for the envelope sender's domain; merge it into an existing "
            "v=spf1 record rather than adding a second one",
        )
    )
    domain = from_domain(settings)
    found.append(
        Record(
            "DMARC",
            f"_dmarc.{domain}",
            f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r",
            "a policy to start with: p=none collects aggregate reports at rua; tighten it to "
            "p=quarantine, then p=reject, once they show every mail aligned",
        )
    )
    return found


def resolver(nameservers: tuple[str, ...] = ()) -> dns.resolver.Resolver:
    """The system's resolver, or one asking these servers (``ip``, ``ip:port``, ``[v6]:port``)."""
    if not nameservers:
        ask = dns.resolver.Resolver()
    else:
        ask = dns.resolver.Resolver(configure=False)
        ask.nameservers = []
        for server in nameservers:
            host, port = _host_port(server.strip())
            ask.nameservers.append(host)
            if port:
                ask.nameserver_ports[host] = port
    ask.lifetime = TIMEOUT
    return ask


def _host_port(server: str) -> tuple[str, int]:
    """``ip``, ``ip:port`` or ``[v6]:port`` as (ip, port or 0)."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest.lstrip(":") or 0)
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, 0


def look_up(record: Record, ask: dns.resolver.Resolver) -> Found:
    """What the DNS holds for one record, compared with what it should."""
    try:
        answer = ask.resolve(record.name, "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return Found(record, State.MISSING, f"no TXT record at {record.name}")
    except (dns.exception.DNSException, OSError) as exc:
        return Found(record, State.UNKNOWN, f"cannot look up {record.name}: {_reason(exc)}")
    texts = [b"".join(r.strings).decode("utf-8", "replace") for r in answer]
    return _compare(record, texts)


def _compare(record: Record, texts: list[str]) -> Found:
    """Judge the published TXT strings of one name against the record."""
    if record.kind == "DKIM":
        wanted = _tags(record.value).get("p", "")
        keys = [_tags(t).get("p", "") for t in texts if "p=" in t]
        if wanted in keys:
            return Found(record, State.OK, "the published key is the configured one")
        if keys:
            return Found(record, State.DIFFERENT, "a different key is published: mails fail DKIM")
        return Found(record, State.MISSING, "no DKIM key (p=) in the TXT records there")
    if record.kind == "SPF":
        spf = [t for t in texts if t.lower().startswith("v=spf1")]
        if len(spf) > 1:
            return Found(
                record, State.DIFFERENT, "more than one v=spf1 record: SPF fails (RFC 7208)"
            )
        if not spf:
            return Found(record, State.MISSING, "no v=spf1 record")
        mechanism = record.value.split()[1]
        if mechanism.lower() in spf[0].lower().split():
            return Found(record, State.OK, spf[0])
        return Found(record, State.DIFFERENT, f"{spf[0]!r} does not name {mechanism}")
    dmarc = [t for t in texts if t.upper().startswith("V=DMARC1")]
    if not dmarc:
        return Found(record, State.MISSING, "no v=DMARC1 record")
    policy = _tags(dmarc[0]).get("p", "")
    if policy not in {"none", "quarantine", "reject"}:
        return Found(record, State.DIFFERENT, f"{dmarc[0]!r} has no valid p= policy")
    return Found(
        record,
        State.OK,
        f"p={policy}" + ("" if "rua" in _tags(dmarc[0]) else ", no rua: no reports"),
    )


def _tags(value: str) -> dict[str, str]:
    """``k=v; k=v`` tag lists (DKIM, DMARC) as a dict, keys lower-case, spaces dropped."""
    tags: dict[str, str] = {}
    for part in value.split(";"):
        key, sep, tag_value = part.partition("=")
        if sep:
            tags[key.strip().lower()] = "".join(tag_value.split())
    return tags


def _reason(exc: BaseException) -> str:
    """One short line for a lookup failure."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]
