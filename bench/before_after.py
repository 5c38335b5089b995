"""The engine before and after a change, side by side in one run: this checkout's benchmark scripts run
alternately against two checkouts of the engine.

    git -C /work/main worktree add /tmp/bench-before 52e0947     # the engine before
    .venv/bin/python bench/before_after.py --before /tmp/bench-before [--rounds 3] [--only e2e,engine]

A benchmark measures the engine of the first checkout on PYTHONPATH (bench/e2e.py, bench/engine.py); its
harness, sandbox and Postgres server are this checkout's in both runs, so only the engine differs (and the
migrations, which come with it). Every round runs each benchmark once per engine, the order alternating
from round to round (after then before, then before then after, ...), so a drift in machine load falls on
both. The table gives each figure's median and range per engine; bench/results/before_after.json holds
every run. The benchmarks' own result files are not touched (each run writes to a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = ROOT / "bench" / "results" / "before_after.json"


def e2e_figures(result: dict[str, Any]) -> dict[str, float]:
    figures = result["figures"]
    return {
        "records/s": figures["ours_records_per_s"],
        "CPU us/record": figures["ours_cpu_us_per_record"],
    }


def engine_figures(result: dict[str, Any]) -> dict[str, float]:
    by_size = result["figures"]["by_page_size"]
    figures = {}
    for size, f in by_size.items():
        figures[f"CPU us/record @{size}/page"] = f["cpu_us_per_record"]
        figures[f"wall us/record @{size}/page"] = f["wall_us_per_record"]
    return figures


def incremental_figures(result: dict[str, Any]) -> dict[str, float]:
    figures = result["figures"]
    return {
        "full sync s": figures["full_seconds"],
        "no-change incremental s": figures["incremental_seconds"],
        "incremental/full %": 100 * figures["time_share"],
        "syncs proper: incr/full %": 100 * figures["sync_time_share"],
        "incremental records synced": figures["records_synced"],
    }


# name: (the arguments of one run, the figures read from its result file)
BENCHMARKS: dict[str, tuple[tuple[str, ...], Callable[[dict[str, Any]], dict[str, float]]]] = {
    # One sync of 100,000 deals per run; dlt and the memory scaling do not depend on our engine.
    "e2e": (("--records", "100000", "--repeat", "1", "--scaling", "--skip-dlt"), e2e_figures),
    # Its default sizes and page sizes, one repetition per run (the rounds repeat it).
    "engine": (("--repeat", "1"), engine_figures),
    # One full + no-change incremental pair of 100,000 deals per run.
    "incremental": (("--repeat", "1"), incremental_figures),
}
DEFAULT = ("e2e", "engine")


def run_once(name: str, args: list[str], engine_root: Path, log_dir: Path, label: str) -> dict[str, Any]:
    read_figures = BENCHMARKS[name][1]
    out_dir = Path(tempfile.mkdtemp(prefix=f"{name}-{label}-", dir=log_dir))
    env = {**os.environ, "PYTHONPATH": str(engine_root), "BENCH_RESULTS_DIR": str(out_dir)}
    command = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args]
    started = time.monotonic()
    with (out_dir / "log").open("w") as log:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    if code != 0:
        tail = (out_dir / "log").read_text()[-3000:]
        raise RuntimeError(f"{name} against {engine_root} failed (exit {code}):\n{tail}")
    result = json.loads((out_dir / f"{name}.json").read_text())
    return {
        "figures": read_figures(result),
        "engine_under_test": result.get("engine_under_test"),
        "load_average_1m": result["machine"]["load_average_1m"],
        "seconds": round(time.monotonic() - started, 1),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    names = runs[0]["figures"].keys()
    summary = {}
    for figure in names:
        values = [r["figures"][figure] for r in runs]
        summary[figure] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return summary


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, required=True, help="checkout of the engine before the change")
    parser.add_argument("--after", type=Path, default=ROOT, help="checkout of the engine after it (default: this)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each benchmark per engine")
    parser.add_argument("--output", type=Path, default=SUMMARY, help="the JSON of every run (default: %(default)s)")
    parser.add_argument(
        "--args",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "ARGS"),
        help='other arguments for one benchmark\'s runs, e.g. --args engine "--records 100000 --repeat 3"',
    )
    parser.add_argument(
        "--only", default=",".join(DEFAULT), help=f"comma-separated, of: {', '.join(BENCHMARKS)} (default: %(default)s)"
    )
    args = parser.parse_args()
    engines = {"after": args.after.resolve(), "before": args.before.resolve()}
    names = args.only.split(",")
    bench_args = {name: list(BENCHMARKS[name][0]) for name in names}
    bench_args |= {name: shlex.split(line) for name, line in args.args}
    log_dir = Path(tempfile.mkdtemp(prefix="bench_before_after_"))
    print(f"logs and per-run results: {log_dir}", flush=True)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {n: {side: [] for side in engines} for n in names}
    began, load_before = time.monotonic(), os.getloadavg()
    for round_no in range(args.rounds):
        order = list(engines) if round_no % 2 == 0 else list(reversed(engines))
        for name in names:
            for side in order:
                run = run_once(name, bench_args[name], engines[side], log_dir, f"{side}{round_no + 1}")
                runs[name][side].append(run)
                shown = ", ".join(f"{k} {fmt(v)}" for k, v in run["figures"].items())
                print(f"round {round_no + 1} {name} {side:<6}: {shown} (load {run['load_average_1m']:.1f})", flush=True)

    summary: dict[str, Any] = {}
    header = f"{'before: median (min-max)':>28} {'after: median (min-max)':>28} after/before"
    print(f"\n{'benchmark':<8} {'figure':<26} {header}")
    for name in names:
        sides = {side: summarize(runs[name][side]) for side in engines}
        summary[name] = sides
        for figure in sides["after"]:
            cells = [
                f"{fmt(s['median'])} ({fmt(s['min'])}-{fmt(s['max'])})"
                for s in (sides["before"][figure], sides["after"][figure])
            ]
            before_median = sides["before"][figure]["median"]
            ratio = sides["after"][figure]["median"] / before_median if before_median else None
            sides.setdefault("after_over_before", {})[figure] = ratio
            shown_ratio = "-" if ratio is None else f"{ratio:.2f}"
            print(f"{name:<8} {figure:<26} {cells[0]:>28} {cells[1]:>28} {shown_ratio}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "bench/before_after.py",
                "command": " ".join(["bench/before_after.py", *sys.argv[1:]]),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "cpus": os.cpu_count(),
                "load_average_1_5_15": {"before": load_before, "after": os.getloadavg()},
                "engines": {side: str(path) for side, path in engines.items()},
                "arguments": bench_args,
                "summary": summary,
                "runs": runs,
                "total_runtime_s": round(time.monotonic() - began, 1),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
