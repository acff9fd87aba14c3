"""The Flask app served on a loopback port from a thread, for Chromium tests of single pages.

Werkzeug's own server (threaded), over the test's settings (SQLite under tmp_path): enough for a
browser to load pages, their CSS and scripts, and post forms. Tests of the whole service (gunicorn,
a worker, PostgreSQL) use tests/support/worker.py instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from flask import Flask
from werkzeug.serving import make_server

from newsletter import create_app
from newsletter.settings import Settings
from tests.support.smtp import free_port


@contextmanager
def live_app(settings: Settings) -> Iterator[tuple[Flask, str]]:
    """Serve an app over ``settings`` (base URL set to where it listens); yields (app, url)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(replace(settings, base_url=url))
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, url
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
