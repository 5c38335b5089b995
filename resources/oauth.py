"""Bearer auth with the OAuth 2 refresh-token grant, shared by the vendors that use it
(HubSpot, Salesforce, Google Drive)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import requests

from resources.http import VendorClient, VendorError, VendorFault, json_body

# Refresh this long before a token's announced expiry, so no call goes out with a dying token.
TOKEN_REFRESH_MARGIN_S = 60


class OAuthRefreshClient(VendorClient):
    """Holds the access token, refreshes it ahead of ``expires_in`` (and once on a 401, via
    ``VendorClient.request``), and reports a refused refresh as a clear ``VendorError``.

    Subclasses set ``token_endpoint`` (an absolute URL) in ``__init__``."""

    # Lifetime to assume when the token response has no ``expires_in``; None: no known expiry.
    default_expires_in_s: ClassVar[float | None] = None
    no_refresh_token_message: ClassVar[str] = "the access token was rejected (401) and there is no refresh_token"

    token_endpoint: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._access_token: str | None = self.credentials.get("access_token")
        self._expires_at = float("inf") if self._access_token else 0.0

    def authorize(self, headers: dict[str, str]) -> None:
        if self._access_token is None or time.time() > self._expires_at - TOKEN_REFRESH_MARGIN_S:
            self.refresh_auth()
        headers["Authorization"] = f"Bearer {self._access_token}"

    def refresh_auth(self) -> None:
        if not self.credentials.get("refresh_token"):
            raise VendorError(self.vendor, self.no_refresh_token_message, 401)
        body = self.request_json(
            "POST",
            self.token_endpoint,
            data={
                "grant_type": "refresh_token",
                "client_id": self.credentials.get("client_id", ""),
                "client_secret": self.credentials.get("client_secret", ""),
                "refresh_token": self.credentials["refresh_token"],
            },
            authorized=False,
        )
        self.accept_token(body)

    def accept_token(self, body: dict[str, Any]) -> None:
        """Take a token response; vendors with extra fields (Salesforce's instance_url) extend this."""
        self._access_token = body["access_token"]
        lifetime = body.get("expires_in", self.default_expires_in_s)
        self._expires_at = float("inf") if lifetime is None else time.time() + float(lifetime)

    def is_token_response(self, response: requests.Response) -> bool:
        return response.url.split("?")[0] == self.token_endpoint

    def classify(self, response: requests.Response) -> None:
        if self.is_token_response(response) and response.status_code in (400, 401):
            detail = self.describe(response, self.extract_error(response))
            raise VendorError(self.vendor, f"OAuth refresh refused: {detail}", response.status_code)
        super().classify(response)

    @staticmethod
    def oauth_error(response: requests.Response) -> VendorFault | None:
        """An OAuth 2 token endpoint's error body: ``{"error", "error_description"}``."""
        body = json_body(response)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return VendorFault(body["error"], str(body.get("error_description", "")))
        return None
