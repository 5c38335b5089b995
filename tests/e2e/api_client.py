"""A thin client for the REST API in end-to-end tests; it keeps every response body it saw, so a test
can check that no secret ever came back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests

from resources.db import get_engine
from resources.settings import warehouse_url

ADMIN = "test-admin-token"


@dataclass
class Api:
    url: str
    token: str | None = ADMIN
    seen: list[str] = field(default_factory=list)

    def call(self, method: str, path: str, *, token: str | None = "default", **kwargs: Any) -> requests.Response:
        bearer = self.token if token == "default" else token
        headers = {**({"Authorization": f"Bearer {bearer}"} if bearer else {}), **kwargs.pop("headers", {})}
        response = requests.request(method, self.url + path, headers=headers, timeout=60, **kwargs)
        self.seen.append(response.text)
        return response

    def as_token(self, token: str | None) -> Api:
        return Api(self.url, token, self.seen)

    def create_workspace(self, workspace_id: str) -> dict[str, Any]:
        response = self.call("POST", "/api/workspaces", json={"id": workspace_id, "name": workspace_id.title()})
        assert response.status_code == 201, response.text
        return response.json()

    def connect(self, workspace_id: str, connector: str, offered: dict[str, Any], **config: Any) -> requests.Response:
        body = {"credentials": offered[connector]["credentials"], "config": {**offered[connector]["config"], **config}}
        return self.call("PUT", f"/api/workspaces/{workspace_id}/connections/{connector}", json=body)

    def token_for(self, workspace_id: str) -> str:
        response = self.call("POST", f"/api/workspaces/{workspace_id}/tokens", json={"name": "ci"})
        assert response.status_code == 201, response.text
        return response.json()["token"]


def sql(statement: str, **params: Any) -> list[tuple]:
    from sqlalchemy import text

    with get_engine(warehouse_url()).begin() as conn:
        result = conn.execute(text(statement), params)
        return [tuple(r) for r in result] if result.returns_rows else []
