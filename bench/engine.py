"""Engine overhead: the CPU cost per record of our sync path, with the vendor taken out.

    .venv/bin/python bench/engine.py [--records 50000] [--small 1000] [--repeat 3]

The profile: bench/README.md ("Engine overhead") runs this under py-spy.

The HubSpot deals list is captured once from the sandbox (raw response bodies, 100 records a page),
untimed. Then, in this one process, the real ``hubspot/deals`` asset is materialized again and again
(``dagster.materialize``, full sync, a fresh ephemeral instance and empty warehouse tables each time)
with the HubSpot resource swapped for one whose client replays those bodies: every request returns
the next captured body, so the real ``list_objects`` (JSON decode, ``HubSpotObject`` validation), the
real ``ConnectorSync`` loop (transform to ``DealRow``, error capture, watermark bookkeeping, progress
logs) and the real ``commit_page`` (loader: de-duplication, binary COPY, upsert; sync_log heartbeat)
run, with no HTTP and no sandbox.

Counted: ``time.process_time()`` of this process (user + system CPU of every thread), i.e. all the
Python-side work above, psycopg's encoding included. Not counted: the Postgres server's own work (a
separate process; it shows in the wall-clock figure, which is also reported) and the vendor.
The fixed cost of a run (Dagster's run/step machinery, sync_log rows, definitions) is taken out by
differencing: per record = (cost of a --records run - cost of a --small run) / (the record difference).
Each repetition runs small then large; the figure is the median over repetitions, after one warm-up.
Target (issue 10): < 30 us/record CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: make the repo importable

import requests  # noqa: E402

from bench.support import (  # noqa: E402
    DEALS_PROPERTIES,
    WORKSPACE,
    Sandbox,
    count,
    machine,
    prepare_hubspot_workspace,
    recreate_database,
    write_results,
)

DB_NAME = "bench_engine"
TARGET_US_PER_RECORD = 30.0


def capture_pages(sandbox: Sandbox, records: int) -> list[bytes]:
    """The raw list-endpoint bodies for ``records`` deals, as the sandbox serves them."""
    sandbox.reset_deals(records)
    connection = sandbox.hubspot_connection()
    base, creds = connection["config"]["base_url"], connection["credentials"]
    token = requests.post(f"{base}/oauth/v1/token", data={"grant_type": "refresh_token", **creds}, timeout=30)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    bodies: list[bytes] = []
    after: str | None = None
    while True:
        params = {"limit": 100, "properties": DEALS_PROPERTIES} | ({"after": after} if after else {})
        response = session.get(f"{base}/crm/v3/objects/deals", params=params, timeout=30)
        response.raise_for_status()
        bodies.append(response.content)
        after = ((response.json().get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return bodies


def first_pages(bodies: list[bytes], records: int) -> list[bytes]:
    """The first ``records`` worth of pages, the last one without a next-page cursor."""
    pages = bodies[: max(1, records // 100)]
    last = json.loads(pages[-1])
    last.pop("paging", None)
    return [*pages[:-1], json.dumps(last).encode()]


class _CannedResponse:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def json(self) -> Any:
        return json.loads(self._body)


def replay_resource(bodies: list[bytes]) -> Any:
    """A stand-in for HubSpotResource whose client answers every request with the next captured body."""
    from resources.http import RetrySettings
    from resources.hubspot import HubSpotClient

    class ReplayingClient(HubSpotClient):
        def __init__(self, log: Any) -> None:
            super().__init__(
                {"access_token": "replay"}, None, base_url="http://replay", limiter=None, retry=RetrySettings(), log=log
            )
            self._bodies = iter(bodies)

        def request(self, method: str, path: str, **_: Any) -> Any:
            self.api_calls += 1
            return _CannedResponse(next(self._bodies))

    class ReplayResource:
        def client_for(self, connection: Any, log: Any = None) -> ReplayingClient:
            return ReplayingClient(log)

    return ReplayResource()


def sync(url: str, sandbox: Sandbox, bodies: list[bytes], records: int) -> tuple[float, float]:
    """One materialize of hubspot/deals over replayed pages: (CPU seconds, wall seconds)."""
    from dagster import AssetKey, DagsterInstance, materialize

    from definitions import connector_assets
    from resources.warehouse import WarehouseResource

    prepare_hubspot_workspace(url, sandbox)
    assets = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("workspace", [WORKSPACE])
    resources = {"warehouse": WarehouseResource(url=url), "hubspot": replay_resource(first_pages(bodies, records))}
    cpu, wall = time.process_time(), time.perf_counter()
    result = materialize(
        [assets], instance=instance, partition_key=WORKSPACE, selection=["hubspot/deals"], resources=resources
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    landed = count(url, "SELECT count(*) FROM deals")
    if not result.success or landed != records:
        raise RuntimeError(f"replayed sync landed {landed} of {records} deals")
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="records of the large run (multiple of 100)")
    parser.add_argument("--small", type=int, default=1_000, help="records of the small run (multiple of 100)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from resources.secrets import generate_key

    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    began = time.monotonic()
    url = recreate_database(DB_NAME)
    os.environ["WAREHOUSE_URL"] = url  # the rate-limit slot store and anything else that reads it
    runs: list[dict[str, float]] = []
    with Sandbox() as sandbox:
        bodies = capture_pages(sandbox, args.records)
        sync(url, sandbox, bodies, args.small)  # warm-up: first-call imports and caches
        for rep in range(args.repeat):
            small_cpu, small_wall = sync(url, sandbox, bodies, args.small)
            large_cpu, large_wall = sync(url, sandbox, bodies, args.records)
            extra = args.records - args.small
            runs.append(
                {
                    "small_cpu_s": small_cpu,
                    "large_cpu_s": large_cpu,
                    "small_wall_s": small_wall,
                    "large_wall_s": large_wall,
                    "cpu_us_per_record": (large_cpu - small_cpu) / extra * 1e6,
                    "wall_us_per_record": (large_wall - small_wall) / extra * 1e6,
                }
            )
            print(
                f"rep {rep + 1}: {runs[-1]['cpu_us_per_record']:.1f} us/record CPU, "
                f"{runs[-1]['wall_us_per_record']:.1f} us/record wall (fixed cost {small_cpu:.2f} s CPU)"
            )
    cpu_us = statistics.median(r["cpu_us_per_record"] for r in runs)
    wall_us = statistics.median(r["wall_us_per_record"] for r in runs)
    fixed = statistics.median(r["small_cpu_s"] for r in runs)
    print(
        f"engine CPU per record: {cpu_us:.1f} us (target < {TARGET_US_PER_RECORD:g} us); "
        f"wall incl. Postgres: {wall_us:.1f} us; fixed cost per sync: {fixed:.2f} s CPU"
    )
    path = write_results(
        "engine",
        {
            "benchmark": "bench/engine.py",
            "machine": machine(),
            "config": {"records": args.records, "small": args.small, "repeat": args.repeat},
            "figures": {"cpu_us_per_record": cpu_us, "wall_us_per_record": wall_us, "fixed_cpu_s": fixed},
            "targets": {"cpu_us_per_record": TARGET_US_PER_RECORD},
            "runs": runs,
            "total_runtime_s": round(time.monotonic() - began, 1),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
