"""Every benchmark in bench/ in quick settings, then one table of figures against targets.

    .venv/bin/python bench/run_all.py [--only e2e,engine] [--table-only]

Each benchmark that exists here runs in its own process with the arguments below (chosen to keep
``make bench`` under 15 minutes on a 2-core machine) and writes ``bench/results/<name>.json``; this
script reads those files, prints the table (figure, target, value, ratio, met?) and writes
``bench/results.json`` (machine facts, date, every figure). A benchmark that fails or runs past its
time limit is reported as such and the others still run. ``--table-only`` rebuilds the table from the
result files already on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
SUMMARY = ROOT / "bench" / "results.json"


@dataclass
class Row:
    figure: str
    target: str
    value: str
    ratio: float | None  # value over target, oriented so that the target is met at <= 1 or >= 1 as stated
    met: bool | None
    note: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    args: tuple[str, ...]
    timeout_s: int
    note: str  # how the quick settings differ from the benchmark's defaults


# Order: the short ones first, so a run cut short still reports most figures.
BENCHMARKS = (
    Bench("engine", (), 180, ""),
    Bench("salesforce_bulk", ("--sizes", "20000", "200000"), 180, ""),
    Bench("load", ("--rows", "20000", "--repeat", "3"), 300, "20k rows (default 200k)"),
    Bench("e2e", (), 900, ""),
    Bench("incremental", (), 300, ""),
    Bench("ratelimit", ("--minutes", "1"), 150, "1 min (default 3)"),
    Bench("orchestration", ("--parallel", "1,5"), 240, "parallel 1,5 (default 1,5,20)"),
    Bench("webhooks", ("--runs", "10"), 240, "10 runs (default 20)"),
    Bench("api", (), 180, ""),
    Bench("celery", (), 180, ""),
)


def num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def at_least(figure: str, value: float, target: float, unit: str = "", note: str = "") -> Row:
    return Row(figure, f">= {num(target)}{unit}", f"{num(value)}{unit}", value / target, value >= target, note)


def at_most(figure: str, value: float, target: float, unit: str = "", note: str = "") -> Row:
    return Row(figure, f"<= {num(target)}{unit}", f"{num(value)}{unit}", value / target, value <= target, note)


def below(figure: str, value: float, target: float, unit: str = "", note: str = "") -> Row:
    return Row(figure, f"< {num(target)}{unit}", f"{num(value)}{unit}", value / target, value < target, note)


def shown(figure: str, value: str, note: str = "") -> Row:
    return Row(figure, "-", value, None, None, note)


# --- one adapter per result file: its figures as table rows ----------------------------------------


def rows_engine(r: dict[str, Any]) -> list[Row]:
    f = r["figures"]
    rows = [
        below(
            "engine CPU per record (replayed pages)", f["cpu_us_per_record"], r["targets"]["cpu_us_per_record"], " us"
        ),
        shown("engine wall per record incl. Postgres", f"{f['wall_us_per_record']:,.1f} us"),
    ]
    if "per_page_cpu_us" in f:
        split = (
            f"{f['per_page_cpu_us'] / 1000:.2f} ms/page + {f['per_record_cpu_us_excluding_page_cost']:.1f} us/record"
        )
        rows.append(shown("engine CPU split (100 vs 1000 records/page)", split))
    return rows


def rows_e2e(r: dict[str, Any]) -> list[Row]:
    f, t, n = r["figures"], r["targets"], r["config"]["records"]
    rows = [shown(f"e2e ours records/s ({n:,} deals)", f"{f['ours_records_per_s']:,.0f}")]
    if "dlt_records_per_s" in f:
        rows += [
            shown(f"e2e dlt records/s ({n:,} deals)", f"{f['dlt_records_per_s']:,.0f}"),
            at_least("e2e ours/dlt records/s", f["throughput_ratio"], t["throughput_ratio"], "x"),
            shown("e2e peak RSS ours / dlt", f"{f['ours_peak_rss_mb']:,.0f} / {f['dlt_peak_rss_mb']:,.0f} MB"),
            below("e2e ours/dlt peak RSS", f["rss_ratio"], t["rss_ratio"]),
        ]
    sizes = f["rss_by_size_mb"]
    rows.append(
        at_most(
            f"peak RSS {max(sizes, key=int)} / {min(sizes, key=int)} records",
            f["rss_scaling_ratio"],
            t["rss_scaling"],
            note=", ".join(f"{int(s):,}: {mb:,.0f} MB" for s, mb in sizes.items()),
        )
    )
    return rows


def rows_incremental(r: dict[str, Any]) -> list[Row]:
    f, t, n = r["figures"], r["targets"], r["config"]["records"]

    def share(figure: str, value: float) -> Row:
        target = t["time_share"]
        return Row(figure, f"< {target:.0%}", f"{value:.1%}", value / target, value < target)

    synced = f["records_synced"]
    return [
        shown(
            f"full sync / no-change incremental ({n:,} deals)",
            f"{f['full_seconds']:.2f} / {f['incremental_seconds']:.2f} s",
        ),
        share("no-change incremental / full sync time", f["time_share"]),
        shown(
            "the syncs proper (duration_ms), full / incremental",
            f"{f['full_sync_seconds']:.2f} / {f['incremental_sync_seconds']:.3f} s",
        ),
        share("no-change incremental / full, syncs proper", f["sync_time_share"]),
        Row("no-change incremental records synced", "0", str(synced), None, synced == t["records_synced"]),
        shown(
            "no-change incremental re-read / API calls",
            f"{f['records_reread']:,} / {f['incremental_api_calls']}",
        ),
    ]


def rows_load(r: dict[str, Any]) -> list[Row]:
    ratios, rows = r["ratios"], []
    rate = r["contenders"]["ours"]["rows_per_s_median"]["first_load"]
    rows.append(shown("loader rows/s, first load", f"{rate:,.0f}"))
    for peer, target in (("dlt", 4.0), ("copy", 0.5)):
        for scenario in ("first_load", "reload"):
            value = (ratios.get(f"ours/{peer}") or {}).get(scenario)
            if value is not None:
                rows.append(at_least(f"loader ours/{peer} rows/s, {scenario.replace('_', ' ')}", value, target, "x"))
    return rows


def rows_salesforce_bulk(r: dict[str, Any]) -> list[Row]:
    slowest = min(run["records_per_s"] for run in r["runs"])
    return [
        at_least("Salesforce bulk records/s (slowest size)", slowest, r["throughput_target"]),
        at_most("Salesforce bulk peak RSS largest/smallest", r["rss_ratio"], r["rss_target"]),
    ]


def rows_ratelimit(r: dict[str, Any]) -> list[Row]:
    shared = r["results"][0]
    limit = r["settings"]["limit"]
    return [
        at_most("rate limit: most requests in any window", shared["max_in_any_60s_window"], limit),
        at_most("rate limit: 429s", shared["rejected_429"], 0)
        if shared["rejected_429"]
        else Row("rate limit: 429s", "0", "0", None, True),
        at_least("rate limit: achieved / allowed", shared["achieved_over_allowed"], 0.95),
    ]


def relaunched_and_failed(pickup: dict[str, Any]) -> str:
    return f"{len(pickup['relaunched_by_run_retries'])} / {len(pickup['failed_jobs'])} of {pickup['jobs']}"


def rows_orchestration(r: dict[str, Any]) -> list[Row]:
    tick = r["schedule_tick"]
    biggest = max(tick, key=int)
    rows = [
        below(f"schedule tick @ {biggest} workspaces", tick[biggest]["median_s"], 5.0, " s"),
        below("run pickup QUEUED->STARTING p95", r["pickup"]["queued_to_starting_p95_s"], 2.0, " s"),
        shown("pickup jobs relaunched / never ran", relaunched_and_failed(r["pickup"])),
    ]
    for count, figures in r.get("parallelism", {}).items():
        rows.append(shown(f"parallel speed-up, {count} workspaces", f"{figures['speedup_vs_serial']:.2f}x"))
    return rows


def rows_webhooks(r: dict[str, Any]) -> list[Row]:
    return [below("webhook run end -> delivery p95", r["p95_s"], r["target_p95_s"], " s")]


def rows_api(r: dict[str, Any]) -> list[Row]:
    figures = r["figures"]
    rows = [below("api POST /sync 202 p50", figures["POST /sync (202)"]["p50_ms"], 50, " ms")]
    rows += [below(f"api {endpoint} p99", f["p99_ms"], 500, " ms") for endpoint, f in figures.items()]
    if "launch_lag" in r:
        rows.append(
            shown("api 202 -> run created p50 / p99", f"{r['launch_lag']['p50_ms']} / {r['launch_lag']['p99_ms']} ms")
        )
    return rows


def rows_celery(r: dict[str, Any]) -> list[Row]:
    rows = [
        shown(f"celery records/s, {one['workers']} worker(s)", f"{one['records_per_s']:,.0f}") for one in r["results"]
    ]
    rows.append(shown("celery 2 workers / 1 worker", f"{r['ratio_2_over_1']:.2f}x"))
    return rows


def rows_generic(r: dict[str, Any]) -> list[Row]:
    """Result files without an adapter: a ``table`` list of rows, if the benchmark wrote one."""
    return [Row(**{k: row.get(k) for k in ("figure", "target", "value", "ratio", "met")}) for row in r["table"]]


ADAPTERS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "engine": rows_engine,
    "e2e": rows_e2e,
    "incremental": rows_incremental,
    "load": rows_load,
    "salesforce_bulk": rows_salesforce_bulk,
    "ratelimit": rows_ratelimit,
    "orchestration": rows_orchestration,
    "webhooks": rows_webhooks,
    "api": rows_api,
    "celery": rows_celery,
}


# --- running --------------------------------------------------------------------------------------


# How long a benchmark past its time limit gets to stop what it started.
CLEANUP_S = 60


def wait_or_interrupt(child: subprocess.Popen, timeout_s: float) -> int | None:
    """The benchmark's exit code, or None if it ran past ``timeout_s``. Past it, the benchmark is interrupted
    (SIGINT) rather than killed, so that its ``finally`` blocks stop the services it started: they run in
    sessions of their own (scripts/stack.py, scripts/workers.py), out of reach of a kill of the benchmark,
    and were left running. Killed only if it has not stopped CLEANUP_S later."""
    try:
        return child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=CLEANUP_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return None


def run(bench: Bench) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / f"{bench.name}.py"), *bench.args]
    log = RESULTS_DIR / f"{bench.name}.log"
    print(f"\n=== {bench.name}: {' '.join(['bench/' + bench.name + '.py', *bench.args])} (log: {log.name})", flush=True)
    # A failed run must not leave the previous run's figures to be read as its own.
    (RESULTS_DIR / f"{bench.name}.json").unlink(missing_ok=True)
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (
        log.open("w") as out,
        subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT) as child,
    ):
        code = wait_or_interrupt(child, bench.timeout_s)
    seconds = round(time.monotonic() - started, 1)
    status = "ok" if code == 0 else "timed out" if code is None else f"failed (exit {code})"
    print(f"    {status} in {seconds} s", flush=True)
    return {"command": " ".join(command[1:]), "status": status, "seconds": seconds, "note": bench.note}


def rows_for(name: str, note: str) -> list[Row]:
    path = RESULTS_DIR / f"{name}.json"
    try:
        rows = ADAPTERS.get(name, rows_generic)(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return [Row(f"{name}: no figures", "-", f"{type(exc).__name__} reading {path.name}", None, False, note)]
    for row in rows:
        row.note = "; ".join(x for x in (row.note, note) if x)
    return rows


def print_table(rows: list[tuple[str, Row]]) -> None:
    def fmt(row: Row) -> list[str]:
        met = "-" if row.met is None else "yes" if row.met else "NO"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        return [row.figure, row.target, row.value, ratio, met, row.note]

    cells = [["benchmark", "figure", "target", "value", "ratio", "met?", "note"]]
    cells += [[name, *fmt(row)] for name, row in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]) - 1)]
    for i, line in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) + "  " + line[-1])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  ----")


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1_5_15": os.getloadavg(),
    }
    try:
        meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0]
        facts["memory_gib"] = round(int(meminfo.split()[1]) / 1024**2, 1)
        facts["cpu_model"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration, ValueError):
        pass
    return facts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated benchmark names (default: every one present)")
    parser.add_argument("--table-only", action="store_true", help="no runs: the table from existing results")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    present = [b for b in BENCHMARKS if (ROOT / "bench" / f"{b.name}.py").exists() and (not wanted or b.name in wanted)]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    before = machine_facts()
    runs: dict[str, dict[str, Any]] = {}
    for bench in present:
        runs[bench.name] = {"note": bench.note} if args.table_only else run(bench)
    table: list[tuple[str, Row]] = []
    for bench in present:
        status = runs[bench.name].get("status", "ok")
        note = "; ".join(x for x in (runs[bench.name]["note"], "" if status == "ok" else f"run {status}") if x)
        table += [(bench.name, row) for row in rows_for(bench.name, note)]
    print()
    print_table(table)
    met = [row.met for _, row in table if row.met is not None]
    print(
        f"\n{sum(met)} of {len(met)} targets met; {len(present)} benchmarks; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus"
    )
    SUMMARY.write_text(
        json.dumps(
            {
                "date": started.isoformat(timespec="seconds"),
                "total_runtime_s": round((datetime.now(UTC) - started).total_seconds(), 1),
                "machine": {**before, "load_average_1_5_15_after": os.getloadavg()},
                "benchmarks": runs,
                "figures": [{"benchmark": name, **asdict(row)} for name, row in table],
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {SUMMARY.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
