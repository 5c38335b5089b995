"""A real local webhook receiver for tests and benchmarks: records every request, then answers with the
configured status after the configured delay. Stopping it closes the port (connection refused)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support import free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: str
    path: str
    at: float  # time.time() when the request arrived
    status: int
    answered: bool  # False when the sender had gone (timed out) before the answer

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def event(self) -> str:
        return self.envelope["event"]


class Receiver:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.status = 200
        self.delay_s = 0.0
        self.received: list[Received] = []
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/sales-sync?token=receiver-token"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                status, delay = receiver.status, receiver.delay_s
                if delay:
                    time.sleep(delay)
                answered = True
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    answered = False
                record = Received(dict(self.headers.items()), body, self.path, arrived, status, answered)
                with receiver._lock:
                    receiver.received.append(record)
                    receiver._lock.notify_all()

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def events(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event is None or r.event == event]

    def wait_for(self, event: str, count: int = 1, timeout_s: float = 15.0) -> list[Received]:
        with self._lock:
            self._lock.wait_for(lambda: len([r for r in self.received if r.event == event]) >= count, timeout_s)
        return self.events(event)
