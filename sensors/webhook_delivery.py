"""Delivers due rows of the webhook outbox: first attempts the dispatcher missed, and retries."""

from __future__ import annotations

from dagster import DefaultSensorStatus, SensorEvaluationContext, SkipReason, sensor

from resources.notifier import NotifierResource

INTERVAL_S = 5
# Stay well inside the 60 s sensor tick timeout; what is left waits for the next tick.
TICK_BUDGET_S = 40.0


@sensor(
    name="webhook_delivery",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=INTERVAL_S,
    description="Sends due webhook_deliveries rows; failures are retried with backoff for ~24 h.",
)
def webhook_delivery_sensor(context: SensorEvaluationContext, notifier: NotifierResource) -> SkipReason:
    report = notifier.deliver_due(log=context.log, budget_s=TICK_BUDGET_S)
    return SkipReason(str(report))
