"""The /_sandbox control API: health, connections, reset, mutate, truth, faults, request logs, limits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from . import mutation
from .core import FAULT_KEYS, InvalidRequest, Vendor, json_response


def _err(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")
    return body


def control_router(vendors: dict[str, Vendor]) -> APIRouter:
    r = APIRouter(prefix="/_sandbox")

    def vendor_or_404(name: str) -> Vendor:
        if name not in vendors:
            raise KeyError(name)
        return vendors[name]

    @r.get("/health")
    async def health() -> Response:
        return json_response({"ok": True})

    @r.get("/connections")
    async def connections(request: Request, tenant: str = "default") -> Response:
        host = request.headers.get("host") or f"127.0.0.1:{request.url.port}"
        return json_response({n: v.connection(f"http://{host}/{n}", tenant) for n, v in vendors.items()})

    @r.post("/reset")
    async def reset(request: Request) -> Response:
        try:
            body = await _json(request)
            seed = int(body.get("seed") or 0)
            sizes = body.get("sizes") or {}
            enforce = bool(body.get("enforce_limits", True))
            for name, entity_sizes in sizes.items():  # validate everything before touching any vendor
                if name not in vendors:
                    raise InvalidRequest(f"unknown vendor {name!r}")
                unknown = set(entity_sizes or {}) - set(vendors[name].default_sizes)
                if unknown:
                    raise InvalidRequest(f"{name}: unknown entities {sorted(unknown)}")
            for name, v in vendors.items():
                v.reset_state(seed, {k: int(n) for k, n in (sizes.get(name) or {}).items()}, enforce)
        except (InvalidRequest, ValueError, TypeError, AttributeError) as exc:
            return _err(400, str(exc))
        effective = {n: {**v.default_sizes, **(sizes.get(n) or {})} for n, v in vendors.items()}
        return json_response({"ok": True, "seed": seed, "sizes": effective, "enforce_limits": enforce})

    @r.post("/{vendor}/mutate")
    async def mutate(vendor: str, request: Request) -> Response:
        try:
            v = vendor_or_404(vendor)
            result = mutation.apply(v, await _json(request))
        except KeyError:
            return _err(404, f"unknown vendor {vendor!r}")
        except (InvalidRequest, ValueError, TypeError) as exc:
            return _err(400, str(exc))
        return json_response(result)

    @r.get("/{vendor}/truth")
    async def truth(vendor: str, entity: str = "") -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        try:
            records = vendors[vendor].truth(entity)
        except (InvalidRequest, ValueError) as exc:
            return _err(400, str(exc))
        return json_response({"records": records})

    @r.get("/{vendor}/faults")
    async def get_faults(vendor: str) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        return json_response(vendors[vendor].faults.as_dict())

    @r.post("/{vendor}/faults")
    async def set_faults(vendor: str, request: Request) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        v = vendors[vendor]
        try:
            body = await _json(request)
            unknown = set(body) - FAULT_KEYS - v.extra_fault_keys - {"expire_tokens"}
            if unknown:
                raise InvalidRequest(f"unknown fault settings {sorted(unknown)}")
            if "mutate_after_requests" in body:
                body["mutate_after_requests"] = mutation.validate_triggers(body["mutate_after_requests"])
            body = v.normalize_faults(body)
            if body.pop("expire_tokens", False):  # an action, not a setting: applies to tokens issued so far
                v.tokens.expire_all()
            v.faults.merge(body)
        except (InvalidRequest, ValueError, TypeError) as exc:
            return _err(400, str(exc))
        return json_response(v.faults.as_dict())

    @r.delete("/{vendor}/faults")
    async def clear_faults(vendor: str) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        vendors[vendor].faults.merge({k: None for k in FAULT_KEYS | vendors[vendor].extra_fault_keys})
        return json_response(vendors[vendor].faults.as_dict())

    @r.get("/{vendor}/requests")
    async def requests_log(vendor: str, since_ms: float | None = None) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        return json_response({"requests": vendors[vendor].log.since(since_ms)})

    @r.delete("/{vendor}/requests")
    async def clear_requests(vendor: str) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        vendors[vendor].log.clear()
        return json_response({"ok": True})

    @r.get("/{vendor}/limits")
    async def get_limits(vendor: str) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        v = vendors[vendor]
        return json_response(
            {"limit": v.limiter.limit, "window_s": v.limiter.window_s, "enforce_limits": v.enforce_limits}
        )

    @r.post("/{vendor}/limits")
    async def set_limits(vendor: str, request: Request) -> Response:
        if vendor not in vendors:
            return _err(404, f"unknown vendor {vendor!r}")
        v = vendors[vendor]
        try:
            body = await _json(request)
            limit = body.get("limit")
            window = body.get("window_s")
            v.set_limit(None if limit is None else int(limit), None if window is None else float(window))
            v.enforce_limits = limit is not None  # an explicit limit is meant to be enforced
        except (InvalidRequest, ValueError, TypeError) as exc:
            return _err(400, str(exc))
        return json_response(
            {"limit": v.limiter.limit, "window_s": v.limiter.window_s, "enforce_limits": v.enforce_limits}
        )

    return r
