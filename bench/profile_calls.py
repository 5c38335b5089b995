"""Compare two cProfile outputs by call counts: which functions one run called more often than the other.

    .venv/bin/python bench/profile_calls.py AFTER.prof BEFORE.prof [--top 25]

Call counts do not depend on machine load, unlike times: on a shared machine they show what extra work a
change does for the same input (bench/README.md, "Before and after"). Functions are matched by name and
the end of their file's path, so the same function in two checkouts matches; built-ins by name alone.
"""

from __future__ import annotations

import argparse
import pstats
import re
from collections import Counter
from pathlib import Path

# A built-in's name can hold its object's address ("<built-in method __new__ of type object at 0x7f…>").
_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def function_key(file: str, name: str) -> str:
    """The function's name and the last two parts of its file's path (``sync_assets/loop.py``): the same
    in any checkout or virtualenv."""
    name = _ADDRESS.sub("", name)
    return name if file == "~" else f"{name} ({'/'.join(Path(file).parts[-2:])})"


def call_counts(path: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (file, _line, name), (_primitive, calls, _own, _cumulative, _callers) in pstats.Stats(str(path)).stats.items():
        counts[function_key(file, name)] += calls
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("after", type=Path)
    parser.add_argument("before", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    after, before = call_counts(args.after), call_counts(args.before)
    total_after, total_before = sum(after.values()), sum(before.values())
    change = (total_after - total_before) / total_before
    print(f"calls: after {total_after:,}, before {total_before:,} ({change:+.1%})\n")
    print(f"{'after - before':>14} {'after':>10} {'before':>10}  function")
    differences = {key: after[key] - before[key] for key in after.keys() | before.keys()}
    for key, difference in sorted(differences.items(), key=lambda item: -abs(item[1]))[: args.top]:
        print(f"{difference:>+14,} {after[key]:>10,} {before[key]:>10,}  {key}")


if __name__ == "__main__":
    main()
