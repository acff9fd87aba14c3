"""SMTP transport against real servers: reuse, failure classes, reconnects, TLS, AUTH, timeouts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.mail.transport import (
    CaptureTransport,
    PermanentFailure,
    SMTPTransport,
    TemporaryFailure,
    TransportConfigError,
    close_transports,
    get_transport,
    transport_from_url,
)
from newsletter.settings import Settings
from tests.support.faulty_smtp import (
    CountingSink,
    ScriptedServer,
    self_signed_cert,
    server_tls_context,
)
from tests.support.smtp import free_port

SENDER = "bounces@news.example.com"


def message(n: int, body: str = "Hello") -> bytes:
    """A small CRLF message."""
    return (
        f"From: {SENDER}\r\nTo: reader{n}@example.org\r\nSubject: Test {n}\r\n"
        f"Message-ID: <m{n}@news.example.com>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def counting() -> Iterator[CountingSink]:
    sink = CountingSink()
    sink.start()
    yield sink
    _close_all()  # clients say QUIT before the server goes away
    sink.stop()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    yield server
    _close_all()
    server.stop()


_opened: list[SMTPTransport] = []


def _close_all() -> None:
    while _opened:
        _opened.pop().close()


@pytest.fixture(autouse=True)
def _close_opened() -> Iterator[None]:
    yield
    _close_all()


def smtp(url: str, **kwargs: object) -> SMTPTransport:
    """An SMTP transport for ``url``, closed after the test."""
    transport = transport_from_url(url, **kwargs)  # type: ignore[arg-type]
    assert isinstance(transport, SMTPTransport)
    _opened.append(transport)
    return transport


def test_many_messages_ride_one_connection(counting: CountingSink) -> None:
    transport = smtp(counting.url)
    for n in range(25):
        reply = transport.send(SENDER, f"reader{n}@example.org", message(n))
        assert reply.startswith("250")
    transport.close()
    got = counting.wait_for(25)
    assert counting.connections == 1
    assert sorted(m.rcpt_tos[0] for m in got) == sorted(f"reader{n}@example.org" for n in range(25))
    assert got[0].mail_from == SENDER
    assert b"Subject: Test" in got[0].data


def test_max_messages_rotates_connections(counting: CountingSink) -> None:
    transport = smtp(counting.url + "?max_messages=4")
    for n in range(10):
        transport.send(SENDER, f"reader{n}@example.org", message(n))
    transport.close()
    counting.wait_for(10)
    assert counting.connections == 3  # 4 + 4 + 2


def test_dot_stuffing_and_bare_line_feeds_survive(counting: CountingSink) -> None:
    transport = smtp(counting.url)
    body = b"Subject: dots\n\n.leading dot\r\n..two dots\n.\nend"
    transport.send(SENDER, "reader@example.org", body)
    transport.close()
    (got,) = counting.wait_for(1)
    assert got.data == b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n"


def test_5xx_for_recipient_is_permanent_and_connection_stays_usable(
    counting: CountingSink,
) -> None:
    counting.handler.reply_for["gone@example.org"] = "550 5.1.1 <gone@example.org>: no such user"
    transport = smtp(counting.url)
    transport.send(SENDER, "first@example.org", message(1))
    with pytest.raises(PermanentFailure) as info:
        transport.send(SENDER, "gone@example.org", message(2))
    assert info.value.code == 550
    assert str(info.value) == "550 5.1.1 <gone@example.org>: no such user"
    assert info.value.enhanced_code == "5.1.1"
    assert info.value.bad_address
    transport.send(SENDER, "after@example.org", message(3))
    transport.close()
    got = counting.wait_for(2)
    assert [m.rcpt_tos for m in got] == [["first@example.org"], ["after@example.org"]]
    assert counting.connections == 1  # RSET, not a reconnect


def test_4xx_for_recipient_is_temporary(counting: CountingSink) -> None:
    counting.handler.reply_for["busy@example.org"] = "452 4.2.2 mailbox full, try later"
    transport = smtp(counting.url)
    with pytest.raises(TemporaryFailure) as info:
        transport.send(SENDER, "busy@example.org", message(1))
    assert not isinstance(info.value, PermanentFailure)
    assert info.value.code == 452
    assert "mailbox full" in str(info.value)
    transport.send(SENDER, "ok@example.org", message(2))
    assert counting.wait_for(1)[0].rcpt_tos == ["ok@example.org"]


def test_policy_rejection_is_permanent_but_not_a_bad_address(counting: CountingSink) -> None:
    counting.handler.fail_all_with = "554 5.7.1 rejected by policy"
    transport = smtp(counting.url)
    with pytest.raises(PermanentFailure) as info:
        transport.send(SENDER, "reader@example.org", message(1))
    assert info.value.code == 554
    assert not info.value.bad_address


def test_refused_connection_is_temporary_without_code() -> None:
    transport = smtp(f"smtp://127.0.0.1:{free_port()}")
    with pytest.raises(TemporaryFailure) as info:
        transport.send(SENDER, "reader@example.org", message(1))
    assert info.value.code is None
    assert "cannot reach SMTP server 127.0.0.1" in str(info.value)


def test_dropped_connection_is_reopened_and_message_delivered_once(
    counting: CountingSink,
) -> None:
    counting.handler.hang_up_after_message = True
    transport = smtp(counting.url)
    transport.send(SENDER, "one@example.org", message(1))
    counting.wait_for(1)
    threading.Event().wait(0.3)  # let the server's hang-up land
    transport.send(SENDER, "two@example.org", message(2))
    got = counting.wait_for(2)
    assert [m.rcpt_tos for m in got] == [["one@example.org"], ["two@example.org"]]
    assert counting.connections == 2


def test_silent_drop_with_pipelining_is_retried_on_a_fresh_connection() -> None:
    server = ScriptedServer(close_after_messages=1).start()
    try:
        transport = smtp(server.url)
        for n in range(3):
            transport.send(SENDER, f"r{n}@example.org", message(n))
        assert len(server.messages) == 3
        assert server.connections == 3
    finally:
        server.stop()


def test_pipelined_rejection_is_permanent_and_the_session_recovers(
    scripted: ScriptedServer,
) -> None:
    scripted.reply_for["gone@example.org"] = "550 5.1.1 no such user"
    transport = smtp(scripted.url)
    with pytest.raises(PermanentFailure) as info:
        transport.send(SENDER, "gone@example.org", message(1))
    assert info.value.code == 550
    transport.send(SENDER, "ok@example.org", message(2))
    assert len(scripted.messages) == 1
    assert scripted.connections == 1
    # MAIL, RCPT and DATA went out as one pipelined group, then RSET cleaned up.
    verbs = [c.split(" ")[0].split(":")[0].upper() for c in scripted.commands]
    assert verbs[1:6] == ["MAIL", "RCPT", "DATA", "RSET", "MAIL"]


def test_hang_up_after_data_is_temporary_and_ambiguous() -> None:
    server = ScriptedServer(close_in_data=True).start()
    try:
        transport = smtp(server.url)
        with pytest.raises(TemporaryFailure) as info:
            transport.send(SENDER, "reader@example.org", message(1))
        assert info.value.code is None
        assert "may or may not have been accepted" in str(info.value)
        assert server.connections == 1  # never silently resent
    finally:
        server.stop()


@pytest.mark.parametrize("stall_at", ["greeting", "MAIL"])
def test_stalling_server_times_out_as_temporary(stall_at: str) -> None:
    server = ScriptedServer(stall_at=stall_at).start()
    try:
        transport = smtp(server.url + "?timeout=0.5")
        with pytest.raises(TemporaryFailure) as info:
            transport.send(SENDER, "reader@example.org", message(1))
        assert info.value.code is None
        assert "0.5s" in str(info.value)
    finally:
        server.stop()


def test_starttls_and_auth(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sink = CountingSink(
        starttls_context=server_tls_context(cert, key), credentials=("mailer", "p@ss:w/rd")
    ).start()
    try:
        url = f"smtp://mailer:p%40ss%3Aw%2Frd@127.0.0.1:{sink.port}?starttls=true&verify=false"
        transport = smtp(url)
        assert "p@ss" not in repr(transport)
        transport.send(SENDER, "reader@example.org", message(1))
        transport.send(SENDER, "reader2@example.org", message(2))
        transport.close()
        assert len(sink.wait_for(2)) == 2
        assert sink.connections == 1
    finally:
        sink.stop()


def test_wrong_password_is_a_config_error_not_a_bounce(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sink = CountingSink(
        starttls_context=server_tls_context(cert, key), credentials=("mailer", "right")
    ).start()
    try:
        url = f"smtp://mailer:wrong-secret@127.0.0.1:{sink.port}?starttls=true&verify=false"
        with pytest.raises(TransportConfigError) as info:
            smtp(url).send(SENDER, "reader@example.org", message(1))
        assert isinstance(info.value, TemporaryFailure)
        assert info.value.code == 535
        assert "check NEWSLETTER_SMTP_URL" in str(info.value)
        assert "wrong-secret" not in str(info.value)
        assert sink.messages == []
    finally:
        sink.stop()


def test_untrusted_certificate_is_a_config_error(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sink = CountingSink(starttls_context=server_tls_context(cert, key)).start()
    try:
        with pytest.raises(TransportConfigError) as info:
            smtp(f"{sink.url}?starttls=true").send(SENDER, "reader@example.org", message(1))
        assert "verify=false" in str(info.value)
    finally:
        sink.stop()


def test_implicit_tls(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    sink = CountingSink(implicit_tls_context=server_tls_context(cert, key)).start()
    try:
        transport = smtp(f"smtps://127.0.0.1:{sink.port}?verify=false")
        transport.send(SENDER, "reader@example.org", message(1))
        transport.close()
        assert sink.wait_for(1)[0].rcpt_tos == ["reader@example.org"]
    finally:
        sink.stop()


def test_starttls_required_but_not_offered(counting: CountingSink) -> None:
    with pytest.raises(TransportConfigError, match="does not offer STARTTLS"):
        smtp(counting.url + "?starttls=true").send(SENDER, "r@example.org", message(1))


def test_addresses_that_could_inject_commands_are_refused(counting: CountingSink) -> None:
    transport = smtp(counting.url)
    with pytest.raises(PermanentFailure):
        transport.send(SENDER, "a@example.org>\r\nRCPT TO:<b@example.org", message(1))
    with pytest.raises(TransportConfigError):
        transport.send("bad sender", "a@example.org", message(1))
    transport.send(SENDER, "fine@example.org", message(2))
    assert [m.rcpt_tos for m in counting.wait_for(1)] == [["fine@example.org"]]


def test_url_options_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown SMTP URL option"):
        transport_from_url("smtp://host?starttsl=true")
    with pytest.raises(ValueError, match="expected true or false"):
        transport_from_url("smtp://host?verify=maybe")
    with pytest.raises(ValueError, match="already TLS"):
        transport_from_url("smtps://host?starttls=true")
    t = smtp("smtps://u%40x:secret@mail.example.com?timeout=5&max_messages=100&idle_timeout=9")
    assert (t.host, t.port, t.username, t.timeout, t.max_messages, t.idle_timeout) == (
        "mail.example.com",
        465,
        "u@x",
        5.0,
        100,
        9.0,
    )
    assert "secret" not in repr(t)


def test_threads_share_a_bounded_pool(counting: CountingSink) -> None:
    transport = smtp(counting.url, pool_size=2)
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for n in range(10):
                transport.send(SENDER, f"t{k}-{n}@example.org", message(n))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    transport.close()
    assert errors == []
    assert len(counting.wait_for(40)) == 40
    assert counting.connections <= 2


def test_get_transport_reuses_per_process(settings: Settings, counting: CountingSink) -> None:
    s = replace(settings, smtp_url=counting.url)
    assert get_transport(s) is get_transport(s)
    get_transport(s).send(SENDER, "a@example.org", message(1))
    get_transport(s).send(SENDER, "b@example.org", message(2))
    close_transports()
    counting.wait_for(2)
    assert counting.connections == 1


def test_capture_transport_writes_complete_files(tmp_path: Path) -> None:
    transport = CaptureTransport(tmp_path / "mail")
    threads = [
        threading.Thread(
            target=lambda k=k: [
                transport.send(SENDER, f"r{k}@example.org", message(n)) for n in range(20)
            ]
        )
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 80
    assert not list((tmp_path / "mail").glob(".*.tmp"))
    assert files[0].read_bytes().startswith(b"X-Envelope-From: " + SENDER.encode())
