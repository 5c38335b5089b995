"""The event envelope and its signature: the exact bytes signed are the bytes sent."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

EVENTS = ("sync.progress", "sync.completed", "sync.failed", "sync.canceled")

SIGNATURE_HEADER = "X-Webhook-Signature"
ID_HEADER = "X-Webhook-Id"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render_body(event_id: str, event: str, workspace_id: str, data: dict[str, Any], at: datetime) -> str:
    """Compact JSON with a fixed key order; ``timestamp`` is when this body was signed."""
    envelope = {"event": event, "id": event_id, "workspaceId": workspace_id, "timestamp": iso_utc(at), "data": data}
    return json.dumps(envelope, separators=(",", ":"), default=str)


def restamp(body: str, at: datetime) -> str:
    """The same event (same id and data) signed afresh, so a retry passes the receiver's replay window."""
    envelope = json.loads(body)
    return render_body(envelope["id"], envelope["event"], envelope["workspaceId"], envelope["data"], at)


def signature(body: str, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def signed_headers(body: str, secret: str, event_id: str, at: datetime) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": "sales-sync-webhooks/1",
        SIGNATURE_HEADER: signature(body, secret),
        ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(int(at.timestamp())),
    }
