"""Runs `python -m sandbox --port 0` as a real subprocess once per session; each test gets it reset."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "sandbox listening on http://127.0.0.1:PORT"
        assert line.startswith("sandbox listening on "), line
        url = line.split()[-1]
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(f"{url}/_sandbox/health", timeout=1).json() == {"ok": True}:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "sandbox did not become healthy"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Sandbox:
    """Thin test helper over the control API and the HubSpot endpoints."""

    def __init__(self, url: str):
        self.url = url
        self.http = requests.Session()
        self.hubspot = f"{url}/hubspot"

    def reset(self, seed: int = 42, sizes: dict[str, int] | None = None, enforce_limits: bool = True) -> None:
        body = {"seed": seed, "sizes": {"hubspot": sizes or {}}, "enforce_limits": enforce_limits}
        r = self.http.post(f"{self.url}/_sandbox/reset", json=body)
        assert r.status_code == 200, r.text

    def credentials(self) -> dict[str, str]:
        return self.http.get(f"{self.url}/_sandbox/connections").json()["hubspot"]["credentials"]

    def refresh(self, **override: str) -> requests.Response:
        form = {"grant_type": "refresh_token", **self.credentials(), **override}
        return self.http.post(f"{self.hubspot}/oauth/v1/token", data=form)

    def token(self) -> str:
        r = self.refresh()
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def control(self, method: str, path: str, json: Any = None) -> Any:
        r = self.http.request(method, f"{self.url}/_sandbox/{path}", json=json)
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def sandbox(sandbox_url: str) -> Sandbox:
    sb = Sandbox(sandbox_url)
    sb.reset()
    return sb
