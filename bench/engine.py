"""Engine overhead: the CPU cost per record of our sync path, with the vendor taken out.

    .venv/bin/python bench/engine.py [--records 20000] [--small 1000] [--repeat 3] [--page-sizes 100 1000]

The profile: bench/README.md ("Engine overhead") runs this under py-spy.

The HubSpot deals list is captured once from the sandbox and laid out as list-endpoint bodies,
untimed. Then, in this one process, the real ``hubspot/deals`` asset is materialized again and again
(``dagster.materialize``, full sync, a fresh ephemeral instance and empty warehouse tables each time)
with the HubSpot resource swapped for one whose client replays those bodies: every request returns
the next captured body, so the real ``objects_by_id`` (JSON decode, ``HubSpotObject`` validation), the
real ``ConnectorSync`` loop (transform to ``DealRow``, error capture, watermark bookkeeping, progress
logs) and the real ``PageWriter.commit_page`` (loader: de-duplication, binary COPY, upsert; sync_log heartbeat)
run, with no HTTP and no sandbox.

Counted: ``time.process_time()`` of this process (user + system CPU of every thread), i.e. all the
Python-side work above, psycopg's encoding included. Not counted: the Postgres server's own work (a
separate process; it shows in the wall-clock figure, which is also reported) and the vendor.
The fixed cost of a run (Dagster's run/step machinery, sync_log rows, definitions) is taken out by
differencing: per record = (cost of a --records run - cost of a --small run) / (the record difference).
Each repetition runs small then large; the figure is the median over repetitions, after one warm-up.
The figure is at 100 records a page (HubSpot's list page; its search pages, which full syncs read since
the watermark engine, hold 200); a second page size (1000) splits the cost into a part per page (commit
round trips, the per-page log line) and a part per record.
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

# Run as a script: the engine under test comes from the first checkout on PYTHONPATH (another checkout in a
# before/after comparison, bench/README.md), else from this one; bench.support always from this one.
ENGINE_PATH = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
sys.path[:0] = [*ENGINE_PATH, str(Path(__file__).resolve().parents[1])]

import requests  # noqa: E402

from bench.support import (  # noqa: E402
    DEALS_PROPERTIES,
    WORKSPACE,
    Sandbox,
    count,
    machine,
    prepare_hubspot_workspace,
    recreate_database,
    sync_resources,
    write_results,
)

DB_NAME = "bench_engine"
TARGET_US_PER_RECORD = 30.0


def capture_records(sandbox: Sandbox, records: int) -> list[dict[str, Any]]:
    """The deals of the list endpoint, ``records`` of them, exactly as the sandbox serves them."""
    sandbox.reset_deals(records)
    connection = sandbox.hubspot_connection()
    base, creds = connection["config"]["base_url"], connection["credentials"]
    token = requests.post(f"{base}/oauth/v1/token", data={"grant_type": "refresh_token", **creds}, timeout=30)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    results: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": 100, "properties": DEALS_PROPERTIES} | ({"after": after} if after else {})
        response = session.get(f"{base}/crm/v3/objects/deals", params=params, timeout=30)
        response.raise_for_status()
        body = response.json()
        results += body["results"]
        after = ((body.get("paging") or {}).get("next") or {}).get("after")
        if not after:
            return results


def page_bodies(results: list[dict[str, Any]], records: int, page_size: int) -> list[bytes]:
    """The first ``records`` deals as list-endpoint bodies of ``page_size`` records, cursors included."""
    bodies = []
    for start in range(0, records, page_size):
        end = min(start + page_size, records)
        body: dict[str, Any] = {"results": results[start:end]}
        if end < records:
            body["paging"] = {"next": {"after": str(end)}}
        bodies.append(json.dumps(body, separators=(",", ":")).encode())
    return bodies


class _CannedResponse:
    def __init__(self, body: bytes) -> None:
        self.content = body

    def json(self) -> Any:
        return json.loads(self.content)


def replay_resource(bodies: list[bytes]) -> Any:
    """A stand-in for HubSpotResource whose client answers every request with the next captured body."""
    from resources.http import RetrySettings
    from resources.hubspot import HubSpotClient

    class NoLimit:
        def acquire(self) -> float:
            return 0.0

    class ReplayingClient(HubSpotClient):
        def __init__(self, log: Any) -> None:
            super().__init__(
                {"access_token": "replay"},
                NoLimit(),  # the search endpoint's own limiter: the replay makes no calls to space
                base_url="http://replay",
                limiter=None,
                retry=RetrySettings(),
                log=log,
            )
            self._bodies = iter(bodies)

        def request(self, method: str, path: str, **_: Any) -> Any:
            self.api_calls += 1
            return _CannedResponse(next(self._bodies))

    class ReplayResource:
        def client_for(self, connection: Any, log: Any = None) -> ReplayingClient:
            return ReplayingClient(log)

    return ReplayResource()


def sync(
    url: str, sandbox: Sandbox, results: list[dict[str, Any]], records: int, page_size: int
) -> tuple[float, float]:
    """One materialize of hubspot/deals over replayed pages: (CPU seconds, wall seconds)."""
    from dagster import AssetKey, DagsterInstance, materialize

    from definitions import connector_assets

    prepare_hubspot_workspace(url, sandbox)
    assets = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("workspace", [WORKSPACE])
    resources = sync_resources("hubspot", replay_resource(page_bodies(results, records, page_size)), url)
    cpu, wall = time.process_time(), time.perf_counter()
    result = materialize(
        [assets], instance=instance, partition_key=WORKSPACE, selection=["hubspot/deals"], resources=resources
    )
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    landed = count(url, "SELECT count(*) FROM deals")
    if not result.success or landed != records:
        raise RuntimeError(f"replayed sync landed {landed} of {records} deals")
    return cpu, wall


def measure(url: str, sandbox: Sandbox, results: list[dict[str, Any]], args: argparse.Namespace, page_size: int):
    """Small and large runs, ``--repeat`` times: the per-record cost of each repetition."""
    runs: list[dict[str, float]] = []
    sync(url, sandbox, results, args.small, page_size)  # warm-up: first-call imports and caches
    for rep in range(args.repeat):
        small_cpu, small_wall = sync(url, sandbox, results, args.small, page_size)
        large_cpu, large_wall = sync(url, sandbox, results, args.records, page_size)
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
            f"{page_size} records/page, rep {rep + 1}: {runs[-1]['cpu_us_per_record']:.1f} us/record CPU, "
            f"{runs[-1]['wall_us_per_record']:.1f} us/record wall (fixed cost {small_cpu:.2f} s CPU)",
            flush=True,
        )
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="records of the large run")
    parser.add_argument("--small", type=int, default=1_000, help="records of the small run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--page-sizes",
        type=int,
        nargs="+",
        default=[100, 1000],
        help="records per replayed page; the first is HubSpot's and gives the figure, the others split "
        "per-page from per-record cost",
    )
    args = parser.parse_args()

    from resources.secrets import generate_key

    os.environ.setdefault("SYNC_SECRET_KEY", generate_key())
    began = time.monotonic()
    url = recreate_database(DB_NAME)
    os.environ["WAREHOUSE_URL"] = url  # the rate-limit slot store and anything else that reads it
    with Sandbox() as sandbox:
        results = capture_records(sandbox, args.records)
        runs = {size: measure(url, sandbox, results, args, size) for size in args.page_sizes}
    by_size = {
        str(size): {
            "cpu_us_per_record": statistics.median(r["cpu_us_per_record"] for r in rs),
            "wall_us_per_record": statistics.median(r["wall_us_per_record"] for r in rs),
            "fixed_cpu_s": statistics.median(r["small_cpu_s"] for r in rs),
        }
        for size, rs in runs.items()
    }
    figures = {**by_size[str(args.page_sizes[0])], "page_size": args.page_sizes[0], "by_page_size": by_size}
    if len(args.page_sizes) > 1:
        # cost(p) = per_record + per_page / p, from the first two page sizes.
        (p1, a), (p2, b) = [(size, by_size[str(size)]["cpu_us_per_record"]) for size in args.page_sizes[:2]]
        per_page = (a - b) / (1 / p1 - 1 / p2)
        figures["per_page_cpu_us"] = per_page
        figures["per_record_cpu_us_excluding_page_cost"] = a - per_page / p1
    for size, f in by_size.items():
        print(
            f"{size:>5} records/page: engine CPU {f['cpu_us_per_record']:.1f} us/record, "
            f"wall incl. Postgres {f['wall_us_per_record']:.1f} us/record, fixed cost {f['fixed_cpu_s']:.2f} s CPU"
        )
    if "per_page_cpu_us" in figures:
        print(
            f"split: {figures['per_page_cpu_us'] / 1000:.2f} ms CPU per page + "
            f"{figures['per_record_cpu_us_excluding_page_cost']:.1f} us CPU per record"
        )
    print(f"figure: {figures['cpu_us_per_record']:.1f} us/record CPU (target < {TARGET_US_PER_RECORD:g} us)")
    path = write_results(
        "engine",
        {
            "benchmark": "bench/engine.py",
            "machine": machine(),
            "config": vars(args),
            "figures": figures,
            "targets": {"cpu_us_per_record": TARGET_US_PER_RECORD},
            "runs": {str(size): rs for size, rs in runs.items()},
            "total_runtime_s": round(time.monotonic() - began, 1),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
