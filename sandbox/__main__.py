"""`python -m sandbox [--port N] [--seed S]`: serve every vendor simulator on 127.0.0.1."""

from __future__ import annotations

import argparse
import os

from .server import make_server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("SANDBOX_PORT", "8900")),
        help="0 picks a free port (printed on startup); default $SANDBOX_PORT or 8900",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    server, sock = make_server(args.host, args.port, args.seed)
    # One parseable line so a parent process started with --port 0 can learn the port.
    print(f"sandbox listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
