"""What the sync benchmarks share: a migrated database of their own, the sandbox, a HubSpot workspace,
one sync in a fresh process, and the machine facts recorded next to every figure."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from scripts import databases

ROOT = Path(__file__).resolve().parents[1]
# A comparison run writes elsewhere, so it never replaces the figures of the committed results.
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORKSPACE = "bench"
DEALS_PROPERTIES = "dealname,amount,dealstage,pipeline,closedate,hubspot_owner_id,hs_lastmodifieddate,createdate"


def recreate_database(name: str) -> str:
    """Drop and re-create database ``name``, migrate it to head, and return its URL."""
    return databases.create_database(name, admin=ADMIN_URL)


def drop_database(name: str) -> None:
    databases.drop_database(name, admin=ADMIN_URL)


class Sandbox:
    """``python -m sandbox`` on a free port, for the length of a ``with`` block."""

    def __enter__(self) -> Sandbox:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("sandbox listening on "):
            self.process.kill()
            raise RuntimeError(f"sandbox did not start: {line!r}")
        self.url = line.split()[-1]
        # The operator's setting, read by the syncs of this process and of those it starts.
        os.environ["SYNC_VENDOR_SANDBOX_URL"] = self.url
        # The port is bound before the server accepts connections: wait until it answers.
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{self.url}/_sandbox/health", timeout=1).raise_for_status()
                return self
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.wait(10)

    def reset_deals(self, deals: int) -> None:
        """A HubSpot portal of ``deals`` deals (other objects empty), rate limits not enforced."""
        body = {
            "sizes": {"hubspot": {"deals": deals, "contacts": 0, "companies": 0, "tasks": 0}},
            "enforce_limits": False,
        }
        requests.post(f"{self.url}/_sandbox/reset", json=body, timeout=60).raise_for_status()

    def hubspot_connection(self) -> dict[str, Any]:
        return requests.get(f"{self.url}/_sandbox/connections", timeout=10).json()["hubspot"]


# Every platform limit of HubSpot: a vendor's entry does not cover its scopes, and search has its own.
HUBSPOT_LIMITS = ("hubspot", "hubspot:search")


def vendor_limits_off(*names: str) -> None:
    """The operator's switch for a sandbox a benchmark alone uses: no platform rate limit for ``names``
    (``vendor`` or ``vendor:scope``; for this process and the ones it starts)."""
    os.environ["SYNC_RATE_LIMITS"] = json.dumps(dict.fromkeys(names, False))


def engine_under_test() -> dict[str, str | None]:
    """The checkout whose engine this process imports (the first on PYTHONPATH, else this one) and its
    commit, recorded next to the figures of a before/after comparison."""
    checkout = Path(importlib.util.find_spec("definitions").origin).resolve().parent
    head = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return {"checkout": str(checkout), "commit": head.stdout.strip() or None}


def platform_owns_endpoints() -> bool:
    """Whether the engine under test takes vendor endpoints and rate limits from the operator's settings
    (SYNC_VENDOR_SANDBOX_URL, SYNC_RATE_LIMITS). The engine before the tenant boundary (52e0947, measured
    in before/after runs) took both from the connection's config, as ``base_url`` and ``rate_limit``."""
    return importlib.util.find_spec("resources.connection_config") is not None


def tenant_config(offered: dict[str, Any]) -> dict[str, Any]:
    """The sandbox's offered config less its endpoints, which are the operator's setting, not a tenant's."""
    from resources.connection_config import ENDPOINT_KEYS

    return {k: v for k, v in offered["config"].items() if k not in ENDPOINT_KEYS}


def prepare_hubspot_workspace(url: str, sandbox: Sandbox) -> None:
    """Empty warehouse tables and one HubSpot connection for WORKSPACE, its rate limit off."""
    from resources.control_plane import upsert_connection, upsert_workspace
    from resources.schema import metadata

    offered = sandbox.hubspot_connection()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {', '.join(t.name for t in reversed(metadata.sorted_tables))} CASCADE")
    upsert_workspace(engine, WORKSPACE, "Bench")
    if platform_owns_endpoints():
        vendor_limits_off(*HUBSPOT_LIMITS)
        config = tenant_config(offered)
    else:
        config = {**offered["config"], "rate_limit": False}
    upsert_connection(engine, WORKSPACE, "hubspot", offered["credentials"], config)
    engine.dispose()


def count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        value = conn.exec_driver_sql(sql).scalar_one()
    engine.dispose()
    return int(value)


def peak_rss_mb() -> float:
    """Peak RSS of this process or of any child it waited for (a worker pool), in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def run_child(script: Path, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``script --child …`` in a fresh interpreter; its last stdout line is a JSON report. The child
    imports the same engine as this process (PYTHONPATH, else this checkout)."""
    full_env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT), **(env or {})}
    out = subprocess.run(
        [sys.executable, str(script), "--child", *args], cwd=ROOT, env=full_env, capture_output=True, text=True
    )
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{script.name} child {args} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(lines[-1])


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_1m": os.getloadavg()[0],
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {**payload, "engine_under_test": engine_under_test()}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def sync_resources(resource_key: str, resource: Any, warehouse_url: str | None = None) -> dict[str, Any]:
    """The resources a connector's assets need when a benchmark materializes them in-process, as
    definitions.py wires them (the notifier writes nothing for a workspace without a webhook)."""
    from resources.notifier import NotifierResource
    from resources.warehouse import WarehouseResource

    warehouse = WarehouseResource(url=warehouse_url) if warehouse_url else WarehouseResource()
    return {"warehouse": warehouse, "notifier": NotifierResource(), resource_key: resource}
