"""DKIM signing (RFC 6376): rsa-sha256, relaxed/relaxed, with OpenSSL's RSA through `cryptography`.

dkimpy signs in pure Python at ~8 ms a mail; this signer canonicalises with a few C-speed byte
operations and signs with OpenSSL, well under a millisecond, so a 100,000-reader send can be
signed mail by mail. dkimpy remains the verifier in the tests.

The signature covers, when present, From, To, Subject, Date, Message-ID, Reply-To, List-Id,
List-Unsubscribe, List-Unsubscribe-Post (RFC 8058 requires both in the signature for one-click
unsubscribe), Feedback-ID, MIME-Version, Content-Type and Content-Transfer-Encoding. Each is
"oversigned" (named once more than it occurs) so nobody can add a second one without breaking it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import threading
import time
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.mail.wire import crlf
from newsletter.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)

_WSP_RUN = re.compile(rb"[ \t]+")
_SPACE_RUN = re.compile(rb"  +")


class DKIMKeyError(SettingsError):
    """The DKIM settings or key file cannot be used; the message says how to fix it."""


def canonical_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalisation of a CRLF body."""
    # Tabs become spaces at C speed; the regex then only visits runs of two or more spaces
    # (matching every single space, or halving runs with repeated replace, is 7x slower).
    body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACE_RUN.sub(b" ", body)
    body = body.replace(b" \r\n", b"\r\n").rstrip(b"\r\n")
    if body.endswith(b" "):  # trailing WSP on a last line that had no CRLF
        body = body.rstrip(b" ").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def canonical_header(field: bytes) -> bytes:
    """RFC 6376 §3.4.2 relaxed canonicalisation of one "Name: value" field (folds allowed)."""
    name, _, value = field.partition(b":")
    value = _WSP_RUN.sub(b" ", value.replace(b"\r\n", b"")).strip(b" \t")
    return name.strip(b" \t").lower() + b":" + value + b"\r\n"


def split_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """(header fields as (lowercase name, raw field without final CRLF), body) of a CRLF message."""
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:  # no body at all: everything is header
        head, body = message.removesuffix(b"\r\n"), b""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
        elif line:
            fields.append((line.partition(b":")[0].strip().lower(), line))
    return fields, body


def _fold(items: list[str], sep: str, width: int = 72) -> str:
    """Join ``items`` with ``sep``, breaking lines (CRLF + space) before ``width``."""
    lines: list[str] = []
    line = ""
    for item in items:
        piece = item if not line else sep + item
        if line and len(line) + len(piece) > width:
            lines.append(line + sep.rstrip())
            line = item
        else:
            line += piece
    lines.append(line)
    return "\r\n\t".join(lines)


class DKIMSigner:
    """Signs messages for one domain and selector with one RSA key (thread-safe)."""

    def __init__(self, private_key: rsa.RSAPrivateKey, domain: str, selector: str) -> None:
        if private_key.key_size < 1024:
            raise DKIMKeyError(
                f"the DKIM key has {private_key.key_size} bits; receivers ignore keys under "
                "1024 bits (RFC 8301): generate a 2048-bit key"
            )
        self.key = private_key
        self.domain = domain.strip().lower()
        self.selector = selector.strip()

    @classmethod
    def from_pem(cls, pem: bytes, domain: str, selector: str) -> DKIMSigner:
        """A signer for a PEM private key (PKCS#1 or PKCS#8, unencrypted)."""
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except TypeError as exc:
            raise DKIMKeyError(
                "the DKIM key file is encrypted; store it without a passphrase "
                "(openssl pkey -in enc.pem -out key.pem) and protect it with file permissions"
            ) from exc
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise DKIMKeyError(f"the DKIM key file is not a PEM private key: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DKIMKeyError(
                f"the DKIM key must be RSA (rsa-sha256), not {type(key).__name__}: "
                "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem"
            )
        return cls(key, domain, selector)

    @classmethod
    def from_settings(cls, settings: Settings) -> DKIMSigner | None:
        """The process's signer for NEWSLETTER_DKIM_*; None when DKIM is not configured.

        The key is read once per process. A missing, unreadable or invalid key, or only some of
        the three settings set, raises :class:`DKIMKeyError` (a SettingsError) saying what to fix.
        """
        values = (settings.dkim_key_file, settings.dkim_selector, settings.dkim_domain)
        if not any(values):
            return None
        if not all(values):
            missing = [
                f"NEWSLETTER_DKIM_{name}"
                for name, value in zip(("KEY_FILE", "SELECTOR", "DOMAIN"), values, strict=True)
                if not value
            ]
            raise DKIMKeyError(
                f"DKIM is half configured: set {', '.join(missing)} as well, "
                "or unset all NEWSLETTER_DKIM_* settings to send unsigned"
            )
        key = (settings.dkim_key_file, settings.dkim_selector, settings.dkim_domain)
        with _lock:
            signer = _signers.get(key)
            if signer is None:
                signer = _signers[key] = _load(*key)
                _warn_if_unaligned(signer.domain, settings.mail_from_domain)
        return signer

    def dns_record(self) -> str:
        """The TXT record to publish at ``{selector}._domainkey.{domain}``."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"

    def sign(self, message: bytes, *, timestamp: int | None = None) -> bytes:
        """``message`` (CRLF-normalised) with a DKIM-Signature header prepended."""
        message = crlf(message)
        fields, body = split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(canonical_body(body)).digest()).decode()

        present: dict[bytes, list[bytes]] = {}
        for name, raw in fields:
            if name.decode("ascii", "replace") in SIGNED_HEADERS:
                present.setdefault(name, []).append(raw)
        names: list[str] = []
        signed = bytearray()
        for wanted in SIGNED_HEADERS:
            instances = present.get(wanted.encode())
            if not instances:
                continue
            names.extend([wanted] * (len(instances) + 1))  # +1: oversigned
            for raw in reversed(instances):  # RFC 6376 §5.4.2: bottom-most first
                signed += canonical_header(raw)

        tags = (
            "v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
            f"\td={self.domain}; s={self.selector};\r\n"
            f"\tt={int(time.time()) if timestamp is None else timestamp};\r\n"
            f"\th={_fold(names, ':')};\r\n"
            f"\tbh={body_hash};\r\n"
            "\tb="
        )
        unsigned = f"DKIM-Signature: {tags}".encode()
        signed += canonical_header(unsigned)[:-2]  # the signature header has no final CRLF
        signature = self.key.sign(bytes(signed), padding.PKCS1v15(), hashes.SHA256())
        b64 = base64.b64encode(signature).decode()
        folded = "\r\n\t".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return unsigned + folded.encode() + b"\r\n" + message


_signers: dict[tuple[str, str, str], DKIMSigner] = {}
_lock = threading.Lock()


def _load(path: str, selector: str, domain: str) -> DKIMSigner:
    """Read and parse the key file, with errors that name the setting."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise DKIMKeyError(
            f"NEWSLETTER_DKIM_KEY_FILE={path!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    try:
        return DKIMSigner.from_pem(pem, domain, selector)
    except DKIMKeyError as exc:
        raise DKIMKeyError(f"NEWSLETTER_DKIM_KEY_FILE={path!r}: {exc}") from exc


def _warn_if_unaligned(dkim_domain: str, from_domain: str) -> None:
    """DMARC needs d= to be the From domain or a parent of it; say so once if not."""
    from_domain = from_domain.lower()
    if from_domain != dkim_domain and not from_domain.endswith("." + dkim_domain):
        log.warning(
            "NEWSLETTER_DKIM_DOMAIN=%s does not align with the From domain %s: "
            "DMARC will not count this signature",
            dkim_domain,
            from_domain,
        )
