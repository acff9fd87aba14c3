"""Import files kept on the server between the preview and the "import N readers" button.

Why on the server and not sent back by the browser: what the editor confirms must be exactly the
file that was judged, and a client that posts rows back could change them after the check. So
the upload is written once to ``<data dir>/imports/<random id>.csv`` with a JSON note beside it
naming the console session that uploaded it, the list, the mode and the consent source. The
apply step takes only the id; a file is found only by the session that uploaded it (another
editor, or the same editor after logging in again, gets "upload it again"), is claimed by one
apply only, and is deleted after the apply or, unused, after :data:`KEEP` (every upload and
apply sweeps older files away). The
data dir is the one every web process of an installation shares (NEWSLETTER_DATA_DIR).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

from newsletter.settings import Settings

KEEP = 3600  # seconds an uploaded file waits for its "import" button
CHUNK = 64 * 1024
_ID = re.compile(r"[A-Za-z0-9_-]{20,64}")


class UploadTooLarge(ValueError):
    """The file is larger than NEWSLETTER_IMPORT_MAX_BYTES."""


@dataclass(frozen=True)
class Upload:
    """An uploaded file waiting for its apply: where it is and what the editor chose."""

    id: str
    console_session_id: int
    newsletter_slug: str
    mode: str
    source: str
    filename: str

    def path(self, settings: Settings) -> Path:
        """The file's bytes on disk."""
        return folder(settings) / f"{self.id}.csv"


def folder(settings: Settings) -> Path:
    """Where uploads wait (made on first use)."""
    path = settings.data_dir / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sweep(settings: Settings, now: float | None = None) -> int:
    """Delete uploads older than :data:`KEEP`; how many files went."""
    cutoff = (now if now is not None else time.time()) - KEEP
    gone = 0
    for path in folder(settings).iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                gone += 1
        except FileNotFoundError:  # another process swept it first
            continue
    return gone


def store(
    settings: Settings,
    stream: BinaryIO,
    *,
    console_session_id: int,
    newsletter_slug: str,
    mode: str,
    source: str,
    filename: str,
) -> Upload:
    """Copy an uploaded file to disk (refused past the import limit, nothing left behind)."""
    sweep(settings)
    upload = Upload(
        id=secrets.token_urlsafe(24),
        console_session_id=console_session_id,
        newsletter_slug=newsletter_slug,
        mode=mode,
        source=source,
        filename=filename[:200],
    )
    target = upload.path(settings)
    written = 0
    try:
        with target.open("xb") as out:
            while chunk := stream.read(CHUNK):
                written += len(chunk)
                if written > settings.import_max_bytes:
                    raise UploadTooLarge(f"larger than {settings.import_max_bytes} bytes")
                out.write(chunk)
        _note(settings, upload.id).write_text(json.dumps(asdict(upload)), encoding="utf-8")
    except BaseException:
        discard(settings, upload.id)
        raise
    return upload


def load(settings: Settings, upload_id: str, console_session_id: int) -> Upload | None:
    """The upload with this id if this console session made it and it is not too old."""
    sweep(settings)
    if not _ID.fullmatch(upload_id):
        return None
    try:
        data = json.loads(_note(settings, upload_id).read_text(encoding="utf-8"))
        upload = Upload(**data)
    except (OSError, ValueError, TypeError):
        return None
    if upload.console_session_id != console_session_id or not upload.path(settings).is_file():
        return None
    return upload


def claim(settings: Settings, upload: Upload) -> Path | None:
    """Take the file for applying it, once: a rename, which only one request can win (a
    double-click on "import" imports once; the other request finds nothing to import)."""
    target = folder(settings) / f"{upload.id}.claimed"
    try:
        upload.path(settings).rename(target)
    except FileNotFoundError:
        return None
    return target


def discard(settings: Settings, upload_id: str) -> None:
    """Delete an upload, claimed or not, and its note (gone already is fine)."""
    if not _ID.fullmatch(upload_id):
        return
    for suffix in (".csv", ".claimed", ".json"):
        (folder(settings) / f"{upload_id}{suffix}").unlink(missing_ok=True)


def _note(settings: Settings, upload_id: str) -> Path:
    return folder(settings) / f"{upload_id}.json"
