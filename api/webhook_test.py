"""POST …/webhook/test: the seed's test event, signed, sent once now (not through the outbox).

Interim sender until the webhook delivery module (issue 7) lands on main; it then replaces this one."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import Engine, select

from resources import schema
from resources.secrets import decrypt_text
from resources.settings import allow_private_webhooks

TIMEOUT_S = 5.0
TEST_EVENT_DATA = {"jobType": "test", "progress": {"current": 50, "total": 100, "message": "Test webhook notification"}}


def _refused(url: str) -> str | None:
    """Loopback/private/link-local receivers need WEBHOOK_ALLOW_PRIVATE (DESIGN.md §8)."""
    if allow_private_webhooks():
        return None
    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return "the webhook host does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            return "the webhook URL resolves to a private address"
    return None


def send_test_event(engine: Engine, workspace_id: str) -> dict[str, Any]:
    ws = schema.workspaces
    with engine.connect() as conn:
        row = conn.execute(select(ws.c.webhook_url, ws.c.webhook_secret).where(ws.c.id == workspace_id)).one()
    if not row.webhook_url:
        return {"delivered": False, "statusCode": None, "error": "no webhook configured"}
    refused = _refused(row.webhook_url)
    if refused:
        return {"delivered": False, "statusCode": None, "error": refused}
    body = json.dumps(
        {
            "event": "sync.progress",
            "id": str(uuid.uuid4()),
            "workspaceId": workspace_id,
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "data": TEST_EVENT_DATA,
        },
        separators=(",", ":"),
    )
    secret = decrypt_text(row.webhook_secret) if row.webhook_secret else ""
    signature = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Webhook-Signature": signature}
    try:
        response = requests.post(
            row.webhook_url, data=body.encode(), headers=headers, timeout=TIMEOUT_S, allow_redirects=False
        )
    except requests.Timeout:
        return {"delivered": False, "statusCode": None, "error": f"timed out after {TIMEOUT_S:g}s"}
    except requests.RequestException as exc:
        return {"delivered": False, "statusCode": None, "error": f"could not connect ({type(exc).__name__})"}
    ok = 200 <= response.status_code < 300
    return {
        "delivered": ok,
        "statusCode": response.status_code,
        "error": None if ok else f"HTTP {response.status_code}",
    }
