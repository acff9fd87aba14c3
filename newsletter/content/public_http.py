"""HTTP that reaches public addresses only: the feed fetcher's guard against SSRF.

A feed's URL comes from whoever configures the site and its redirects from the feed's server, so
either could aim the worker at 127.0.0.1, the LAN or a cloud metadata service (169.254.169.254).
The check is made where the socket is opened: each connection resolves the host once, refuses
unless every address is public, and connects to the address it vetted, so a DNS answer that
changes between a check and the connect (rebinding) has nothing to slip through. TLS still names
and verifies the host, not the address.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# IPv6 prefixes that carry an IPv4 address a gateway would connect to (NAT64, RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A host resolves to an address that is not public; the message names both."""


def address_problem(address: IPAddress) -> str:
    """What kind of non-public address ``address`` is ("a loopback address"), or "" if public."""
    translated = _translated_ipv4(address)
    if translated is not None:
        return address_problem(translated)
    embedded = _tunnelled_ipv4(address)
    problem = address_problem(embedded) if embedded is not None else ""
    for kind, flagged in (
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
        ("a non-global", not address.is_global),
    ):
        if flagged and not problem:
            problem = f"{kind} address"
    return problem


def _translated_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 address reaches: exactly that one."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _tunnelled_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 end of a 6to4 or Teredo address, checked as well as the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def public_addresses(host: str, port: int) -> list[tuple[Any, ...]]:
    """The host's socket addresses, all public; BlockedAddress when any is not.

    Refusing a name with any private address (rather than using the public ones) keeps the
    answer simple: a real public site never publishes one.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in infos:
        address = _address(str(sockaddr[0]))
        problem = address_problem(address)
        if problem:
            literal = _is_address(host)
            shown = f"{host} is" if literal else f"{host} resolves to {address},"
            raise BlockedAddress(f"{shown} {problem}, not a public one")
    return [info[4] for info in infos]


def _address(text: str) -> IPAddress:
    """An address from getaddrinfo or getpeername (an IPv6 zone such as ``%eth0`` dropped)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def _is_address(host: str) -> bool:
    """True when ``host`` is an address literal rather than a name."""
    try:
        _address(host)
    except ValueError:
        return False
    return True


def check_host(host: str, port: int) -> None:
    """BlockedAddress unless every address of ``host`` is public (socket.gaierror if none)."""
    public_addresses(host, port)


def _connect(conn: HTTPConnection) -> socket.socket:
    """A socket to a vetted address of ``conn``'s host, with urllib3's own errors."""
    try:
        addresses = public_addresses(conn._dns_host, conn.port)
    except socket.gaierror as exc:
        raise NameResolutionError(conn.host, conn, exc) from exc
    failure: OSError | None = None
    for sockaddr in addresses:
        try:
            sock = connection.create_connection(
                (str(sockaddr[0]), conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
            ) from exc
        except OSError as exc:
            failure = exc
            continue
        _check_peer(sock)
        sys.audit("http.client.connect", conn, conn.host, conn.port)  # as urllib3 does
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {failure}")


def _check_peer(sock: socket.socket) -> None:
    """Close and refuse a socket whose peer is not public (whatever was resolved before)."""
    peer = _address(str(sock.getpeername()[0]))
    problem = address_problem(peer)
    if problem:
        sock.close()
        raise BlockedAddress(f"connected to {peer}, {problem}, not a public one")


class _PublicHTTPConnection(HTTPConnection):
    """An http connection to a vetted public address."""

    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _PublicHTTPSConnection(HTTPSConnection):
    """An https connection to a vetted public address; SNI and the certificate name the host."""

    def _new_conn(self) -> socket.socket:
        return _connect(self)


class _PublicHTTPPool(HTTPConnectionPool):
    """A pool of public-only http connections."""

    ConnectionCls = _PublicHTTPConnection


class _PublicHTTPSPool(HTTPSConnectionPool):
    """A pool of public-only https connections."""

    ConnectionCls = _PublicHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose every connection goes to a vetted public address."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """The usual pool manager, with pools that make public-only connections."""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _PublicHTTPPool,
            "https": _PublicHTTPSPool,
        }


def public_session() -> requests.Session:
    """A session that connects to public addresses only and ignores proxy variables.

    A proxy from the environment would be the one connecting, unchecked; and its own address
    is usually private, so it would be refused anyway.
    """
    session = requests.Session()
    session.trust_env = False
    adapter = PublicOnlyAdapter(max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
