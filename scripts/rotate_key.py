"""`make rotate-key`: re-encrypt every stored secret (connection credentials, webhook secrets) with the
first key of SYNC_SECRET_KEY, so the keys after it can be retired.

Each row is rewritten only if its ciphertext is still the one read (a concurrent update wins), in one
transaction per table; running it again is harmless.
"""

from __future__ import annotations

import sys

from sqlalchemy import Engine, select, update

from resources import schema
from resources.db import get_engine
from resources.secrets import rotate_text
from resources.settings import warehouse_url


def rotate_secrets(engine: Engine) -> dict[str, int]:
    """Re-encrypt every stored secret with the first key; returns how many were rewritten per table."""
    targets = ((schema.connections, "id", "credentials"), (schema.workspaces, "id", "webhook_secret"))
    rewritten: dict[str, int] = {}
    for table, key, column in targets:
        count = 0
        with engine.begin() as conn:
            rows = conn.execute(select(table.c[key], table.c[column]).where(table.c[column].is_not(None))).all()
            for row_key, token in rows:
                count += conn.execute(
                    update(table)
                    .where(table.c[key] == row_key, table.c[column] == token)
                    .values({column: rotate_text(token)})
                ).rowcount
        rewritten[f"{table.name}.{column}"] = count
    return rewritten


def main() -> int:
    for name, count in rotate_secrets(get_engine(warehouse_url())).items():
        print(f"{name}: {count} re-encrypted with the first key of SYNC_SECRET_KEY")
    return 0


if __name__ == "__main__":
    sys.exit(main())
