"""The FastAPI application: `uvicorn api.app:app --port $API_PORT` (started by `make up`)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import swagger_ui
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api import config, errors, routes_errors, routes_manage, routes_sync, routes_webhook
from api.body_limit import BodySizeLimit
from api.launches import LOG_FORMAT, launcher

logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # Launch what a previous process accepted but did not launch, and stop cleanly: api/launches.py.
    launcher().start()
    yield
    launcher().stop()


app = FastAPI(
    lifespan=lifespan,
    title="sales-sync API",
    version="1.0.0",
    description="The seed's REST endpoints over Dagster: trigger and follow syncs, manage workspaces, "
    "connections and webhooks. Authenticate with `Authorization: Bearer <token>`.",
    docs_url=None,  # served below from packaged assets: FastAPI's default loads Swagger UI from a CDN
)
# swagger-ui-py ships Swagger UI 5 (OpenAPI 3.1, which FastAPI emits); only its static files are used.
app.mount("/docs-assets", StaticFiles(directory=Path(swagger_ui.__file__).parent / "static"), name="docs-assets")
errors.install(app)
# Outermost of the app's own middleware: a body is limited before any route, and so any token check, reads it.
app.add_middleware(BodySizeLimit, max_bytes=config.max_body_bytes())
app.include_router(routes_manage.router)
app.include_router(routes_sync.router)
app.include_router(routes_webhook.router)
app.include_router(routes_errors.router)


@app.get("/docs", include_in_schema=False)
def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title=f"{app.title} - docs",
        swagger_js_url="/docs-assets/swagger-ui-bundle.js",
        swagger_css_url="/docs-assets/swagger-ui.css",
        swagger_favicon_url="/docs-assets/favicon-32x32.png",
    )


@app.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    return {"status": "ok"}
