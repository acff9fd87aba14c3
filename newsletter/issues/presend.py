"""The pre-send check: one message of an issue, checked against the rules before 100,000 get it.

A send starts only after this passes (``lifecycle.send``), or with an override whose reason is
recorded on the issue; ``newsletter issues check ID`` runs it on demand. The message checked is
the one a test send would mail (a reader who follows every topic, whose links belong to nobody),
so checking changes nothing: its one-click unsubscribe POST is answered like a real one and
unsubscribes no one.

What is checked, each a :class:`Finding`:

* both MIME parts are there, and no template variable was left unsubstituted;
* List-Id, List-Unsubscribe (https and mailto) and List-Unsubscribe-Post (RFC 8058) are set, and
  the body itself links to the unsubscribe page, with the postal address in both parts
  (CAN-SPAM, and Gmail's and Yahoo's bulk-sender rules);
* the DKIM signature verifies with the configured key and covers both List-Unsubscribe headers
  (RFC 8058 §3: a provider ignores a one-click header the signature does not cover); without a
  key this is a warning only, since SPF alone still authenticates;
* the HTML is under Gmail's 102 kB clipping limit (a clipped mail hides its footer, and with it
  the unsubscribe link);
* the one-click URL answers a POST with 200, no redirect and no cookie, as mailbox providers
  require; every link to the news site or this service answers (tokened reader links are
  verified by signature instead: they belong to nobody here, so they answer "not valid").
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from html import unescape
from html.parser import HTMLParser
from urllib.parse import urlsplit

import dkim
import requests
from sqlalchemy.orm import Session

from newsletter.issues.rendering import prepare_issue
from newsletter.issues.test_sends import inert_reader
from newsletter.mail.dkim import DKIMSigner
from newsletter.settings import Settings
from newsletter.store.models import Frequency, Issue, NewsletterKind

# Gmail clips a message whose HTML passes 102 kB ("[Message clipped] View entire message").
GMAIL_CLIP_BYTES = 102 * 1024
TIMEOUT = 5.0  # a provider gives one-click about as long; a link that slow is broken anyway
MAX_LINKS = 40  # distinct links requested at most; a digest has a dozen posts
# Paths of this service's reader links: their tokens are checked by signature, not by request.
TOKEN_PATHS = ("/unsubscribe/", "/preferences/", "/archive/", "/data/", "/confirm/")
_TEMPLATE_LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")
ONE_CLICK_BODY = {"List-Unsubscribe": "One-Click"}

# What a check asks the network for: (method, url) → (status, headers); tests pass their own.
Fetch = Callable[[str, str, dict[str, str] | None], "Answer"]


@dataclass(frozen=True)
class Answer:
    """What a URL answered: its status and the headers that matter here."""

    status: int
    location: str = ""
    sets_cookie: bool = False
    error: str = ""


@dataclass(frozen=True)
class Finding:
    """One rule and how the message fared: ``ok``, or a failure (blocking unless a warning)."""

    name: str
    ok: bool
    detail: str
    blocking: bool = True

    @property
    def mark(self) -> str:
        """``ok``, ``warn`` or ``FAIL``, for a terminal."""
        if self.ok:
            return "ok"
        return "FAIL" if self.blocking else "warn"


@dataclass(frozen=True)
class Report:
    """Every finding for one issue; ``passed`` when no blocking one failed."""

    issue_id: int
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        """True when nothing blocks the send."""
        return all(f.ok or not f.blocking for f in self.findings)

    @property
    def failures(self) -> tuple[Finding, ...]:
        """The findings that block the send."""
        return tuple(f for f in self.findings if f.blocking and not f.ok)

    def summary(self) -> str:
        """One line naming what failed, for an error message or the issue's status reason."""
        failed = self.failures
        if not failed:
            return "pre-send check passed"
        return "pre-send check failed: " + "; ".join(f"{f.name}: {f.detail}" for f in failed)


def http_fetch(method: str, url: str, data: dict[str, str] | None) -> Answer:
    """Ask a URL without following redirects or keeping cookies (as mailbox providers do)."""
    try:
        with requests.Session() as client:
            response = client.request(
                method, url, data=data, timeout=TIMEOUT, allow_redirects=False
            )
            response.close()
    except requests.RequestException as exc:
        return Answer(0, error=type(exc).__name__)
    return Answer(
        response.status_code,
        location=response.headers.get("Location", ""),
        sets_cookie="Set-Cookie" in response.headers,
    )


def check_issue(
    session: Session, settings: Settings, issue_id: int, fetch: Fetch = http_fetch
) -> Report:
    """Render one message of the issue and check it; a Report (never raises for a bad mail)."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        raise LookupError(f"no issue {issue_id}")
    if issue.kind == NewsletterKind.DIGEST and issue.window_end is None:
        return Report(issue_id, (Finding("message", False, "no posts planned yet"),))
    prepared = prepare_issue(session, settings, issue_id)
    frequency = Frequency(issue.frequency).value if issue.frequency else None
    mail = prepared.message_for(inert_reader(f"check@{settings.mail_from_domain}", frequency))
    if mail is None:
        return Report(issue_id, (Finding("message", False, "the issue has no posts to send"),))
    return Report(issue_id, tuple(check_message(settings, mail.message, fetch)))


def check_message(settings: Settings, raw: bytes, fetch: Fetch = http_fetch) -> list[Finding]:
    """Every rule for one rendered message (bytes as they would go to the SMTP server)."""
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    text, html = _parts(message)
    one_click = _https_unsubscribe(str(message.get("List-Unsubscribe", "")))
    findings = [
        _mime(text, html),
        _leftovers(str(message.get("Subject", "")), text, html),
        _list_headers(message, one_click),
        _unsubscribe_in_body(text, html),
        _postal_address(settings, text, html),
        _dkim(settings, raw),
        _size(html),
        _one_click(one_click, fetch),
        _links(settings, html, fetch),
    ]
    return findings


def _parts(message: EmailMessage) -> tuple[str, str]:
    """The decoded text and HTML parts ("" where missing)."""
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return (
        text.get_content() if isinstance(text, EmailMessage) else "",
        html.get_content() if isinstance(html, EmailMessage) else "",
    )


def _mime(text: str, html: str) -> Finding:
    """Both parts present (a lone HTML part scores as spam; text is what some readers read)."""
    missing = [name for name, part in (("text/plain", text), ("text/html", html)) if not part]
    if missing:
        return Finding("mime", False, f"no {' or '.join(missing)} part")
    return Finding("mime", True, "text/plain and text/html parts")


def _leftovers(subject: str, text: str, html: str) -> Finding:
    """No ``{{ … }}`` or ``{% … %}`` left over from a template."""
    for where, content in (("subject", subject), ("text part", text), ("HTML part", html)):
        found = _TEMPLATE_LEFTOVER.search(content)
        if found:
            start = max(0, found.start() - 30)
            excerpt = " ".join(content[start : found.end() + 30].split())
            return Finding(
                "template", False, f"unsubstituted template code in the {where}: {excerpt!r}"
            )
    return Finding("template", True, "no template code left over")


def _https_unsubscribe(header: str) -> str:
    """The https URL of a List-Unsubscribe header, or ""."""
    for item in header.split(","):
        url = item.strip().strip("<>")
        if url.startswith("https://") or url.startswith("http://"):
            return url
    return ""


def _list_headers(message: EmailMessage, one_click: str) -> Finding:
    """List-Id, List-Unsubscribe with https and mailto, List-Unsubscribe-Post as RFC 8058 asks."""
    problems = []
    if not message.get("List-Id"):
        problems.append("no List-Id")
    unsubscribe = str(message.get("List-Unsubscribe", ""))
    if not one_click:
        problems.append("List-Unsubscribe has no https URL")
    if "mailto:" not in unsubscribe:
        problems.append("List-Unsubscribe has no mailto")
    if str(message.get("List-Unsubscribe-Post", "")).strip() != "List-Unsubscribe=One-Click":
        problems.append("no List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    if problems:
        return Finding("list headers", False, ", ".join(problems))
    return Finding("list headers", True, "List-Id, List-Unsubscribe (https, mailto), one-click")


def _unsubscribe_in_body(text: str, html: str) -> Finding:
    """A visible unsubscribe link in both parts, not only the header some clients hide."""
    missing = [
        name for name, part in (("text", text), ("HTML", html)) if "/unsubscribe/" not in part
    ]
    if missing:
        return Finding(
            "unsubscribe link",
            False,
            f"the {' and '.join(missing)} part has no unsubscribe link; the template must "
            "include the reader's unsubscribe URL",
        )
    return Finding("unsubscribe link", True, "in both parts")


def _postal_address(settings: Settings, text: str, html: str) -> Finding:
    """The sender's postal address in both parts (CAN-SPAM; most bulk-sender rules)."""
    address = settings.street_address.strip()
    if not address:
        return Finding("postal address", False, "NEWSLETTER_POSTAL_ADDRESS is empty")
    squeezed = " ".join(address.split())
    missing = [
        name
        for name, part in (("text", text), ("HTML", html))
        if squeezed not in " ".join(unescape(part).split())
    ]
    if missing:
        return Finding("postal address", False, f"not in the {' and '.join(missing)} part")
    return Finding("postal address", True, "in both parts")


def _dkim(settings: Settings, raw: bytes) -> Finding:
    """The signature verifies with the configured key and covers both List-Unsubscribe headers."""
    signer = DKIMSigner.from_settings(settings)
    if signer is None:
        return Finding(
            "dkim",
            False,
            "DKIM is not configured (NEWSLETTER_DKIM_*): Gmail, Yahoo and Outlook require it of "
            "bulk senders; `newsletter dns` shows the record to publish",
            blocking=False,
        )
    record = signer.dns_record().encode()
    try:
        valid = dkim.verify(raw, dnsfunc=lambda _name, timeout=5: record)
    except dkim.DKIMException as exc:
        return Finding("dkim", False, f"the signature cannot be read: {exc}")
    if not valid:
        return Finding(
            "dkim", False, f"the signature does not verify with the key for {signer.domain}"
        )
    signed = _signed_headers(raw)
    missing = [h for h in ("list-unsubscribe", "list-unsubscribe-post") if h not in signed]
    if missing:
        return Finding(
            "dkim",
            False,
            f"the signature does not cover {' and '.join(missing)}; mailbox providers then "
            "ignore one-click unsubscribe (RFC 8058)",
        )
    return Finding("dkim", True, f"valid for d={signer.domain}, covers List-Unsubscribe")


def _signed_headers(raw: bytes) -> set[str]:
    """The header names the DKIM-Signature's h= tag lists."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    signature = " ".join(str(message.get("DKIM-Signature", "")).split())
    tags = dict(
        part.strip().split("=", 1) for part in signature.replace(" ", "").split(";") if "=" in part
    )
    return {name.strip().lower() for name in tags.get("h", "").split(":") if name.strip()}


def _size(html: str) -> Finding:
    """The HTML under Gmail's clipping limit."""
    size = len(html.encode())
    if size > GMAIL_CLIP_BYTES:
        return Finding(
            "size",
            False,
            f"the HTML is {size // 1024} kB; Gmail clips past 102 kB, hiding the footer and its "
            "unsubscribe link: send fewer or shorter stories",
        )
    return Finding("size", True, f"HTML {size // 1024} kB (Gmail clips past 102 kB)")


def _one_click(url: str, fetch: Fetch) -> Finding:
    """The one-click URL answers a provider's POST: 200, no redirect, no cookie."""
    if not url:
        return Finding("one-click", False, "no https List-Unsubscribe URL to try")
    answer = fetch("POST", url, ONE_CLICK_BODY)
    if answer.error or answer.status == 0:
        return Finding("one-click", False, f"{_origin(url)} did not answer ({answer.error})")
    if answer.location or 300 <= answer.status < 400:
        return Finding(
            "one-click", False, f"answers {answer.status} with a redirect; it must be 200"
        )
    if answer.status != 200:
        return Finding("one-click", False, f"answers {answer.status}; it must be 200")
    if answer.sets_cookie:
        return Finding("one-click", False, "sets a cookie; providers post without cookies")
    return Finding("one-click", True, "POST answers 200, no redirect, no cookie")


def _links(settings: Settings, html: str, fetch: Fetch) -> Finding:
    """Every link to the news site or this service answers (tokened reader links excepted)."""
    ours = {urlsplit(settings.site_url).netloc, urlsplit(settings.base_url).netloc} - {""}
    links = [
        url
        for url in _hrefs(html)
        if urlsplit(url).netloc in ours and not urlsplit(url).path.startswith(TOKEN_PATHS)
    ]
    broken = []
    unreachable: dict[str, str] = {}  # host → why: one timeout per dead host, not one a link
    for url in links[:MAX_LINKS]:
        host = urlsplit(url).netloc
        if host in unreachable:
            broken.append(f"{url} ({unreachable[host]})")
            continue
        answer = fetch("HEAD", url, None)
        if answer.status == 405:  # some servers refuse HEAD: ask as a reader's browser would
            answer = fetch("GET", url, None)
        if answer.error:
            unreachable[host] = answer.error
        if answer.error or not 200 <= answer.status < 400:
            broken.append(f"{url} ({answer.error or answer.status})")
    if broken:
        shown = ", ".join(broken[:3]) + (f" and {len(broken) - 3} more" if len(broken) > 3 else "")
        return Finding("links", False, f"{len(broken)} link(s) do not answer: {shown}")
    checked = min(len(links), MAX_LINKS)
    return Finding("links", True, f"{checked} link(s) to our sites answer")


def _origin(url: str) -> str:
    """scheme://host of a URL, for messages (never its token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class _Hrefs(HTMLParser):
    """Collects the distinct http(s) hrefs of <a> tags, in order (linear in the input)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: dict[str, None] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Keep the href of each link."""
        if tag != "a":
            return
        for name, value in attrs:
            if name == "href" and value and value.startswith(("http://", "https://")):
                self.found.setdefault(value.strip(), None)


def _hrefs(html: str) -> Iterable[str]:
    """The distinct http(s) links of an HTML document."""
    parser = _Hrefs()
    parser.feed(html)
    parser.close()
    return list(parser.found)
