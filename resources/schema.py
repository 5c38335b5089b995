"""The warehouse and control-plane schema: one SQLAlchemy MetaData, migrated by Alembic.

Entity tables share a common shape (see ``_entity_table``); each adds the typed columns analysts
query, and keeps the raw vendor record in ``properties``.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# JSONB on Postgres (indexable, compact); plain JSON text on SQLite.
Json = JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)

WORKSPACE_ID = String(63)


def _now_column(name: str) -> Column:
    return Column(name, Timestamp, nullable=False, server_default=func.now())


# --- control plane -------------------------------------------------------------------------------

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", WORKSPACE_ID, primary_key=True),
    Column("name", String(255), nullable=False),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("webhook_url", Text),
    Column("webhook_secret", Text),  # Fernet token, never plaintext
    _now_column("created_at"),
    _now_column("updated_at"),
)

connections = Table(
    "connections",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", WORKSPACE_ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("connector_name", String(32), nullable=False),
    Column("credentials", Text, nullable=False),  # Fernet token of the JSON credentials
    Column("config", Json, nullable=False, server_default="{}"),
    Column("status", String(16), nullable=False, server_default="active"),
    Column("last_sync_at", Timestamp),
    _now_column("created_at"),
    _now_column("updated_at"),
    UniqueConstraint("workspace_id", "connector_name"),
)

# Workspace API tokens: only a SHA-256 of each token is stored (tokens are 256-bit random, so a slow
# hash adds nothing); the plaintext is shown once, when it is created.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", WORKSPACE_ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("name", String(255)),
    _now_column("created_at"),
    Column("expires_at", Timestamp),  # null: never expires
    Column("last_used_at", Timestamp),  # refreshed at most once a minute (api/auth.py)
    Index(None, "workspace_id"),
)

# --- sync record ---------------------------------------------------------------------------------

SYNC_STATUSES = ("pending", "running", "completed", "completed_with_errors", "failed")

sync_log = Table(
    "sync_log",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", WORKSPACE_ID, nullable=False),
    Column("connector_type", String(32), nullable=False),
    Column("sync_type", String(16), nullable=False, server_default="manual"),
    Column("status", String(24), nullable=False, server_default="pending"),
    Column("run_id", String(64)),
    Column("sync_id", String(64)),
    Column("started_at", Timestamp, server_default=func.now()),
    Column("completed_at", Timestamp),
    Column("heartbeat_at", Timestamp),
    Column("records_synced", Integer, nullable=False, server_default="0"),
    Column("records_deleted", Integer, nullable=False, server_default="0"),
    Column("records_failed", Integer, nullable=False, server_default="0"),
    Column("errors", Json),
    Column("error", Text),
    Column("duration_ms", BigInteger),
    Column("mode", String(16)),
    Column("watermark_from", String(64)),
    Column("watermark_to", String(64)),
    Index(None, "workspace_id", "started_at"),
    Index(None, "run_id"),
    Index(None, "status"),
)

OPEN_DEAD_LETTER = "resolved_at IS NULL AND source_id IS NOT NULL"
sync_errors = Table(
    "sync_errors",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("workspace_id", WORKSPACE_ID, nullable=False),
    Column("connector", String(32), nullable=False),
    Column("entity", String(32), nullable=False),
    Column("source_id", String(255)),
    Column("run_id", String(64)),
    Column("error", Text, nullable=False),
    Column("payload", Json),
    _now_column("created_at"),
    Column("resolved_at", Timestamp),
    Index(None, "workspace_id", "connector", "entity"),
    Index(None, "run_id"),
    Index(None, "workspace_id", "resolved_at"),  # a workspace's unresolved dead letters (list, replay)
    # One open dead letter per record: a page read again (a retried step, a lookback window) refreshes it.
    Index(
        "ux_sync_errors_open_record",
        "workspace_id",
        "connector",
        "entity",
        "source_id",
        unique=True,
        postgresql_where=text(OPEN_DEAD_LETTER),
        sqlite_where=text(OPEN_DEAD_LETTER),
    ),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # the event id receivers dedupe on
    Column("workspace_id", WORKSPACE_ID, nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", Text, nullable=False),  # the exact signed body
    Column("dedupe_key", String(160), unique=True),  # e.g. "<run id>:<status>" for run-status events
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, server_default=func.now()),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    _now_column("created_at"),
    Column("delivered_at", Timestamp),
    Index(None, "status", "next_attempt_at"),
    Index(None, "workspace_id", "created_at"),
)

# Syncs the API has accepted but not yet created as Dagster runs (the launch outbox): the 202 commits
# a row here under the workspace lock, and the API's launcher (api/launches.py) creates and queues the
# run with the same id, then deletes the row. A row left ``failed`` reports why its job never started.
LAUNCH_PENDING = "pending"

sync_launches = Table(
    "sync_launches",
    metadata,
    Column("job_id", String(64), primary_key=True),  # the Dagster run id the launcher will use
    Column("workspace_id", WORKSPACE_ID, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False),
    Column("sync_id", String(64), nullable=False),
    Column("job_name", String(64), nullable=False),
    Column("asset_keys", Json),  # the asset selection, or null for the whole job
    Column("tags", Json, nullable=False),
    Column("status", String(16), nullable=False, server_default=LAUNCH_PENDING),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Timestamp, nullable=False, server_default=func.now()),
    Column("error", Text),
    _now_column("created_at"),
    Index(None, "workspace_id", "status"),
    Index(None, "status", "next_attempt_at"),
)

# One row per rate-limited credential: the earliest time the next call may start (GCRA).
rate_limit_slots = Table(
    "rate_limit_slots",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("next_free_at", Float, nullable=False),
)

# --- entity tables -------------------------------------------------------------------------------


ENTITY_FILLFACTOR = 50


def _entity_table(name: str, *typed_columns: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("workspace_id", WORKSPACE_ID, nullable=False, doc="The workspace (tenant) the row belongs to."),
        Column("source", String(32), nullable=False, doc="The connector that wrote the row."),
        Column("source_id", String(255), nullable=False, doc="The record's id at the vendor."),
        *typed_columns,
        Column("properties", Json, doc="The vendor's whole record."),
        Column("source_updated_at", Timestamp),
        # Orders the versions of one record: an upsert never replaces a row with an older version.
        # Microseconds of source_updated_at unless the vendor numbers versions itself (Drive).
        Column("source_version", BigInteger),
        # Soft deletes: a row deleted at the vendor stays with its last known data.
        Column(
            "is_deleted", Boolean, nullable=False, server_default=false(), doc="Deleted at the vendor (a soft delete)."
        ),
        Column("deleted_at", Timestamp),
        Column("merged_into", String(255), doc="The surviving record's source_id when merged away."),
        _now_column("created_at"),
        _now_column("updated_at"),
        UniqueConstraint("workspace_id", "source", "source_id"),
        # Every sync rewrites changed rows in place. Half-empty pages leave room for a row's new version
        # on its own page (a HOT update), so a re-sync skips the index inserts and the table stops
        # growing; at 100 nearly every update moved its row (bench/README.md, load.py).
        postgresql_with={"fillfactor": ENTITY_FILLFACTOR},
    )


deals = _entity_table(
    "deals",
    Column("name", Text),
    Column("amount", Numeric(20, 2)),
    Column("stage", String(255)),
    Column("pipeline", String(255)),
    Column("close_date", Timestamp),
    Column("owner_id", String(255)),
)

contacts = _entity_table(
    "contacts",
    Column("email", String(320)),
    Column("first_name", String(255)),
    Column("last_name", String(255)),
    Column("phone", String(64)),
    Column("company", String(255)),
    Column("title", String(255)),
)

accounts = _entity_table(
    "accounts",
    Column("name", Text),
    Column("domain", String(255)),
    Column("industry", String(255)),
    Column("phone", String(64)),
)

calls = _entity_table(
    "calls",
    Column("title", Text),
    Column("started_at", Timestamp),
    Column("duration_seconds", Integer),
    Column("direction", String(32)),
    Column("url", Text),
    Column("participants", Json),
)

documents = _entity_table(
    "documents",
    Column("title", Text),
    Column("mime_type", String(255)),
    Column("url", Text),
    Column("owner_email", String(320)),
    Column("size_bytes", BigInteger),
    Column("modified_at", Timestamp),
    Column("trashed", Boolean),
)

tasks = _entity_table(
    "tasks",
    Column("title", Text),
    Column("status", String(255)),
    Column("priority", String(64)),
    Column("due_date", Timestamp),
    Column("board", String(255)),
    Column("group_name", String(255)),
)

ENTITY_TABLES: dict[str, Table] = {t.name: t for t in (deals, contacts, accounts, calls, documents, tasks)}
ENTITY_KEY = ("workspace_id", "source", "source_id")
