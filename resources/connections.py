"""The model of a stored connection, as vendor resources receive it (credentials already decrypted)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Connection(BaseModel):
    model_config = ConfigDict(frozen=True)

    workspace_id: str
    connector: str
    credentials: dict[str, Any] = Field(repr=False)
    config: dict[str, Any] = Field(default_factory=dict)
    last_sync_at: datetime | None = None

    def __str__(self) -> str:  # never print credentials
        return f"Connection({self.workspace_id}/{self.connector})"
