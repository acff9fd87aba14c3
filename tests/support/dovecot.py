"""A real IMAP and POP3 server for tests: a private Dovecot instance on free ports.

Started from Debian's dovecot-imapd and dovecot-pop3d with a configuration of its own in a
temporary folder (its own base_dir, so the machine's Dovecot, if any, is never touched), one
account with a Maildir, plaintext login allowed on loopback only. Mail is put into the
mailbox by writing Maildir files, as an MTA's local delivery would.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.smtp import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "bounces@news.example.com"
PASSWORD = "mailbox-password-123"
# Mail processes must not run as root; nobody owns the Maildir.
MAIL_UID, MAIL_GID = 65534, 65534

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = nobody
default_internal_group = nogroup
default_login_user = nobody
first_valid_uid = {uid}
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@dataclass(frozen=True)
class Mailbox:
    """The running server's ports, and the account's Maildir."""

    imap_port: int
    pop3_port: int
    maildir: Path

    def url(self, scheme: str, password: str = PASSWORD, folder: str = "") -> str:
        """A mailbox URL for the account (user and password percent-encoded)."""
        port = self.imap_port if scheme.startswith("imap") else self.pop3_port
        user = USER.replace("@", "%40")
        return f"{scheme}://{user}:{password}@127.0.0.1:{port}/{folder}"

    def deliver(self, raw: bytes) -> None:
        """Put one message into the inbox, as local delivery does (tmp/, then new/)."""
        name = f"{time.time():.6f}.{uuid.uuid4().hex}.test"
        tmp = self.maildir / "tmp" / name
        tmp.write_bytes(raw.replace(b"\r\n", b"\n"))
        os.chown(tmp, MAIL_UID, MAIL_GID)
        tmp.rename(self.maildir / "new" / name)

    def count(self) -> int:
        """Messages in the inbox that are not flagged deleted (new/ and cur/)."""
        files = [*(self.maildir / "new").iterdir(), *(self.maildir / "cur").iterdir()]
        return sum(1 for f in files if not _flags(f.name).count("T"))

    def seen(self) -> int:
        """Messages flagged \\Seen."""
        return sum(1 for f in (self.maildir / "cur").iterdir() if "S" in _flags(f.name))


def _flags(name: str) -> str:
    """The Maildir flags of a file name (after ``:2,``)."""
    return name.partition(":2,")[2]


def _listening(port: int) -> bool:
    """Does something accept connections on 127.0.0.1:port?"""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def dovecot() -> Iterator[Mailbox]:
    """A private Dovecot serving one account; skips if Dovecot is not installed."""
    # Its own folder straight under /tmp: Dovecot's auth and mail processes run as nobody and
    # must traverse to it, which pytest's private tmp_path (mode 0700 parents) would not allow.
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    try:
        with _serve(root) as mailbox:
            yield mailbox
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _serve(root: Path) -> Iterator[Mailbox]:
    """Dovecot serving one account from ``root``."""
    if not (Path(DOVECOT).exists() and Path("/usr/lib/dovecot/pop3").exists()):
        pytest.skip(
            "Dovecot (IMAP, POP3) is not installed: apt-get install dovecot-imapd dovecot-pop3d"
        )
    for sub in ("run", "state", "home", "mail"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    maildir = root / "mail" / USER
    for sub in ("tmp", "new", "cur"):
        (maildir / sub).mkdir(parents=True)
    owned = [root / "mail", root / "home", maildir, *(maildir / s for s in ("tmp", "new", "cur"))]
    for path in owned:
        os.chown(path, MAIL_UID, MAIL_GID)
    root.chmod(0o755)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    imap, pop3 = free_port(), free_port()
    config = root / "dovecot.conf"
    config.write_text(CONFIG.format(root=root, uid=MAIL_UID, gid=MAIL_GID, imap=imap, pop3=pop3))
    server = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while not (_listening(imap) and _listening(pop3)):
            if server.poll() is not None or time.monotonic() > deadline:
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                err = server.stderr.read().decode() if server.stderr else ""
                raise RuntimeError(f"Dovecot did not start: {err} {log}")
            time.sleep(0.1)
        yield Mailbox(imap, pop3, maildir)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if server.stderr is not None:
            server.stderr.close()
