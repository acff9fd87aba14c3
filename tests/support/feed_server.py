"""A real HTTP server for feed tests: fixtures by path, conditional GET, redirects, slow bodies."""

from __future__ import annotations

import contextlib
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    """What the server answers on one path."""

    body: bytes = b""
    content_type: str = "application/rss+xml; charset=utf-8"
    status: int = 200
    etag: str = ""
    last_modified: str = ""
    delay: float = 0.0  # before the status line
    location: str = ""  # a Location header (give a 3xx status with it)
    trickle: float = 0.0  # seconds between the body's bytes, sent one at a time


@dataclass
class FeedServer:
    """http.server in a thread on 127.0.0.1, honouring ETag / If-Modified-Since with 304."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)
    tls: ssl.SSLContext | None = None  # serve https with this context
    server_names: list[str | None] = field(default_factory=list)  # SNI of each TLS handshake

    def start(self) -> FeedServer:
        """Listen on a free port of 127.0.0.1."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                headers = {k.lower(): v for k, v in self.headers.items()}
                server.requests.append({"path": self.path, **headers})
                route = server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    time.sleep(route.delay)
                validators_match = (route.etag and headers.get("if-none-match") == route.etag) or (
                    route.last_modified and headers.get("if-modified-since") == route.last_modified
                )
                if validators_match:
                    self.send_response(304)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                for name, value in (
                    ("ETag", route.etag),
                    ("Last-Modified", route.last_modified),
                    ("Location", route.location),
                ):
                    if value:
                        self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(OSError):  # the client gave up (timeout tests)
                    if route.trickle:
                        self.trickle(route.body, route.trickle)
                    else:
                        self.wfile.write(route.body)

            def trickle(self, body: bytes, pause: float) -> None:
                for index in range(len(body)):
                    self.wfile.write(body[index : index + 1])
                    self.wfile.flush()
                    time.sleep(pause)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _context: self.server_names.append(name)
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    @property
    def port(self) -> int:
        """The port it listens on."""
        port: int = self.httpd.server_address[1]
        return port

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """A URL of ``path`` on this server (``host`` as given, e.g. localhost)."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self) -> None:
        """Shut down and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
