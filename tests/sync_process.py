"""One connector sync in its own OS process, as its own Dagster run:
``python -m tests.sync_process <connector> <workspace>`` exits 0 when the run succeeds.

Concurrent runs of a deployment are separate processes that share only the databases; this is how
the tests start them side by side.
"""

from __future__ import annotations

import sys

from dagster import DagsterInstance

from definitions import connector_assets
from tests.support import run_sync


def main(connector: str, workspace: str) -> int:
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("workspace", [workspace])
    assets = [a for a in connector_assets if any(key.path[0] == connector for key in a.keys)]
    return 0 if run_sync(instance, assets, workspace).success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
