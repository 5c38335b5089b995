"""Run the sandbox in-process on a background thread (tests, benchmarks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from .app import build_app


def bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def make_server(
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
) -> tuple[uvicorn.Server, socket.socket]:
    # Binding the socket ourselves lets port 0 pick a free port we know before serving starts.
    sock = bind(host, port)
    # date_header=False: the gate sends the one Date header, from the vendor's clock (sandbox.gate).
    config = uvicorn.Config(build_app(seed=seed), log_level="warning", workers=1, access_log=False, date_header=False)
    return uvicorn.Server(config), sock


def start_in_thread(port: int = 0, seed: int = 0, host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Serve on a daemon thread; returns (base_url like http://127.0.0.1:PORT, stop)."""
    server, sock = make_server(host, port, seed)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sandbox")
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("sandbox server failed to start")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

    return f"http://{host}:{sock.getsockname()[1]}", stop
