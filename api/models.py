"""Request and response bodies: they make the OpenAPI document that Schemathesis checks responses against."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from resources.connection_config import InvalidConnectionConfig, validate_connection_config
from resources.webhooks.destination import InvalidWebhookUrl, validate_webhook_url
from sync_assets.partitions import WORKSPACE_KEY_PATTERN

JobStatus = Literal["queued", "running", "completed", "completed_with_errors", "failed", "canceled"]
MAX_TIMEOUT_MS = 7 * 24 * 3600 * 1000


def no_nul(value: Any) -> Any:
    """Postgres text and jsonb cannot hold NUL characters: refuse them as input (400), not at the INSERT."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            no_nul(item)
    elif isinstance(value, list):
        for item in value:
            no_nul(item)
    return value


Text = Annotated[str, AfterValidator(no_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(no_nul)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- management ----------------------------------------------------------------------------------


class WorkspaceCreate(Strict):
    id: str = Field(pattern=rf"^{WORKSPACE_KEY_PATTERN.pattern}$", description="1-63 of a-z 0-9 _ -, first a-z or 0-9")
    name: Text = Field(min_length=1, max_length=255)


class Workspace(BaseModel):
    id: str
    name: str
    status: str
    createdAt: str | None
    updatedAt: str | None
    webhookConfigured: bool
    connections: list[str]


class TokenCreate(Strict):
    name: Text | None = Field(default=None, max_length=255)
    expiresAt: datetime | None = Field(
        default=None, description="RFC 3339 instant with a time zone, in the future; null: the token never expires"
    )

    @field_validator("expiresAt")
    @classmethod
    def future_instant(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("must carry a time zone (e.g. Z)")
        if value <= datetime.now(UTC):
            raise ValueError("must be in the future")
        return value


class TokenInfo(BaseModel):
    """A workspace token as it can be shown again: never the token itself."""

    id: int
    workspaceId: str
    name: str | None
    createdAt: str | None
    expiresAt: str | None
    lastUsedAt: str | None


class TokenIssued(TokenInfo):
    token: str = Field(description="Shown once: only its hash is stored")


class TokenList(BaseModel):
    workspaceId: str
    tokens: list[TokenInfo]


class ConnectionPut(Strict):
    credentials: dict[str, Any] = Field(min_length=1, description="Encrypted at rest; never returned")
    config: JsonObject = Field(
        default_factory=dict,
        description="Tuning of this connection's own sync, e.g. page_size, lookback_hours, a tighter rate_limit. "
        "Vendor endpoints are platform settings: base_url and token_url are refused.",
    )

    @field_validator("config")
    @classmethod
    def tenant_config(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            return validate_connection_config(value)
        except InvalidConnectionConfig as exc:
            raise ValueError(str(exc)) from None


class Connection(BaseModel):
    connector: str
    status: str
    config: dict[str, Any]
    hasCredentials: bool
    lastSyncAt: str | None
    createdAt: str | None
    updatedAt: str | None


class ConnectionList(BaseModel):
    workspaceId: str
    connections: list[Connection]


# --- sync ----------------------------------------------------------------------------------------


class SyncRequest(Strict):
    fullRefresh: bool = False
    timeoutMs: int | None = Field(default=None, ge=1000, le=MAX_TIMEOUT_MS, description="Maps to dagster/max_runtime")


class SyncAccepted(BaseModel):
    syncId: str
    jobId: str
    status: Literal["queued"]
    statusUrl: str


class ConnectorResult(BaseModel):
    connector: str
    status: str
    recordsSynced: int
    recordsDeleted: int  # rows marked deleted: deleted, archived, trashed or merged at the vendor
    recordsFailed: int
    startedAt: str | None
    completedAt: str | None
    durationMs: int | None
    error: str | None
    errors: list[str]


class JobSummary(BaseModel):
    jobId: str
    syncId: str | None
    workspaceId: str | None
    status: JobStatus
    dagsterStatus: str | None  # null until the run is created, a moment after the 202
    jobName: str
    syncType: str
    fullRefresh: bool
    connectors: list[str]
    attempts: int
    createdAt: str | None
    startedAt: str | None
    completedAt: str | None
    durationMs: int | None
    recordsSynced: int
    recordsDeleted: int  # rows marked deleted: deleted, archived, trashed or merged at the vendor
    recordsFailed: int


class Job(JobSummary):
    results: list[ConnectorResult]
    errors: list[str]
    error: str | None


class JobList(BaseModel):
    workspaceId: str
    jobs: list[JobSummary]


class HistoryEntry(ConnectorResult):
    id: int
    jobId: str | None
    syncId: str | None
    syncType: str
    mode: str | None


class History(BaseModel):
    workspaceId: str
    history: list[HistoryEntry]


class ActiveJob(BaseModel):
    jobId: str
    status: JobStatus
    connectors: list[str]


class ConnectorStatus(BaseModel):
    connector: str
    connectionStatus: str
    lastStatus: str | None
    lastSyncAt: str | None
    lastStartedAt: str | None
    lastCompletedAt: str | None
    recordsSynced: int
    recordsDeleted: int  # rows marked deleted: deleted, archived, trashed or merged at the vendor
    recordsFailed: int
    lastError: str | None
    activeJobId: str | None


class SyncStatus(BaseModel):
    workspaceId: str
    activeJob: ActiveJob | None
    connectors: list[ConnectorStatus]


# --- webhooks ------------------------------------------------------------------------------------


class WebhookPut(Strict):
    webhookUrl: Text = Field(max_length=2048, description="An absolute http:// or https:// URL")
    webhookSecret: Text = Field(min_length=1, max_length=1024, description="HMAC-SHA256 key; never returned")

    @field_validator("webhookUrl")
    @classmethod
    def http_url(cls, value: str) -> str:
        try:
            return validate_webhook_url(value)
        except InvalidWebhookUrl as exc:
            raise ValueError(str(exc)) from None


class Webhook(BaseModel):
    workspaceId: str
    configured: bool
    webhookUrl: str | None
    secretSet: bool


class WebhookTestResult(BaseModel):
    delivered: bool
    statusCode: int | None
    error: str | None


class Delivery(BaseModel):
    id: str
    event: str
    status: str
    attempts: int
    nextAttemptAt: str | None
    lastStatusCode: int | None
    lastError: str | None
    createdAt: str | None
    deliveredAt: str | None


class DeliveryList(BaseModel):
    workspaceId: str
    deliveries: list[Delivery]


# --- dead letters ----------------------------------------------------------------------------------


MAX_ROW_ID = 2**63 - 1  # a BIGINT id: a larger number is no id, and never reaches the database
RowId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]


class DeadLetter(BaseModel):
    id: int
    connector: str
    entity: str
    sourceId: str | None
    runId: str | None
    error: str
    payload: Any = Field(description="The record as the vendor sent it (the workspace's own data)")
    createdAt: str | None
    resolvedAt: str | None


class DeadLetterList(BaseModel):
    workspaceId: str
    errors: list[DeadLetter]
    nextCursor: int | None = Field(description="Pass as `cursor` for the next (older) page; null on the last")


class ReplayRequest(Strict):
    connector: str | None = Field(default=None, max_length=32)
    entity: str | None = Field(default=None, pattern=r"^[a-z_]{1,32}$")
    errorIds: list[RowId] | None = Field(default=None, max_length=1000)


class ReplayResult(BaseModel):
    workspaceId: str
    replayed: int
    resolved: int
    stillFailing: int
    skippedNewer: int
