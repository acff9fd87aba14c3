"""Feeds are fetched from public addresses only, within one deadline, through vetted redirects.

The test server listens on 127.0.0.1, which the fetcher rightly refuses. Where a test needs a
"public" server to start from, it declares 127.0.0.1 public (``public_loopback``): the one stand-in
here, as no public server can run in a test. Everything else is the real fetcher against a real
server, and each refusal is shown to happen before any request reaches a server.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content import public_http
from newsletter.content.feeds import FeedError, fetch, ingest_source
from newsletter.content.public_http import BlockedAddress, IPAddress, public_session
from newsletter.settings import Settings
from newsletter.store.models import Feed
from tests.support.faulty_smtp import self_signed_cert, server_tls_context
from tests.support.feed_server import FeedServer, Route

FEED = (Path(__file__).parents[1] / "data" / "feeds" / "sample-feed.xml").read_bytes()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat 127.0.0.1 (only) as a public address, to stand in for a feed on the internet."""
    policy = public_http.address_problem

    def problem(address: IPAddress) -> str:
        return "" if address == ipaddress.ip_address("127.0.0.1") else policy(address)

    monkeypatch.setattr(public_http, "address_problem", problem)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("100.64.0.1", "a non-global address"),  # carrier-grade NAT
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("240.0.0.1", "a private address"),
        ("::1", "a loopback address"),
        ("::", "an unspecified address"),
        ("fe80::1", "a link-local address"),
        ("fc00::1", "a private address"),
        ("ff02::1", "a multicast address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped
        ("::ffff:169.254.169.254", "a link-local address"),
        ("64:ff9b::a9fe:a9fe", "a link-local address"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "a loopback address"),  # 6to4 of 127.0.0.1
        ("93.184.216.34", ""),
        ("2606:4700::1111", ""),
        ("::ffff:93.184.216.34", ""),
        ("64:ff9b::5db8:d822", ""),
    ],
)
def test_which_addresses_are_public(address: str, problem: str) -> None:
    assert public_http.address_problem(ipaddress.ip_address(address)) == problem


def test_the_default_is_public_networks_only() -> None:
    assert Settings().feed_allow_private_networks is False
    assert Settings.read_env(
        {"NEWSLETTER_FEED_ALLOW_PRIVATE_NETWORKS": "true"}
    ).feed_allow_private_networks


def test_a_feed_on_loopback_is_refused_and_recorded(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/feed"] = Route(FEED)
    result = ingest_source(db, settings, server.url("/feed"))
    assert not result.ok
    assert (
        f"refused to fetch {server.url('/feed')}: 127.0.0.1 is a loopback address" in result.error
    )
    assert "NEWSLETTER_FEED_ALLOW_PRIVATE_NETWORKS" in result.error
    feed = db.scalar(select(Feed))
    assert feed is not None and (feed.last_error, feed.error_count) == (result.error, 1)
    assert server.requests == []


def test_a_host_name_resolving_to_loopback_is_refused(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/feed"] = Route(FEED)
    result = ingest_source(db, settings, server.url("/feed", host="localhost"))
    assert "localhost resolves to" in result.error and "a loopback address" in result.error
    assert server.requests == []


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("http://127.0.0.2:{port}/feed", "127.0.0.2 is a loopback address"),
        ("http://10.1.2.3/feed", "10.1.2.3 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
        ("http://[::ffff:10.0.0.1]/", "::ffff:10.0.0.1 is a private address"),
        ("http://[fe80::1]/", "fe80::1 is a link-local address"),
    ],
)
def test_a_redirect_to_a_private_address_is_refused(
    server: FeedServer, public_loopback: None, target: str, problem: str
) -> None:
    location = target.format(port=server.port)
    server.routes["/feed"] = Route(status=302, location=location)
    with pytest.raises(FeedError, match="refused to fetch") as refused:
        fetch(server.url("/feed"), timeout=5)
    assert problem in str(refused.value)
    assert f"(a redirect of {server.url('/feed')})" in str(refused.value)
    assert [r["path"] for r in server.requests] == ["/feed"]  # nothing followed the redirect


def test_redirects_are_followed_up_to_five_hops(server: FeedServer, public_loopback: None) -> None:
    for hop in range(1, 7):
        server.routes[f"/{hop}"] = Route(status=301, location=f"/{hop + 1}")
    server.routes["/7"] = Route(FEED, etag='"7"')
    fetched = fetch(server.url("/2"), timeout=5)  # five redirects, then the feed
    assert fetched.content == FEED and fetched.url == server.url("/7") and fetched.etag == '"7"'
    server.requests.clear()
    with pytest.raises(FeedError, match="redirects more than 5 times"):
        fetch(server.url("/1"), timeout=5)
    assert len(server.requests) == 6


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file:///etc/passwd", "not an http\\(s\\) URL"),
        ("ftp://example.com/feed", "not an http\\(s\\) URL"),
        ("gopher://x", "not an http\\(s\\) URL"),
        ("http://news.example.com:99999/", "not a valid URL"),
        ("http://" + "x" * 70 + ".example/", "not a valid URL"),
    ],
)
def test_a_redirect_must_stay_on_http(
    server: FeedServer, public_loopback: None, location: str, message: str
) -> None:
    server.routes["/feed"] = Route(status=302, location=location)
    with pytest.raises(FeedError, match=message):
        fetch(server.url("/feed"), timeout=5)


def test_the_connection_itself_refuses_a_private_peer(server: FeedServer) -> None:
    # No check of the URL beforehand: the connection resolves, vets and refuses by itself, which
    # is what a DNS answer changing between a check and the connect would meet.
    server.routes["/feed"] = Route(FEED)
    with public_session() as session, pytest.raises(BlockedAddress, match="loopback"):
        session.get(server.url("/feed"), timeout=5)
    with public_session() as session, pytest.raises(BlockedAddress, match="loopback"):
        session.get(server.url("/feed", host="[::1]"), timeout=5)
    assert server.requests == []


def test_the_vetted_connection_fetches_from_a_public_address(
    server: FeedServer, public_loopback: None
) -> None:
    server.routes["/feed"] = Route(FEED)
    with public_session() as session:
        assert session.get(server.url("/feed"), timeout=5).content == FEED
        with pytest.raises(requests.ConnectionError):
            session.get(server.url("/feed").replace(str(server.port), "1"), timeout=5)


def test_https_names_the_host_while_connecting_to_the_vetted_address(
    tmp_path: Path, public_loopback: None
) -> None:
    cert, key = self_signed_cert(tmp_path)
    secure = FeedServer(tls=server_tls_context(cert, key)).start()
    try:
        secure.routes["/feed"] = Route(FEED)
        with public_session() as session:
            response = session.get(secure.url("/feed", host="localhost"), timeout=5, verify=cert)
            assert response.content == FEED
        # Verification is on: with the system's CAs only, the certificate is refused.
        with public_session() as session, pytest.raises(requests.exceptions.SSLError):
            session.get(secure.url("/feed", host="localhost"), timeout=5)
    finally:
        secure.stop()
    assert secure.server_names[0] == "localhost"  # SNI names the host, not the address


def test_private_networks_when_allowed(server: FeedServer, settings: Settings, db: Session) -> None:
    server.routes["/feed"] = Route(FEED)
    allowed = replace(settings, feed_allow_private_networks=True)
    assert ingest_source(db, allowed, server.url("/feed")).created == 4


def test_a_body_trickling_past_the_deadline_fails(
    server: FeedServer, settings: Settings, db: Session
) -> None:
    server.routes["/slow"] = Route(FEED[:40], trickle=0.25)  # ten seconds for the whole body
    quick = replace(settings, feed_allow_private_networks=True, feed_timeout_seconds=1)
    result = ingest_source(db, quick, server.url("/slow"))
    assert result.error == f"{server.url('/slow')} did not send the whole feed within 1 seconds"


def test_the_deadline_spans_the_redirects(server: FeedServer) -> None:
    server.routes["/a"] = Route(status=302, location="/b", delay=0.4)
    server.routes["/b"] = Route(status=302, location="/c", delay=0.4)
    server.routes["/c"] = Route(FEED, delay=0.4)
    with pytest.raises(FeedError, match="within 1 seconds"):
        fetch(server.url("/a"), timeout=1, allow_private_networks=True)
