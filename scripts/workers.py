"""Start and stop Celery workers for `sync_workspace` steps (SYNC_EXECUTOR=celery). Used by
`make workers N=2` (foreground, Ctrl-C stops them; DETACH=1 for background), `make workers-down`,
the Celery end-to-end tests and bench/celery.py."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from resources.settings import REPO_ROOT
from scripts.stack import BIN, RUN_DIR, prepare_dagster_home

CELERY_CONFIG = REPO_ROOT / "dagster.celery.yaml"
DEFAULT_BROKER = "pyamqp://guest@127.0.0.1:5672//"
PIDS = RUN_DIR / "workers.pids"


@dataclass
class Worker:
    name: str
    process: subprocess.Popen
    log: Path
    log_offset: int  # where this start's output begins (the log is appended to across restarts)

    def ready(self) -> bool:
        # Celery logs "<name>@<host> ready." once it consumes from the queue.
        output = self.log.read_bytes()[self.log_offset :]
        return f"{self.name}@".encode() in output and b" ready." in output


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """`dagster-celery worker start` calls `celery` by name: the venv's bin must be on PATH."""
    return {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(REPO_ROOT),
        "SYNC_CELERY_BROKER": env.get("SYNC_CELERY_BROKER", DEFAULT_BROKER),
    }


def start_worker(name: str, env: dict[str, str], log_dir: Path, concurrency: int = 1) -> Worker:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    argv = [
        str(BIN / "dagster-celery"), "worker", "start",
        "-A", "dagster_celery.app", "-y", str(CELERY_CONFIG), "-n", name,
        "--", "--concurrency", str(concurrency),
    ]  # fmt: skip
    process = subprocess.Popen(
        argv, cwd=REPO_ROOT, env=worker_env(env), stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True
    )
    return Worker(name, process, log, offset)


def wait_ready(workers: list[Worker], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    for worker in workers:
        while not worker.ready():
            if worker.process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited ({worker.process.returncode}); see {worker.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{worker.name} not ready after {timeout_s}s; see {worker.log}")
            time.sleep(0.5)


def start_workers(
    count: int, env: dict[str, str], log_dir: Path, *, prefix: str = "sync-worker", concurrency: int = 1
) -> list[Worker]:
    workers = [start_worker(f"{prefix}-{i}", env, log_dir, concurrency) for i in range(1, count + 1)]
    try:
        wait_ready(workers)
    except (RuntimeError, TimeoutError):
        stop_workers(workers)
        raise
    return workers


def create_vhost(name: str) -> str:
    """A private RabbitMQ virtual host (tests, benchmarks): other sessions' workers on the same broker never
    take its tasks. Returns its broker URL."""
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", name], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", name, "guest", ".*", ".*", ".*"], check=True, capture_output=True
    )
    return f"pyamqp://guest@127.0.0.1:5672/{name}"


def delete_vhost(name: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", name], check=False, capture_output=True)


def kill_worker(worker: Worker) -> None:
    """A machine loss: SIGKILL the worker's whole process group (CLI, Celery main process, pool)."""
    os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(10)


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGTERM)  # Celery's warm shutdown: finish, then exit
    for worker in workers:
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.process.pid, signal.SIGKILL)


# --- commands ------------------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    for var in ("WAREHOUSE_URL", "SYNC_SECRET_KEY", "DAGSTER_PG_URL"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} must be set for the workers (the same values as `make up`)")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(RUN_DIR / "dagster_home")))
    prepare_dagster_home(home, REPO_ROOT / "dagster.yaml")
    return dict(os.environ)


def up(count: int, concurrency: int, detach: bool) -> None:
    if PIDS.exists():
        raise SystemExit(f"workers already running ({PIDS}); run `make workers-down` first")
    workers = start_workers(count, _environment(), RUN_DIR / "logs", concurrency=concurrency)
    print(f"{count} Celery worker(s) ready; logs in {RUN_DIR / 'logs'}/sync-worker-*.log")
    if detach:
        PIDS.write_text("".join(f"{w.name} {w.process.pid}\n" for w in workers))
        print("stop with `make workers-down`")
        return
    print("Ctrl-C stops them")
    try:
        while all(w.process.poll() is None for w in workers):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop_workers(workers)


def down() -> None:
    if not PIDS.exists():
        print("no workers to stop")
        return
    for line in PIDS.read_text().splitlines():
        name, pid = line.split()
        try:
            os.killpg(int(pid), signal.SIGTERM)
            print(f"stopped {name} ({pid})")
        except ProcessLookupError:
            print(f"{name} ({pid}) was not running")
    PIDS.unlink()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("-n", "--count", type=int, default=2, help="worker processes (one per machine in production)")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="steps each worker runs at once")
    parser.add_argument("--detach", action="store_true", help="leave them running; stop with `make workers-down`")
    args = parser.parse_args()
    if args.command == "down":
        down()
    else:
        up(args.count, args.concurrency, args.detach)
    sys.exit(0)
