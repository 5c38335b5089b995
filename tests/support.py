"""Test helpers: a client for the sandbox control API and a way to run connector syncs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from dagster import AssetKey, AssetRecordsFilter, AssetsDefinition, DagsterInstance, materialize

from resources.connection_config import ENDPOINT_KEYS
from resources.db import get_engine
from resources.notifier import NotifierResource
from resources.warehouse import WarehouseResource
from sync_assets import CONNECTORS

REPO = Path(__file__).resolve().parent.parent
SANDBOX_URL_ENV = "SYNC_VENDOR_SANDBOX_URL"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not come up within {timeout_s}s")
        time.sleep(0.1)


@dataclass
class Sandbox:
    """The vendor simulators, driven through their control API."""

    url: str
    process: subprocess.Popen | None = None

    @classmethod
    def start(cls) -> Sandbox:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{url}/_sandbox/health")
        return cls(url, process)

    def stop(self) -> None:
        if self.process:
            self.process.terminate()
            self.process.wait(10)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = requests.request(method, f"{self.url}{path}", timeout=60, **kwargs)
        if response.status_code >= 400:  # the sandbox says why: keep it in the failure
            sent = kwargs.get("json") or ""
            raise AssertionError(f"{method} {path} {sent} -> {response.status_code} {response.text}")
        return response.json() if response.content else None

    def reset(self, seed: int = 7, sizes: dict[str, dict[str, int]] | None = None, enforce_limits: bool = True):
        return self._call(
            "POST", "/_sandbox/reset", json={"seed": seed, "sizes": sizes or {}, "enforce_limits": enforce_limits}
        )

    def connections(self, tenant: str = "default") -> dict[str, Any]:
        """What a tenant would enter per vendor: the credentials the sandbox issued, and the config less
        the endpoints (the sandbox offers them, but endpoints are the operator's SYNC_VENDOR_SANDBOX_URL)."""
        offered = self._call("GET", "/_sandbox/connections", params={"tenant": tenant})
        return {
            name: {
                "credentials": c["credentials"],
                "config": {k: v for k, v in c["config"].items() if k not in ENDPOINT_KEYS},
            }
            for name, c in offered.items()
        }

    def mutate(self, vendor: str, entity: str, count: int = 0, **extra: Any) -> dict[str, Any]:
        return self._call("POST", f"/_sandbox/{vendor}/mutate", json={"entity": entity, "count": count, **extra})

    def truth(self, vendor: str, entity: str) -> list[dict[str, Any]]:
        """The vendor's records as they are, whatever the visibility knobs: id, modified, state, merged_into."""
        return self._call("GET", f"/_sandbox/{vendor}/truth", params={"entity": entity})["records"]

    def faults(self, vendor: str, **faults: Any) -> None:
        self._call("POST", f"/_sandbox/{vendor}/faults", json=faults)

    def clear_faults(self, vendor: str) -> None:
        self._call("DELETE", f"/_sandbox/{vendor}/faults")

    def requests(self, vendor: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/_sandbox/{vendor}/requests")["requests"]

    def clear_requests(self, vendor: str) -> None:
        self._call("DELETE", f"/_sandbox/{vendor}/requests")

    def limits(self, vendor: str, limit: int | None, window_s: float = 60.0) -> None:
        self._call("POST", f"/_sandbox/{vendor}/limits", json={"limit": limit, "window_s": window_s})


def sync_resources(**overrides: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {
        "warehouse": WarehouseResource(),
        "notifier": NotifierResource(),
        **{c.name: c.resource for c in CONNECTORS},
    }
    resources.update(overrides)
    return resources


def run_sync(
    instance: DagsterInstance,
    assets: AssetsDefinition | list[AssetsDefinition],
    workspace: str,
    *,
    tags: dict[str, str] | None = None,
    selection: list[str] | None = None,
    run_config: dict[str, Any] | None = None,
    **resource_overrides: Any,
):
    """Materialize connector assets for one workspace partition, as a run would."""
    return materialize(
        assets if isinstance(assets, list) else [assets],
        instance=instance,
        partition_key=workspace,
        resources=sync_resources(**resource_overrides),
        tags=tags,
        selection=selection,
        run_config=run_config,
        raise_on_error=False,
    )


def latest_metadata(instance: DagsterInstance, asset: str, workspace: str) -> dict[str, Any]:
    """The metadata of the latest materialization of ``asset`` ("hubspot/deals") for a workspace."""
    record = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(asset.split("/")), asset_partitions=[workspace]), limit=1
    ).records[0]
    return {k: v.value for k, v in record.asset_materialization.metadata.items()}


def wait_until(predicate: Callable[[], T], timeout_s: float = 60, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise TimeoutError(f"{what} not reached within {timeout_s}s")


def rows(sql: str, **params: Any) -> list[tuple]:
    from sqlalchemy import text

    from resources.settings import warehouse_url

    with get_engine(warehouse_url()).begin() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def assert_evenly_spaced(stamps_s: list[float], interval_s: float) -> list[float]:
    """Requests a limiter spaced ``interval_s`` apart, as the receiver stamped their arrival: on average
    at least that far apart (the rate), and no two much closer (a burst). One gap may still be short
    by the scheduling jitter of a loaded machine (seen: 20 ms unloaded, over 90 ms at load 20 on 2 cores): a
    request that leaves late shortens the gap after it. Half the interval still tells spacing from a burst
    (gaps of milliseconds). Returns the gaps."""
    gaps = [b - a for a, b in zip(stamps_s, stamps_s[1:], strict=False)]
    mean = (stamps_s[-1] - stamps_s[0]) / len(gaps)
    assert mean >= interval_s * 0.99, f"mean gap {mean:.3f} s: faster than one request per {interval_s} s"
    assert min(gaps) >= interval_s * 0.5, f"gap of {min(gaps):.3f} s: a burst, not {interval_s} s spacing"
    return gaps
