"""The ASGI app: every vendor's routes under /{vendor}, the control API under /_sandbox."""

from __future__ import annotations

from fastapi import FastAPI

from .control import control_router
from .core import Vendor
from .gate import VendorGate
from .registry import VENDOR_CLASSES


def build_app(vendor_classes: list[type[Vendor]] | None = None, seed: int = 0) -> FastAPI:
    """A fresh app with its own state (no globals), reset to `seed` with default sizes."""
    vendors = {cls.name: cls() for cls in (vendor_classes or VENDOR_CLASSES)}
    for v in vendors.values():
        v.reset_state(seed, {}, enforce_limits=True)
    app = FastAPI(
        title="sales-sync vendor sandbox",
        docs_url="/_sandbox/docs",
        redoc_url=None,
        openapi_url="/_sandbox/openapi.json",
    )
    app.state.vendors = vendors
    app.include_router(control_router(vendors))
    for name, v in vendors.items():
        app.include_router(v.router(), prefix=f"/{name}")
    app.add_middleware(VendorGate, vendors=vendors)
    return app
