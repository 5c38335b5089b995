"""Start and stop the platform's processes: the code server, dagster-webserver, dagster-daemon, the
REST API and (optionally) the sandbox. Used by `make up`/`make down` (background), `make dev` (foreground) and
the end-to-end tests."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

from resources.settings import REPO_ROOT, code_server_address

RUN_DIR = Path(os.environ.get("RUN_DIR", REPO_ROOT / ".run"))
BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    argv: list[str]
    healthy: Callable[[], bool]
    # The services after this one need it healthy before they start (the webserver and daemon load
    # the code location from the code server once, at start-up).
    gates_the_rest: bool = False
    process: subprocess.Popen | None = field(default=None, repr=False)


def _http_ok(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return requests.get(url, timeout=2).status_code < 500
        except requests.RequestException:
            return False

    return check


def _daemon_alive(env: dict[str, str]) -> Callable[[], bool]:
    def check() -> bool:
        result = subprocess.run(
            [str(BIN / "dagster-daemon"), "liveness-check"], env=env, cwd=REPO_ROOT, capture_output=True
        )
        return result.returncode == 0

    return check


def _grpc_serving(host: str, port: int) -> Callable[[], bool]:
    def check() -> bool:
        result = subprocess.run(
            [str(BIN / "dagster"), "api", "grpc-health-check", "-h", host, "-p", str(port)],
            cwd=REPO_ROOT,
            capture_output=True,
        )
        return result.returncode == 0

    return check


def services(
    env: dict[str, str], *, dagster_port: int, api_port: int, sandbox_port: int | None, with_api: bool
) -> list[Service]:
    """The processes to start, in order. ``env["CODE_SERVER_HOST"]`` and ``env["CODE_SERVER_PORT"]`` are
    the code server's address, which workspace.yaml reads."""
    workspace = str(REPO_ROOT / "workspace.yaml")
    code_host, code_port = env["CODE_SERVER_HOST"], int(env["CODE_SERVER_PORT"])
    found: list[Service] = []
    if sandbox_port is not None:
        found.append(
            Service(
                "sandbox",
                [sys.executable, "-m", "sandbox", "--port", str(sandbox_port)],
                _http_ok(f"http://127.0.0.1:{sandbox_port}/_sandbox/health"),
            )
        )
    found += [
        Service(
            "code-server",
            [
                str(BIN / "dagster"),
                "code-server",
                "start",
                "-f",
                str(REPO_ROOT / "definitions.py"),
                "-d",
                str(REPO_ROOT),
                "--location-name",
                "sales_sync",
                "-h",
                code_host,
                "-p",
                str(code_port),
            ],
            _grpc_serving(code_host, code_port),
            gates_the_rest=True,
        ),
        Service(
            "dagster-webserver",
            [str(BIN / "dagster-webserver"), "-w", workspace, "-h", "127.0.0.1", "-p", str(dagster_port)],
            _http_ok(f"http://127.0.0.1:{dagster_port}/server_info"),
        ),
        Service("dagster-daemon", [str(BIN / "dagster-daemon"), "run", "-w", workspace], _daemon_alive(env)),
    ]
    if with_api:
        found.append(
            Service(
                "api",
                [sys.executable, "-m", "uvicorn", "api.app:app", "--host", "127.0.0.1", "--port", str(api_port)],
                _http_ok(f"http://127.0.0.1:{api_port}/healthz"),
            )
        )
    return found


def start(found: list[Service], env: dict[str, str], log_dir: Path, timeout_s: float = 120) -> list[Service]:
    log_dir.mkdir(parents=True, exist_ok=True)
    # Create/upgrade the instance's storage once, before the webserver and daemon race to do it.
    subprocess.run(
        [str(BIN / "dagster"), "instance", "migrate"], env=env, cwd=REPO_ROOT, check=True, capture_output=True
    )
    deadline = time.monotonic() + timeout_s
    for service in found:
        log = (log_dir / f"{service.name}.log").open("a")
        service.process = subprocess.Popen(
            service.argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if service.gates_the_rest:
            _wait_healthy(found, [service], deadline, timeout_s, log_dir)
    _wait_healthy(found, list(found), deadline, timeout_s, log_dir)
    return found


def _wait_healthy(
    found: list[Service], pending: list[Service], deadline: float, timeout_s: float, log_dir: Path
) -> None:
    """Wait for ``pending`` to be healthy; on a crash or timeout, stop everything started."""
    while pending:
        for service in list(pending):
            if service.process and service.process.poll() is not None:
                stop(found)
                raise RuntimeError(f"{service.name} exited ({service.process.returncode}); see {log_dir}")
            if service.healthy():
                pending.remove(service)
        if pending and time.monotonic() > deadline:
            stop(found)
            raise TimeoutError(f"not healthy after {timeout_s}s: {[s.name for s in pending]}; see {log_dir}")
        time.sleep(0.5)


def stop(found: list[Service]) -> None:
    for service in found:
        if service.process and service.process.poll() is None:
            os.killpg(service.process.pid, signal.SIGTERM)
    for service in found:
        if service.process:
            try:
                service.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(service.process.pid, signal.SIGKILL)


def prepare_dagster_home(home: Path, template: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(template, home / "dagster.yaml")


# --- commands ------------------------------------------------------------------------------------


def _ports() -> tuple[int, int, int]:
    code_server_address()
    return (
        int(os.environ.get("DAGSTER_PORT", "3001")),
        int(os.environ.get("API_PORT", "3000")),
        int(os.environ.get("SANDBOX_PORT", "8900")),
    )


def point_vendors_at_sandbox(sandbox_port: int) -> None:
    """The operator's setting that the code server, run workers and API inherit: vendors are called at
    the local sandbox (unless SYNC_VENDOR_SANDBOX_URL already names one)."""
    os.environ.setdefault("SYNC_VENDOR_SANDBOX_URL", f"http://127.0.0.1:{sandbox_port}")


def _api_exists() -> bool:
    return (REPO_ROOT / "api" / "app.py").exists()


def up() -> None:
    """Background, production-like: Postgres instance and warehouse from the environment."""
    from scripts.environment import migrate

    for var in ("DAGSTER_PG_URL", "WAREHOUSE_URL", "SYNC_SECRET_KEY"):
        if not os.environ.get(var):
            raise SystemExit(f"{var} must be set for `make up` (see README, Configuration)")
    if (RUN_DIR / "pids").exists():
        raise SystemExit(f"already up ({RUN_DIR / 'pids'} exists); run `make down` first")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(RUN_DIR / "dagster_home")))
    prepare_dagster_home(home, REPO_ROOT / "dagster.yaml")
    migrate()
    dagster_port, api_port, sandbox_port = _ports()
    with_sandbox = os.environ.get("WITH_SANDBOX") == "1"
    if with_sandbox:
        point_vendors_at_sandbox(sandbox_port)
    env = dict(os.environ)
    found = services(
        env,
        dagster_port=dagster_port,
        api_port=api_port,
        sandbox_port=sandbox_port if with_sandbox else None,
        with_api=_api_exists(),
    )
    start(found, env, RUN_DIR / "logs")
    (RUN_DIR / "pids").write_text("\n".join(f"{s.name} {s.process.pid}" for s in found if s.process) + "\n")
    print(f"Dagster UI   http://127.0.0.1:{dagster_port}")
    code_host, code_port = code_server_address()
    print(f"Code server  {code_host}:{code_port} (gRPC)")
    if _api_exists():
        print(f"REST API     http://127.0.0.1:{api_port}/docs")
    if with_sandbox:
        print(f"Sandbox      http://127.0.0.1:{sandbox_port}/_sandbox/connections")
    print(f"Logs         {RUN_DIR / 'logs'}   (stop with `make down`)")


def down() -> None:
    pids = RUN_DIR / "pids"
    if not pids.exists():
        print("nothing to stop")
        return
    started = [line.split() for line in pids.read_text().splitlines() if line.strip()]
    for name, pid in started:
        try:
            os.killpg(int(pid), signal.SIGTERM)
        except ProcessLookupError:
            print(f"{name} ({pid}) was not running")
    deadline = time.monotonic() + 20
    for name, pid in started:
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(int(pid)):
            os.killpg(int(pid), signal.SIGKILL)
        print(f"stopped {name} ({pid})")
    pids.unlink()


def _alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def dev() -> None:
    """Foreground, embedded: SQLite instance and warehouse under DEMO_DIR, plus the sandbox."""
    from scripts.environment import prepare_embedded_environment

    prepare_embedded_environment()
    os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE", "1")
    dagster_port, api_port, sandbox_port = _ports()
    point_vendors_at_sandbox(sandbox_port)
    env = dict(os.environ)
    found = start(
        services(env, dagster_port=dagster_port, api_port=api_port, sandbox_port=sandbox_port, with_api=_api_exists()),
        env,
        RUN_DIR / "logs",
    )
    print(f"Dagster UI http://127.0.0.1:{dagster_port}; sandbox http://127.0.0.1:{sandbox_port}; Ctrl-C stops all")
    try:
        while all(s.process and s.process.poll() is None for s in found):
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(found)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["up", "down", "dev"])
    {"up": up, "down": down, "dev": dev}[parser.parse_args().command]()
