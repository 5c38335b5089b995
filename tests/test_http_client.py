"""The shared vendor HTTP client reads the environment's proxy settings once per host, and still
honours them: HTTP_PROXY routes calls through the proxy, NO_PROXY exempts a host. (The listeners are on
loopback, so the operator's SYNC_EGRESS_ALLOWED_HOSTS lets the egress guard reach them.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resources.http import RetrySettings, VendorClient
from resources.rate_limit import CredentialLimiter, SlotStore


class Recorder(BaseHTTPRequestHandler):
    """Answers every GET; a forward proxy is sent the absolute URL as the request target."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.seen.append(self.path)
        body = f'{{"served_by": "{self.server.name}"}}'.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


def serve(name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    server.name, server.seen = name, []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def servers(monkeypatch) -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    vendor, proxy = serve("vendor"), serve("proxy")
    monkeypatch.setenv("SYNC_EGRESS_ALLOWED_HOSTS", f"127.0.0.1:{vendor.server_port},127.0.0.1:{proxy.server_port}")
    yield vendor, proxy
    vendor.shutdown()
    proxy.shutdown()


def client(base_url: str) -> VendorClient:
    return VendorClient(base_url, CredentialLimiter(SlotStore(None), "test", None), RetrySettings(max_retries=0))


def test_http_proxy_from_the_environment_carries_every_call(servers, monkeypatch):
    vendor, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    base = f"http://vendor.example:{vendor.server_port}"
    api = client(base)
    assert [api.request("GET", f"/v1/items?page={n}").json() for n in (1, 2)] == [{"served_by": "proxy"}] * 2
    assert proxy.seen == [f"{base}/v1/items?page=1", f"{base}/v1/items?page=2"]
    assert vendor.seen == []


def test_no_proxy_exempts_the_vendor_host(servers, monkeypatch):
    vendor, proxy = servers
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_port}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    api = client(f"http://127.0.0.1:{vendor.server_port}")
    assert api.request("GET", "/v1/items").json() == {"served_by": "vendor"}
    assert (vendor.seen, proxy.seen) == (["/v1/items"], [])
