"""Immediate delivery attempts on background threads, so whoever queued an event (the sync loop, a
run-status sensor) neither waits for the receiver nor depends on it.

The outbox row is already durable when it is handed over: a lost thread (the process exits) only
means the delivery sensor sends it instead. After a receiver fails, the workspace cools down: its new
events wait for the sensor's backoff instead of piling up here behind 5 s timeouts.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from sqlalchemy import Engine

from resources.webhooks.delivery import deliver_one, logger
from resources.webhooks.outbox import RetryPolicy

COOLDOWN_S = 30.0
WORKERS = 2


class Dispatcher:
    def __init__(self, workers: int = WORKERS, cooldown_s: float = COOLDOWN_S) -> None:
        self._queue: queue.Queue[tuple[Engine, str, str, RetryPolicy, Any]] = queue.Queue()
        self._workers = workers
        self._cooldown_s = cooldown_s
        self._cooling: dict[str, float] = {}
        self._pending = 0
        self._idle = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()

    def submit(self, engine: Engine, event_id: str, workspace_id: str, policy: RetryPolicy, log: Any = logger) -> None:
        if time.monotonic() < self._cooling.get(workspace_id, 0.0):
            return  # the row stays due; the delivery sensor takes it
        self._ensure_started()
        with self._idle:
            self._pending += 1
        self._queue.put((engine, event_id, workspace_id, policy, log))

    def forget_cooldowns(self) -> None:
        """Start afresh (tests reuse workspace ids across receivers)."""
        self._cooling.clear()

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until every submitted attempt has finished (tests and benchmarks)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if not self._threads:
                for index in range(self._workers):
                    thread = threading.Thread(target=self._work, name=f"webhook-dispatch-{index}", daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _work(self) -> None:
        while True:
            engine, event_id, workspace_id, policy, log = self._queue.get()
            try:
                if time.monotonic() >= self._cooling.get(workspace_id, 0.0):
                    attempt = deliver_one(engine, event_id, policy, log)
                    if attempt is not None and not attempt.delivered:
                        self._cooling[workspace_id] = time.monotonic() + self._cooldown_s
            except Exception as exc:  # never let a worker die; the outbox keeps the row
                log.warning(f"[Webhooks] immediate attempt of {event_id} failed: {type(exc).__name__}")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()


dispatcher = Dispatcher()
