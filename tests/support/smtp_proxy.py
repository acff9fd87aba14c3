"""A TCP proxy in front of a real SMTP server that can refuse connections or stall on demand.

Modes:

* ``forward()``: a transparent pipe to the target server;
* ``refuse()``: the listening socket is closed (clients get ECONNREFUSED) and every open
  connection is cut, like a server that went down;
* ``stall()``: open connections are cut, new ones are accepted but nothing is forwarded, ever
  (no greeting), like a server that hangs: clients run into their timeout.

``drops`` counts the connections cut while they were open: each may have lost the answer to a
message the server had accepted (the one case where SMTP itself can deliver a mail twice).
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.smtp import free_port


class FaultProxy:
    """Listen on a free loopback port and relay to ``target_port``, with switchable faults."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.mode = "forward"
        self.drops = 0
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._held: list[socket.socket] = []

    @property
    def url(self) -> str:
        """NEWSLETTER_SMTP_URL through the proxy."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Start listening (forwarding)."""
        self._listen()
        return self

    def forward(self) -> None:
        """Back to normal: relay every new connection."""
        with self._lock:
            self.mode = "forward"
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()
        if self._listener is None:
            self._listen()

    def refuse(self) -> None:
        """Close the listening socket and cut every connection."""
        with self._lock:
            self.mode = "refuse"
            listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._cut_all()

    def stall(self) -> None:
        """Cut open connections; accept new ones but never answer."""
        with self._lock:
            self.mode = "stall"
        self._cut_all()
        if self._listener is None:
            self._listen()

    def stop(self) -> None:
        """Close everything."""
        self.refuse()
        self.forward_held_close()

    def forward_held_close(self) -> None:
        """Close connections held open by stall mode."""
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()

    # -- internals ---------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
                if mode == "stall":
                    self._held.append(client)
                    continue
            if mode != "forward":
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
                with self._lock:
                    self._open.discard(end)

    def _cut_all(self) -> None:
        with self._lock:
            victims = list(self._open)
            self._open.clear()
        # Each relayed connection is two sockets.
        self.drops += len(victims) // 2
        for conn in victims:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()
