"""Hostile inbound mail for tests: a genuine report made too deep, too wide, naming too many
recipients or carrying huge headers. Each keeps the report's evidence, so that below the limit
it is still acted on and beyond it a refusal is all that stops it."""

from __future__ import annotations

from email.parser import BytesHeaderParser

FILLER_DOMAIN = b"example.net"


def split(report: bytes) -> tuple[bytes, bytes]:
    """A message's header section and body (at the first blank line)."""
    head, _, body = report.partition(b"\n\n")
    return head + b"\n", body


def boundary(report: bytes) -> bytes:
    """The boundary of a multipart message."""
    found = BytesHeaderParser().parsebytes(report).get_boundary()
    assert found, "not a multipart message"
    return found.encode()


def nested(report: bytes, depth: int) -> bytes:
    """The report's body inside ``depth`` levels of multipart/mixed, its headers on top."""
    head, body = split(report)
    lines = head.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.lower().startswith(b"content-type:"))
    end = start + 1
    while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
        end += 1
    content_type = b"".join(lines[start:end])
    outer = b"".join(lines[:start] + lines[end:])
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="level-%d"\n\n--level-%d\n' % (i, i)
        for i in range(depth)
    )
    closing = b"".join(b"\n--level-%d--\n" % i for i in reversed(range(depth)))
    return outer + opening + content_type + b"\n" + body + closing


def wide(report: bytes, parts: int) -> bytes:
    """The report with ``parts`` more text parts before its closing boundary."""
    close = b"\n--" + boundary(report) + b"--"
    extra = b"".join(
        b"\n--%s\nContent-Type: text/plain\n\nfiller part %d\n" % (boundary(report), i)
        for i in range(parts)
    )
    at = report.rindex(close)
    return report[:at] + extra + report[at:]


def naming(report: bytes, recipients: int) -> bytes:
    """A DSN with ``recipients`` more failed recipients before its first one, or an ARF report
    with that many more Original-Rcpt-To fields."""
    if b"\nFinal-Recipient:" in report:
        at = report.index(b"\nFinal-Recipient:") + 1
        extra = b"".join(
            b"Final-Recipient: rfc822; reader%d@%s\nAction: failed\nStatus: 5.1.1\n\n"
            % (i, FILLER_DOMAIN)
            for i in range(recipients)
        )
    else:
        at = report.index(b"\nOriginal-Rcpt-To:") + 1
        extra = b"".join(
            b"Original-Rcpt-To: <reader%d@%s>\n" % (i, FILLER_DOMAIN) for i in range(recipients)
        )
    return report[:at] + extra + report[at:]


def huge_header(report: bytes, size: int) -> bytes:
    """The report with a header field of ``size`` characters, folded into lines of 70."""
    line = b" " + b"x" * 69 + b"\n"
    value = line * (size // len(line) + 1)
    return b"X-Filler:" + value + report


def many_headers(report: bytes, count: int) -> bytes:
    """The report with ``count`` short header fields on top."""
    return b"".join(b"X-Filler-%d: x\n" % i for i in range(count)) + report
