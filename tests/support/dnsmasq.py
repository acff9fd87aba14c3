"""A real DNS server for tests: a private dnsmasq answering the TXT records a test gives it.

Debian's dnsmasq-base, started on a free port of 127.0.0.1 with no upstream and no hosts file,
so it answers exactly the records given (and REFUSED for anything else), never the network.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import dns.exception
import dns.resolver
import pytest

from tests.support.smtp import free_port

DNSMASQ = "/usr/sbin/dnsmasq"
CHUNK = 255  # one TXT character-string holds at most 255 octets
PROBE = "probe.dnsmasq.test"  # answered once the server is up


def _txt_line(name: str, value: str) -> str:
    """A dnsmasq txt-record line, the value split into character-strings as a zone does."""
    chunks = [value[i : i + CHUNK] for i in range(0, len(value), CHUNK)] or [""]
    return f"txt-record={name}," + ",".join(f'"{chunk}"' for chunk in chunks)


@contextmanager
def dns_server(
    folder: Path, records: Mapping[str, Sequence[str]], zones: Sequence[str] = ()
) -> Iterator[str]:
    """Serve ``records`` (name → TXT values) until the block ends; yields ``127.0.0.1:port``.

    Names under ``zones`` that hold no record are answered NXDOMAIN, as their own server would;
    any other name is REFUSED (no answer to be had).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which(DNSMASQ) is None:
        pytest.skip("dnsmasq is not installed: apt-get install dnsmasq-base")
    port = free_port()
    lines = [
        f"port={port}",
        "listen-address=127.0.0.1",
        "bind-interfaces",
        "no-resolv",
        "no-hosts",
        "no-daemon",
        f"pid-file={folder / 'dnsmasq.pid'}",
    ]
    lines += [_txt_line(name, value) for name, values in records.items() for value in values]
    lines.append(_txt_line(PROBE, "up"))
    lines += [f"local=/{zone}/" for zone in zones]
    config = folder / "dnsmasq.conf"
    config.write_text("\n".join(lines) + "\n")
    server = subprocess.Popen(
        [DNSMASQ, "-C", str(config), "--keep-in-foreground"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until_answering(port, server)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_until_answering(port: int, server: subprocess.Popen[bytes]) -> None:
    """Block until the server answers the probe record."""
    ask = dns.resolver.Resolver(configure=False)
    ask.nameservers = ["127.0.0.1"]
    ask.nameserver_ports = {"127.0.0.1": port}
    ask.lifetime = 0.5
    deadline = time.monotonic() + 15
    while True:
        try:
            ask.resolve(PROBE, "TXT")
            return
        except dns.exception.DNSException:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("dnsmasq did not start") from None
            time.sleep(0.1)
