"""The FastAPI application: `uvicorn api.app:app --port $API_PORT` (started by `make up`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from api import errors, routes_manage, routes_sync, routes_webhook

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

app = FastAPI(
    title="sales-sync API",
    version="1.0.0",
    description="The seed's REST endpoints over Dagster: trigger and follow syncs, manage workspaces, "
    "connections and webhooks. Authenticate with `Authorization: Bearer <token>`.",
)
errors.install(app)
app.include_router(routes_manage.router)
app.include_router(routes_sync.router)
app.include_router(routes_webhook.router)


@app.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}
