"""Webhook configuration (docs/webhooks.md), the test event, the delivery log and redelivery."""

from __future__ import annotations

import math
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Response

from api import auth, config
from api.errors import ERROR_RESPONSES, ApiError, ErrorBody, not_found
from api.models import Delivery, DeliveryList, Webhook, WebhookPut, WebhookTestResult
from api.syncs import iso
from api.webhook_config import deliveries, redeliver, webhook_view
from resources.rate_limit import SlotStore, webhook_test_key
from resources.webhooks.config import clear_webhook, set_webhook
from resources.webhooks.delivery import send_test_event

WEBHOOK_TEST_BURST = 5
RATE_LIMITED = {429: {"model": ErrorBody, "description": "Too many test webhooks; see Retry-After"}}

router = APIRouter(prefix="/api/workspaces/{workspace_id}/webhook", tags=["webhooks"], responses=ERROR_RESPONSES)


def delivery_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "event": row.event,
        "status": row.status,
        "attempts": row.attempts,
        "nextAttemptAt": iso(row.next_attempt_at),
        "lastStatusCode": row.last_status_code,
        "lastError": row.last_error,
        "createdAt": iso(row.created_at),
        "deliveredAt": iso(row.delivered_at),
    }


@router.get("", response_model=Webhook)
def get_webhook(workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    """The URL and whether a secret is set; never the secret."""
    return webhook_view(config.engine(), workspace_id)


@router.put("", response_model=Webhook)
def put_webhook(body: WebhookPut, workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    """Set the URL (http or https, else 400) and the signing secret (stored encrypted)."""
    engine = config.engine()
    set_webhook(engine, workspace_id, body.webhookUrl, body.webhookSecret)
    return webhook_view(engine, workspace_id)


@router.delete("", status_code=204, response_class=Response)
def delete_webhook(workspace_id: str = Depends(auth.workspace_access)) -> Response:
    clear_webhook(config.engine(), workspace_id)
    return Response(status_code=204)


@router.post("/test", response_model=WebhookTestResult, responses=RATE_LIMITED)
def test_webhook(workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    """Send the seed's test event (a signed sync.progress) now and report the receiver's answer; it is
    logged in the deliveries like any event. A workspace may send WEBHOOK_TEST_BURST in a row, then one
    per SYNC_WEBHOOK_TEST_INTERVAL_SECONDS (429 with Retry-After beyond that)."""
    engine = config.engine()
    interval = config.webhook_test_interval_s()
    # GCRA with a burst allowance: the slot may be booked up to (burst - 1) intervals ahead, never waited for.
    if SlotStore(engine).reserve(webhook_test_key(workspace_id), interval, (WEBHOOK_TEST_BURST - 1) * interval) is None:
        raise ApiError(
            429,
            "rate_limited",
            f"at most {WEBHOOK_TEST_BURST} test webhooks in a row, then one per {interval:g} s; try again later",
            headers={"Retry-After": f"{math.ceil(interval)}"},
        )
    return send_test_event(engine, workspace_id)


@router.get("/deliveries", response_model=DeliveryList)
def list_deliveries(
    workspace_id: str = Depends(auth.workspace_access),
    limit: int = Query(50, ge=1, le=500),
    status: Literal["pending", "delivered", "failed"] | None = Query(None),
) -> dict[str, Any]:
    rows = deliveries(config.engine(), workspace_id, limit, status)
    return {"workspaceId": workspace_id, "deliveries": [delivery_view(r) for r in rows]}


@router.post("/deliveries/{delivery_id}/redeliver", status_code=202, response_model=Delivery)
def redeliver_delivery(delivery_id: str, workspace_id: str = Depends(auth.workspace_access)) -> dict[str, Any]:
    """Queue the delivery again now (same event id and body, re-signed on send)."""
    row = None if "\x00" in delivery_id else redeliver(config.engine(), workspace_id, delivery_id)
    if row is None:
        raise not_found(f"delivery {delivery_id!r}")
    return delivery_view(row)
