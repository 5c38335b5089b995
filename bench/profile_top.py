"""Summarise a py-spy ``--format raw`` profile (folded stacks): where the sampled CPU time goes.

    .venv/bin/python bench/profile_top.py PROFILE.txt [--within ConnectorSync.sync_entity] [--top 25]

Only stacks that pass through ``--within`` (a substring of a frame) count, so capture, set-up and
Dagster's fixed per-run work drop out. Prints inclusive (the function and what it calls) and self shares.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# py-spy frames look like "function (path/to/file.py:123)"; the line number is dropped so a function
# sampled at different lines counts once.
_LINE = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    name = _LINE.sub(")", frame.strip())
    for marker in ("site-packages/", "/work/"):
        if marker in name:
            head, _, tail = name.partition("(")
            name = f"{head}({tail.split(marker, 1)[-1]}"
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--within", default="sync_entity")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if not samples.isdigit() or not any(args.within in f for f in frames):
            continue
        n = int(samples)
        total += n
        for name in {frame_name(f) for f in frames}:
            inclusive[name] += n
        own[frame_name(frames[-1])] += n
    if not total:
        raise SystemExit(f"no samples pass through {args.within!r}")
    print(f"{total} samples through {args.within!r}\n\ninclusive %  function")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:10.1f}  {name}")
    print("\n     self %  function")
    for name, n in own.most_common(args.top):
        print(f"{100 * n / total:10.1f}  {name}")


if __name__ == "__main__":
    main()
