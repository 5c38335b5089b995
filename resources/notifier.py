"""The webhook notifier resource: queues signed events in the outbox and delivers them.

Bound as ``notifier`` for the sync assets (progress) and the webhook sensors (run outcomes, delivery).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster import ConfigurableResource
from pydantic import Field
from sqlalchemy import Engine

from resources.db import get_engine
from resources.settings import warehouse_url
from resources.webhooks import delivery, outbox
from resources.webhooks.config import has_webhook
from resources.webhooks.dispatcher import dispatcher
from sync_assets.loop import ProgressSink

ROOT_RUN_ID_TAG = "dagster/root_run_id"


def job_id_of(run_id: str, tags: Mapping[str, str]) -> str:
    """The job id users hold is the id of the run they launched; retries of it keep reporting under it."""
    return tags.get(ROOT_RUN_ID_TAG) or run_id


class NotifierResource(ConfigurableResource):
    url: str = Field(default="", description="Warehouse SQLAlchemy URL (the outbox); empty means WAREHOUSE_URL.")
    timeout_s: float = Field(default=5.0, description="Per-attempt HTTP timeout.")
    retry_base_s: float = Field(default=10.0, description="First retry delay; doubles per attempt.")
    retry_cap_s: float = Field(default=4 * 3600.0, description="Longest delay between two attempts.")
    retry_horizon_s: float = Field(default=24 * 3600.0, description="Give up (status failed) this long after queueing.")
    deliver_immediately: bool = Field(
        default=True, description="Attempt each new event at once on a background thread (the sensor retries)."
    )

    @property
    def engine(self) -> Engine:
        return get_engine(self.url or warehouse_url())

    @property
    def policy(self) -> outbox.RetryPolicy:
        return outbox.RetryPolicy(self.timeout_s, self.retry_base_s, self.retry_cap_s, self.retry_horizon_s)

    def notify(self, workspace_id: str, event: str, data: dict[str, Any], dedupe_key: str | None = None) -> str | None:
        """Queue an event (durably) and hand it to a background attempt; returns the event id, or None
        when the workspace has no webhook or the dedupe key was already used."""
        event_id = outbox.enqueue(self.engine, workspace_id, event, data, dedupe_key)
        if event_id and self.deliver_immediately:
            dispatcher.submit(self.engine, event_id, workspace_id, self.policy)
        return event_id

    def progress_sink(self, workspace_id: str, job_id: str) -> ProgressSink | None:
        """A ``sync.progress`` sender for the sync loop, or None when the workspace has no webhook."""
        if not has_webhook(self.engine, workspace_id):
            return None

        def send_progress(connector: str, entity: str, current: int, total: int | None, message: str) -> None:
            data = {
                "jobType": "sync",
                "jobId": job_id,
                "connector": connector,
                "entity": entity,
                "progress": {"current": current, "total": total, "message": message},
            }
            self.notify(workspace_id, "sync.progress", data)

        return send_progress

    def deliver_due(self, log: Any = delivery.logger, budget_s: float = 40.0) -> delivery.DeliveryReport:
        return delivery.deliver_due(self.engine, self.policy, log, budget_s=budget_s)

    def send_test_event(self, workspace_id: str) -> dict[str, Any]:
        return delivery.send_test_event(self.engine, workspace_id, self.policy)
