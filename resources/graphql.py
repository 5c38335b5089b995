"""What the GraphQL vendors (monday.com, Fireflies.ai) share: one POST endpoint, and errors reported as an
``errors`` array, inside a 200 as often as not, so every body is checked."""

from __future__ import annotations

from typing import Any, ClassVar

import requests

from resources.http import VendorClient, VendorFault, json_body


class GraphQLClient(VendorClient):
    errors_in_success_bodies = True
    graphql_path: ClassVar[str]

    def query(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """The ``data`` of one query."""
        body = self.request_json("POST", self.graphql_path, json={"query": query, "variables": variables})
        return body.get("data") or {}

    def extract_error(self, response: requests.Response) -> VendorFault | None:
        """The first error of the ``errors`` array: its code (``code`` or ``extensions.code``), its message
        and the vendor's retry hint, if any."""
        body = json_body(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        if not errors:
            return self.other_error(body)
        first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
        code = first.get("code") or (first.get("extensions") or {}).get("code")
        return VendorFault(code, str(first.get("message", "")), self.retry_hint(first, body, response))

    def other_error(self, body: Any) -> VendorFault | None:
        """An error body not in the GraphQL shape (a vendor's legacy one); None by default."""
        return None

    def retry_hint(self, error: dict[str, Any], body: Any, response: requests.Response) -> float | None:
        """Seconds until the vendor wants a retry, as its error says; None to fall back on Retry-After."""
        return None

    def describe(self, response: requests.Response, fault: VendorFault | None) -> str:
        if fault is None:
            return super().describe(response, fault)
        where = f"{response.request.method} {self._path(response.url)}"
        return f"HTTP {response.status_code} on {where}: {fault.code or 'error'}: {fault.message}"
