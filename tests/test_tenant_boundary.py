"""The tenant boundary around the syncs (issue 19): no tenant reaches the platform's network through a
connection, no tenant's rate-limit setting delays another, no error carries SQL or a foreign body, and
rotating the encryption key keeps every connection working. Real Postgres, the sandbox over HTTP, and
loopback listeners standing in for internal services."""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import AssetKey
from dagster._serdes import serialize_value
from sqlalchemy import text

from definitions import connector_assets
from resources.connection_config import InvalidConnectionConfig
from resources.control_plane import upsert_connection
from resources.egress import Destinations, EgressPolicy, EgressRefused, ResponseTooLarge, guarded_session
from resources.endpoints import vendor_egress_policy
from resources.http import RetrySettings, VendorClient
from resources.notifier import NotifierResource
from resources.rate_limit import CredentialLimiter, SlotStore, credential_key
from resources.secrets import decrypt_text, generate_key
from resources.webhooks.config import get_webhook, set_webhook
from resources.webhooks.dispatcher import dispatcher
from scripts.rotate_key import rotate_secrets
from sensors.run_status import error_text, root_cause, sync_failed_sensor
from sync_assets.partitions import InvalidWorkspaceId, validate_workspace_id
from tests.conftest import register
from tests.receiver import Receiver
from tests.support import rows, run_sync
from tests.test_webhooks import evaluate

HUBSPOT = next(a for a in connector_assets if AssetKey(["hubspot", "deals"]) in a.keys)
DRIVE = next(a for a in connector_assets if AssetKey(["google_drive", "documents"]) in a.keys)
SALESFORCE = next(a for a in connector_assets if AssetKey(["salesforce", "deals"]) in a.keys)
INTERNAL_SECRET = "INTERNAL-METADATA-CREDENTIALS-7f3a"
SMALL_HUBSPOT = {"hubspot": {"deals": 30, "contacts": 10, "companies": 5, "tasks": 5}}


class Listener:
    """A loopback HTTP service that records every request; ``answer`` decides what it sends back."""

    def __init__(self, answer=None) -> None:
        self.requests: list[str] = []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                listener.requests.append(f"{self.command} {self.path}")
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = (answer or listener.secret_answer)(self.path)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                for chunk in body:
                    self.wfile.write(chunk)

            do_GET = do_POST = do_PUT = _any  # noqa: N815 - http.server's naming

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def secret_answer(_path: str) -> tuple[int, dict[str, str], list[bytes]]:
        body = json.dumps({"message": INTERNAL_SECRET, "access_token": INTERNAL_SECRET}).encode()
        return 500, {"Content-Type": "application/json", "Content-Length": str(len(body))}, [body]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def internal() -> Iterator[Listener]:
    """An internal service on loopback that a tenant would love to read."""
    service = Listener()
    yield service
    service.stop()


def step_errors(result) -> list[str]:
    """The message of each failed step's own exception, below Dagster's wrappers (as sync.failed reports it)."""
    return [error_text(root_cause(e.event_specific_data.error)) for e in result.get_step_failure_events()]


def client(base_url: str, policy: EgressPolicy, **kwargs) -> VendorClient:
    limiter = CredentialLimiter(SlotStore(None), "test", None)
    return VendorClient(base_url, limiter, RetrySettings(max_retries=0), egress_policy=policy, **kwargs)


# --- the egress guard ------------------------------------------------------------------------------

REFUSED = {
    "127.0.0.1": "a loopback address",
    "10.1.2.3": "a private address",
    "172.16.0.1": "a private address",
    "192.168.1.1": "a private address",
    "169.254.169.254": "a link-local address",
    "100.100.100.200": "a shared (carrier-grade NAT, cloud metadata) address",
    "100.64.0.1": "a shared (carrier-grade NAT, cloud metadata) address",
    "0.0.0.0": "a 'this network' address",
    "192.0.0.1": "an IETF protocol assignment address",
    "192.0.2.1": "a documentation address",
    "192.88.99.1": "a 6to4 relay address",
    "198.18.0.1": "a benchmarking address",
    "224.0.0.1": "a multicast address",
    "255.255.255.255": "a reserved address",
    "::1": "a loopback address",
    "::": "an unspecified address",
    "fe80::1": "a link-local address",
    "fec0::1": "a site-local address",
    "fc00::1": "a unique local address",
    "ff02::1": "a multicast address",
    "2001:db8::1": "a documentation address",
    "::ffff:127.0.0.1": "the IPv4-mapped form of 127.0.0.1, a loopback address",
    "::ffff:169.254.169.254": "the IPv4-mapped form of 169.254.169.254, a link-local address",
    "2002:7f00:1::1": "the 6to4 form of 127.0.0.1, a loopback address",
    "2002:a9fe:a9fe::1": "the 6to4 form of 169.254.169.254, a link-local address",
    "64:ff9b::7f00:1": "the NAT64 form of 127.0.0.1, a loopback address",
    "64:ff9b::a64:6464": "the NAT64 form of 10.100.100.100, a private address",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "the Teredo form of 127.0.0.1, a loopback address",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": "a Teredo tunnel address",  # client 8.8.8.8
}


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_every_non_public_range_is_refused_before_connecting(address):
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy().addresses(address, 80)
    assert str(refused.value) == f"{address} resolves to {ipaddress.ip_address(address)}, {REFUSED[address]}"
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(EgressRefused, match=f"resolves to {ipaddress.ip_address(address)},"):
        client(f"http://{host}", EgressPolicy()).request("GET", "/latest/meta-data/")


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address):
    assert EgressPolicy().addresses(address, 443) == [address]


def test_a_name_resolving_to_loopback_is_refused_and_the_listener_receives_nothing(internal):
    with pytest.raises(EgressRefused, match=r"^localhost resolves to .*, a loopback address"):
        client(f"http://localhost:{internal.port}", EgressPolicy()).request("GET", "/admin")
    assert internal.requests == []


def test_only_the_operators_allowed_host_and_port_reach_loopback(internal, monkeypatch):
    other = Listener()
    try:
        monkeypatch.setenv("SYNC_EGRESS_ALLOWED_HOSTS", f"127.0.0.1:{internal.port}")
        policy = vendor_egress_policy()
        assert client(internal.url, policy).session.get(f"{internal.url}/ok").status_code == 500
        with pytest.raises(EgressRefused, match="a loopback address"):
            client(other.url, policy).request("GET", "/other-port")
        assert (len(internal.requests), other.requests) == (1, [])
    finally:
        other.stop()


def test_a_redirect_to_loopback_is_checked_again_and_refused(monkeypatch):
    target = Listener()

    def redirect(path: str):
        location = f"{target.url}/computeMetadata/v1/" if path == "/same-host" else "http://example.com/"
        return 302, {"Location": location, "Content-Length": "0"}, []

    vendor = Listener(redirect)
    try:
        # The vendor itself is allowed (as the sandbox is); the port it redirects to is not.
        policy = EgressPolicy.from_entries([f"127.0.0.1:{vendor.port}"])
        # Both ports are the client's destinations: the egress guard itself must refuse the second.
        api = client(vendor.url, policy, destinations=Destinations((vendor.url, target.url), "Test"))
        with pytest.raises(EgressRefused, match="^127.0.0.1 resolves to 127.0.0.1, a loopback address$"):
            api.request("GET", "/same-host")
        with pytest.raises(EgressRefused, match=r"^http://example.com is not a Vendor host$"):
            client(vendor.url, policy).request("GET", "/other-host")
        assert vendor.requests == ["GET /same-host", "GET /other-host"]
        assert target.requests == []
    finally:
        vendor.stop()
        target.stop()


@pytest.mark.parametrize("declared", [True, False])
def test_a_response_over_the_cap_is_refused_unread(declared):
    def huge(_path: str):
        chunk = b"x" * 65536
        headers = {"Content-Length": str(64 * len(chunk))} if declared else {"Connection": "close"}
        return 200, headers, [chunk] * 64

    service = Listener(huge)
    try:
        session = guarded_session(
            EgressPolicy.from_entries([f"127.0.0.1:{service.port}"]), max_response_bytes=1_000_000
        )
        with pytest.raises(ResponseTooLarge, match=f"127.0.0.1:{service.port}.* over the 1000000-byte cap|exceeded"):
            session.get(f"{service.url}/big", timeout=30)
        assert session.get  # the session stays usable
    finally:
        service.stop()


# --- connection config cannot name a host -----------------------------------------------------------


@pytest.mark.parametrize("key", ["base_url", "token_url", "instance_url"])
def test_a_connection_config_cannot_name_an_endpoint(warehouse, key, internal):
    with pytest.raises(InvalidConnectionConfig, match=f"^config.{key}: vendor endpoints are platform settings"):
        upsert_connection(warehouse, "ws", "hubspot", {"access_token": "t"}, {key: internal.url})


def test_legacy_endpoint_config_is_ignored_and_the_internal_service_receives_nothing(
    warehouse, instance, sandbox, internal
):
    """A row stored before the check (or written around it): the sync calls the platform's endpoints."""
    sandbox.reset(sizes={"google_drive": {"files": 20}, **SMALL_HUBSPOT})
    register(warehouse, instance, sandbox, "legacy", ["google_drive", "hubspot"])
    hostile = {"base_url": internal.url, "token_url": f"{internal.url}/graphql?query=mutation"}
    with warehouse.begin() as conn:
        conn.execute(text("UPDATE connections SET config = CAST(:c AS jsonb)"), {"c": json.dumps(hostile)})
    assert run_sync(instance, [DRIVE, HUBSPOT], "legacy").success
    assert rows("SELECT status FROM sync_log WHERE workspace_id = 'legacy'") == [("completed",), ("completed",)]
    assert internal.requests == []


def test_a_salesforce_instance_url_off_salesforce_is_refused(warehouse, instance, sandbox, internal):
    register(warehouse, instance, sandbox, "sf-ssrf", ["salesforce"])
    credentials = {"access_token": "stolen", "instance_url": internal.url}
    upsert_connection(warehouse, "sf-ssrf", "salesforce", credentials, {})
    result = run_sync(instance, SALESFORCE, "sf-ssrf", selection=["salesforce/deals"])
    assert not result.success
    assert step_errors(result) == ["[Salesforce] instance_url is not a Salesforce (sandbox) host; refusing to call it"]
    assert internal.requests == []


# --- quotas ------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_hostile_rate_limit_does_not_delay_another_tenant(warehouse, instance, sandbox):
    """Two workspaces authorised the platform's Drive app, so they share its OAuth client's quota key.
    One stored a 1-request-per-30-days limit (written around the API's check): its own sync fails at
    once with a clear error, and the shared slot stays where the platform's pace puts it."""
    sandbox.reset(sizes={"google_drive": {"files": 30}})
    register(warehouse, instance, sandbox, "hostile", ["google_drive"])
    register(warehouse, instance, sandbox, "victim", ["google_drive"])
    month = json.dumps({"rate_limit": {"requests": 1, "per_seconds": 30 * 86400}})
    with warehouse.begin() as conn:
        conn.execute(
            text("UPDATE connections SET config = CAST(:c AS jsonb) WHERE workspace_id = 'hostile'"), {"c": month}
        )

    assert not run_sync(instance, DRIVE, "hostile").success
    ((error,),) = rows("SELECT error FROM sync_log WHERE workspace_id = 'hostile'")
    assert error == (
        "the rate limit of this connection's rate_limit (1 per 2.592e+06 s) is booked more than 120 s ahead; "
        "the call was not made, a later sync retries"
    )
    client_id = sandbox.connections()["google_drive"]["credentials"]["client_id"]
    shared = credential_key("google_drive", client_id)
    ((ahead,),) = rows(
        "SELECT next_free_at - extract(epoch FROM clock_timestamp()) FROM rate_limit_slots WHERE key = :k", k=shared
    )
    assert ahead < 1.0  # the platform's pace (5 ms a call), not a month

    started = time.monotonic()
    assert run_sync(instance, DRIVE, "victim").success
    assert rows("SELECT status FROM sync_log WHERE workspace_id = 'victim'") == [("completed",)]
    assert time.monotonic() - started < 120  # never waited on the hostile tenant's slot


def test_a_wait_beyond_the_cap_fails_fast_and_reserves_nothing(warehouse):
    from resources.db import get_engine
    from resources.rate_limit import RateLimit, RateLimitBacklog
    from resources.settings import warehouse_url

    store = SlotStore(get_engine(warehouse_url()))
    slept: list[float] = []
    limiter = CredentialLimiter(store, "k", RateLimit(1, 10), slept.append, max_wait_s=15, label="the test key")
    limiter.acquire(), limiter.acquire()  # now, then ~10.3 s ahead (slept)
    with pytest.raises(
        RateLimitBacklog, match=r"^the rate limit of the test key \(1 per 10 s\) is booked more than 15 s"
    ):
        limiter.acquire()  # would be ~20.6 s ahead
    ((ahead,),) = rows("SELECT next_free_at - extract(epoch FROM clock_timestamp()) FROM rate_limit_slots")
    assert 15 < ahead < 21  # the refused call booked nothing
    assert len(slept) == 1


# --- what errors carry -------------------------------------------------------------------------------


def test_no_sql_and_no_foreign_body_reaches_sync_log_webhooks_or_the_event_log(
    warehouse, instance, sandbox, internal, monkeypatch
):
    """A warehouse failure whose driver text quotes the statement and the rows: sync_log, the sync.failed
    webhook and the Dagster event log say only which kind of warehouse error it was."""
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "1")
    receiver = Receiver().start()
    try:
        sandbox.reset(sizes=SMALL_HUBSPOT)
        register(warehouse, instance, sandbox, "sqlgrep", ["hubspot"])
        assert set_webhook(warehouse, "sqlgrep", receiver.url, "s3cret")
        dispatcher.forget_cooldowns()
        with warehouse.begin() as conn:
            conn.execute(text("ALTER TABLE deals ADD CONSTRAINT no_deals_today CHECK (source_id = 'none') NOT VALID"))
        try:
            result = run_sync(instance, HUBSPOT, "sqlgrep", selection=["hubspot/deals"])
        finally:
            with warehouse.begin() as conn:
                conn.execute(text("ALTER TABLE deals DROP CONSTRAINT no_deals_today"))
        assert not result.success
        notifier = NotifierResource()
        evaluate(sync_failed_sensor, instance, result, notifier, failure=True)
        (failed,) = receiver.wait_for("sync.failed")
        dispatcher.wait_idle(15)
    finally:
        receiver.stop()

    ((error,),) = rows("SELECT error FROM sync_log WHERE workspace_id = 'sqlgrep'")
    assert error == "warehouse error: CheckViolation (SQLSTATE 23514)"
    assert failed.envelope["data"]["error"] == error
    assert step_errors(result) == [error]
    events = instance.all_logs(result.run_id)
    stored = (
        json.dumps([serialize_value(e) for e in events])
        + json.dumps(rows("SELECT error, errors FROM sync_log"), default=str)
        + json.dumps(rows("SELECT payload, last_error FROM webhook_deliveries"), default=str)
    )
    for telltale in ("INSERT INTO", "SELECT ", "[SQL", "Failing row", "COPY", "no_deals_today", INTERNAL_SECRET):
        assert telltale not in stored, telltale


# --- keys and ids ------------------------------------------------------------------------------------


def test_key_rotation_keeps_every_connection_and_webhook_working(warehouse, instance, sandbox, monkeypatch):
    old, new = generate_key(), generate_key()
    monkeypatch.setenv("SYNC_SECRET_KEY", old)
    sandbox.reset(sizes=SMALL_HUBSPOT)
    register(warehouse, instance, sandbox, "rotated", ["hubspot"])
    assert set_webhook(warehouse, "rotated", "https://hooks.example.com/x", "hook-secret")
    before = rows("SELECT credentials FROM connections") + rows("SELECT webhook_secret FROM workspaces")

    monkeypatch.setenv("SYNC_SECRET_KEY", f"{new},{old}")
    assert rotate_secrets(warehouse) == {"connections.credentials": 1, "workspaces.webhook_secret": 1}
    monkeypatch.setenv("SYNC_SECRET_KEY", new)  # the old key retired
    after = rows("SELECT credentials FROM connections") + rows("SELECT webhook_secret FROM workspaces")
    assert not set(before) & set(after)
    assert [decrypt_text(token) for (token,) in after][1] == "hook-secret"
    assert get_webhook(warehouse, "rotated").secret == "hook-secret"
    assert run_sync(instance, HUBSPOT, "rotated", selection=["hubspot/deals"]).success
    assert rows("SELECT count(*) FROM deals WHERE workspace_id = 'rotated'") == [(30,)]


@pytest.mark.parametrize("bad", ["acme\n", "acme\r\n", "\nacme", "Acme", "acme corp", ""])
def test_workspace_ids_are_matched_whole(bad):
    with pytest.raises(InvalidWorkspaceId):
        validate_workspace_id(bad)
