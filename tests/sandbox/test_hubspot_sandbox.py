"""The HubSpot simulator over real HTTP, against a `python -m sandbox` subprocess (see conftest.py)."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:  # the fixture's class; conftest is not importable as a package module
    from conftest import Sandbox

DEALS = "/crm/v3/objects/deals"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
DEAL_PROPS = {
    "dealname",
    "amount",
    "dealstage",
    "pipeline",
    "closedate",
    "createdate",
    "hs_lastmodifieddate",
    "hs_object_id",
}


def deal_id(index: int) -> str:
    return str(30_000_000 + index)


def epoch_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def get(sb: Sandbox, token: str | None, path: str, **params: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return sb.http.get(f"{sb.hubspot}{path}", params=params, headers=headers)


def search(sb: Sandbox, token: str, body: dict[str, Any], obj: str = "deals") -> requests.Response:
    return sb.http.post(
        f"{sb.hubspot}/crm/v3/objects/{obj}/search", json=body, headers={"Authorization": f"Bearer {token}"}
    )


def modified_filter(op: str, value: str, prop: str = "hs_lastmodifieddate") -> dict[str, Any]:
    return {
        "filterGroups": [{"filters": [{"propertyName": prop, "operator": op, "value": value}]}],
        "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
        "limit": 200,
    }


def all_deals(sb: Sandbox, token: str) -> list[dict[str, Any]]:
    out, after = [], None
    while True:
        page = get(sb, token, DEALS, limit=100, **({"after": after} if after else {})).json()
        out += page["results"]
        if "paging" not in page:
            return out
        after = page["paging"]["next"]["after"]


def test_token_refresh_and_oauth_errors(sandbox: Sandbox) -> None:
    creds = sandbox.credentials()
    assert set(creds) == {"client_id", "client_secret", "refresh_token"}
    assert sandbox.credentials() == creds  # deterministic
    conn = sandbox.control("GET", "connections")["hubspot"]
    assert conn["config"] == {"base_url": sandbox.hubspot}

    r = sandbox.refresh()
    body = r.json()
    assert r.status_code == 200
    assert set(body) == {"token_type", "refresh_token", "access_token", "expires_in", "hub_id"}
    assert (body["token_type"], body["refresh_token"], body["expires_in"]) == ("bearer", creds["refresh_token"], 1800)
    assert get(sandbox, body["access_token"], DEALS).status_code == 200

    bad = sandbox.refresh(refresh_token="nope")
    assert bad.status_code == 400
    err = bad.json()
    assert UUID.match(err.pop("correlationId"))
    assert err == {
        "status": "BAD_REFRESH_TOKEN",
        "message": "missing or unknown refresh token",
        "category": "VALIDATION_ERROR",
        "subCategory": "INVALID_TOKEN",
    }
    wrong_secret = sandbox.refresh(client_secret="nope")
    assert (wrong_secret.status_code, wrong_secret.json()["status"]) == (400, "BAD_CLIENT_ID")


def test_401_without_or_with_unknown_token(sandbox: Sandbox) -> None:
    for token in (None, "not-a-token"):
        r = get(sandbox, token, DEALS)
        assert r.status_code == 401
        body = r.json()
        assert UUID.match(body.pop("correlationId"))
        assert body == {"status": "error", "message": AUTH_MESSAGE, "category": "INVALID_AUTHENTICATION"}


def test_list_pages_to_the_end_with_exact_ids(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 25})
    token = sandbox.token()
    seen, after, pages = [], None, 0
    while True:
        r = get(sandbox, token, DEALS, limit=10, **({"after": after} if after else {}))
        assert r.status_code == 200
        pages += 1
        assert r.headers["X-HubSpot-RateLimit-Max"] == "100"
        assert r.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        assert r.headers["X-HubSpot-RateLimit-Remaining"] == str(100 - pages)
        page = r.json()
        seen += [rec["id"] for rec in page["results"]]
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
        assert page["paging"]["next"]["link"] == f"?after={requests.utils.quote(after, safe='')}"
    assert pages == 3
    assert seen == [deal_id(i) for i in range(25)]

    rec = get(sandbox, token, DEALS, limit=1).json()["results"][0]
    assert set(rec) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert set(rec["properties"]) == DEAL_PROPS
    assert all(isinstance(v, str) for v in rec["properties"].values())
    assert rec["updatedAt"] == rec["properties"]["hs_lastmodifieddate"]
    assert rec["createdAt"] == rec["properties"]["createdate"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", rec["updatedAt"])
    assert (rec["id"], rec["properties"]["hs_object_id"], rec["archived"]) == (deal_id(0), deal_id(0), False)

    # Type id, the date-versioned prefix, properties selection, limit clamp, archived.
    assert get(sandbox, token, "/crm/objects/2026-03/0-3", limit=1).json()["results"] == [rec]
    picked = get(sandbox, token, DEALS, limit=1, properties="dealname,nosuchprop").json()["results"][0]
    assert set(picked["properties"]) == {"dealname", "createdate", "hs_lastmodifieddate", "hs_object_id"}
    sandbox.reset()
    token = sandbox.token()
    assert len(get(sandbox, token, DEALS, limit=500).json()["results"]) == 100
    assert get(sandbox, token, DEALS, archived="true").json() == {"results": []}
    assert get(sandbox, token, f"{DEALS}/{deal_id(7)}").json()["id"] == deal_id(7)
    assert get(sandbox, token, f"{DEALS}/999").status_code == 404


def test_search_gte_returns_exactly_newer_records_in_order(sandbox: Sandbox) -> None:
    token = sandbox.token()
    deals = all_deals(sandbox, token)
    assert len(deals) == 120
    times = [epoch_ms(d["updatedAt"]) for d in deals]
    assert times == sorted(times) and len(set(times)) == 120
    pivot = str(times[50])

    r = search(sandbox, token, modified_filter("GTE", pivot))
    assert r.status_code == 200
    assert "X-HubSpot-RateLimit-Max" not in r.headers  # faithful: search carries no limit headers
    body = r.json()
    assert body["total"] == 70 and "paging" not in body
    assert [x["id"] for x in body["results"]] == [deal_id(i) for i in range(50, 120)]
    assert body["results"] == deals[50:]

    iso = search(sandbox, token, modified_filter("GTE", deals[50]["updatedAt"])).json()
    assert [x["id"] for x in iso["results"]] == [deal_id(i) for i in range(50, 120)]
    gt = search(sandbox, token, modified_filter("GT", pivot)).json()
    assert [x["id"] for x in gt["results"]] == [deal_id(i) for i in range(51, 120)]

    between = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "BETWEEN",
                        "value": str(times[10]),
                        "highValue": str(times[12]),
                    }
                ]
            },
            {"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": [deal_id(3), deal_id(99)]}]},
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "DESCENDING"}],
        "properties": ["amount"],
        "limit": 2,
    }
    page1 = search(sandbox, token, between).json()
    assert page1["total"] == 5 and page1["paging"]["next"] == {"after": "2", "link": "?after=2"}
    assert [x["id"] for x in page1["results"]] == [deal_id(99), deal_id(12)]
    assert set(page1["results"][0]["properties"]) == {"amount", "createdate", "hs_lastmodifieddate", "hs_object_id"}
    page3 = search(sandbox, token, {**between, "after": "4"}).json()
    assert [x["id"] for x in page3["results"]] == [deal_id(3)] and "paging" not in page3


def test_search_10k_cap_and_validation(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 10_500})
    token = sandbox.token()
    by_id = {"sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}], "limit": 200}
    r = search(sandbox, token, {**by_id, "after": "9800"})
    body = r.json()
    assert body["total"] == 10_500
    assert [x["id"] for x in body["results"]] == [deal_id(i) for i in range(9800, 10_000)]
    assert body["paging"]["next"]["after"] == "10000"

    def rejected(body: dict[str, Any]) -> dict[str, Any]:
        r = search(sandbox, token, body)
        assert r.status_code == 400, r.text
        return r.json()

    err = rejected({**by_id, "after": "10000"})
    assert (err["status"], err["category"]) == ("error", "VALIDATION_ERROR")
    assert UUID.match(err["correlationId"])
    rejected({**by_id, "limit": 201})
    one = {"filters": [{"propertyName": "hs_object_id", "operator": "HAS_PROPERTY"}]}
    rejected({"filterGroups": [one] * 6})
    rejected({"filterGroups": [{"filters": one["filters"] * 7}]})
    rejected({"filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "LIKE", "value": "1"}]}]})
    # Past the cap the Airbyte way: restart the offset with an id floor.
    floor = {
        **by_id,
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GTE", "value": deal_id(10_000)}]}],
    }
    rest = search(sandbox, token, floor).json()
    assert rest["total"] == 500 and rest["results"][0]["id"] == deal_id(10_000)


def test_mutate_then_search_finds_exactly_the_mutated_ids(sandbox: Sandbox) -> None:
    token = sandbox.token()
    before = all_deals(sandbox, token)
    newest = before[-1]["updatedAt"]

    first = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "count": 3})
    assert first["ids"] == [deal_id(0), deal_id(1), deal_id(2)]  # the three least recently modified
    second = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "count": 2})
    assert second["ids"] == [deal_id(3), deal_id(4)]
    assert epoch_ms(second["modified_at"]) > epoch_ms(first["modified_at"]) > epoch_ms(newest)
    third = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "ids": [deal_id(1)], "create": 2})
    assert third["ids"] == [deal_id(1), deal_id(120), deal_id(121)]
    assert third["created_ids"] == [deal_id(120), deal_id(121)]

    found = search(sandbox, token, modified_filter("GT", str(epoch_ms(newest)))).json()
    assert [x["id"] for x in found["results"]] == [deal_id(i) for i in (0, 2, 3, 4, 1, 120, 121)]
    assert found["total"] == 7
    by_id = {r["id"]: r for r in found["results"]}
    assert by_id[deal_id(0)]["updatedAt"] == first["modified_at"]
    assert by_id[deal_id(0)]["properties"]["dealname"] == before[0]["properties"]["dealname"] + " (rev 1)"
    assert by_id[deal_id(1)]["properties"]["dealname"] == before[1]["properties"]["dealname"] + " (rev 2)"
    assert by_id[deal_id(1)]["createdAt"] == before[1]["createdAt"]
    assert by_id[deal_id(120)]["createdAt"] == by_id[deal_id(120)]["updatedAt"] == third["modified_at"]
    assert len(all_deals(sandbox, token)) == 122

    since_second = search(sandbox, token, modified_filter("GTE", second["modified_at"])).json()
    assert [x["id"] for x in since_second["results"]] == [deal_id(i) for i in (3, 4, 1, 120, 121)]
    bad = sandbox.http.post(f"{sandbox.url}/_sandbox/hubspot/mutate", json={"entity": "deals", "ids": ["1"]})
    assert bad.status_code == 400


def test_next_429_with_and_without_retry_after_and_5xx(sandbox: Sandbox) -> None:
    token = sandbox.token()
    sandbox.control("POST", "hubspot/faults", {"next_429": 2})
    for _ in range(2):
        r = get(sandbox, token, DEALS)
        assert r.status_code == 429 and "Retry-After" not in r.headers
        body = r.json()
        assert UUID.match(body.pop("correlationId")) and UUID.match(body.pop("requestId"))
        assert body == {
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "policyName": "TEN_SECONDLY_ROLLING",
        }
    assert get(sandbox, token, DEALS).status_code == 200

    sandbox.control("POST", "hubspot/faults", {"next_429": 1, "retry_after_s": 1})
    r = search(sandbox, token, {})
    assert (r.status_code, r.headers.get("Retry-After")) == (429, "1")
    assert search(sandbox, token, {}).status_code == 200

    sandbox.control("POST", "hubspot/faults", {"next_5xx": 1})
    r = get(sandbox, token, DEALS)
    assert r.status_code == 503 and r.json()["status"] == "error"
    assert sandbox.refresh().status_code == 200  # the token endpoint is exempt
    assert get(sandbox, token, DEALS).status_code == 200


def test_random_faults_are_reproducible_after_reset(sandbox: Sandbox) -> None:
    def pattern() -> list[int]:
        sandbox.reset(seed=5)
        token = sandbox.token()
        sandbox.control("POST", "hubspot/faults", {"rate_429": 0.4, "rate_5xx": 0.2})
        return [get(sandbox, token, DEALS, limit=1).status_code for _ in range(30)]

    first = pattern()
    assert first == pattern()
    assert {200, 429, 503} == set(first)


def test_bad_records_are_malformed_but_still_sort_by_real_time(sandbox: Sandbox) -> None:
    token = sandbox.token()
    good = all_deals(sandbox, token)
    sandbox.control("POST", "hubspot/faults", {"bad_records": [deal_id(5), "424242"]})
    listed = all_deals(sandbox, token)
    assert listed[5]["properties"]["hs_lastmodifieddate"] == "not-a-date"
    assert listed[5]["updatedAt"] == good[5]["updatedAt"]
    assert [d for i, d in enumerate(listed) if i != 5] == [d for i, d in enumerate(good) if i != 5]

    found = search(sandbox, token, modified_filter("GTE", good[5]["updatedAt"])).json()
    assert [x["id"] for x in found["results"][:2]] == [deal_id(5), deal_id(6)]
    assert found["results"][0]["properties"]["hs_lastmodifieddate"] == "not-a-date"

    contact = get(sandbox, token, "/crm/v3/objects/contacts", limit=1).json()["results"][0]
    sandbox.control("POST", "hubspot/faults", {"bad_records": [contact["id"]]})
    bad_contact = get(sandbox, token, "/crm/v3/objects/contacts", limit=1).json()["results"][0]
    assert bad_contact["properties"]["lastmodifieddate"] == "not-a-date"
    sandbox.control("DELETE", "hubspot/faults")
    assert all_deals(sandbox, token) == good


def test_expire_tokens_then_refresh_works(sandbox: Sandbox) -> None:
    old = sandbox.token()
    assert get(sandbox, old, DEALS).status_code == 200
    sandbox.control("POST", "hubspot/faults", {"expire_tokens": True})
    r = get(sandbox, old, DEALS)
    assert r.status_code == 401 and r.json()["category"] == "INVALID_AUTHENTICATION"
    new = sandbox.token()
    assert new != old
    assert get(sandbox, new, DEALS).status_code == 200
    assert get(sandbox, old, DEALS).status_code == 401


def test_revoke_blocks_data_and_refresh_until_cleared(sandbox: Sandbox) -> None:
    token = sandbox.token()
    sandbox.control("POST", "hubspot/faults", {"revoke": True})
    assert get(sandbox, token, DEALS).status_code == 401
    r = sandbox.refresh()
    assert r.status_code == 400
    assert (r.json()["status"], r.json()["error"]) == ("BAD_REFRESH_TOKEN", "invalid_grant")
    sandbox.control("DELETE", "hubspot/faults")
    assert get(sandbox, token, DEALS).status_code == 200
    assert sandbox.refresh().status_code == 200


def test_request_log_is_exact(sandbox: Sandbox) -> None:
    creds = sandbox.credentials()
    token = sandbox.token()
    sandbox.control("DELETE", "hubspot/requests")
    start = time.time() * 1000
    get(sandbox, token, DEALS, limit=2, properties=["dealname", "amount"])
    body = modified_filter("GTE", "1735689600000")
    search(sandbox, token, body)
    get(sandbox, None, "/crm/v3/objects/contacts")
    sandbox.control("POST", "hubspot/faults", {"next_429": 1})
    get(sandbox, token, DEALS)
    sandbox.refresh()
    end = time.time() * 1000

    log = sandbox.control("GET", "hubspot/requests")["requests"]
    stamps = [e.pop("ts_ms") for e in log]
    assert start <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= end
    cid = creds["client_id"]
    assert log == [
        {
            "method": "GET",
            "path": "/hubspot/crm/v3/objects/deals",
            "query": {"limit": "2", "properties": ["dealname", "amount"]},
            "body": None,
            "status": 200,
            "credential": cid,
            "fault": None,
        },
        {
            "method": "POST",
            "path": "/hubspot/crm/v3/objects/deals/search",
            "query": {},
            "body": body,
            "status": 200,
            "credential": cid,
            "fault": None,
        },
        {
            "method": "GET",
            "path": "/hubspot/crm/v3/objects/contacts",
            "query": {},
            "body": None,
            "status": 401,
            "credential": None,
            "fault": None,
        },
        {
            "method": "GET",
            "path": "/hubspot/crm/v3/objects/deals",
            "query": {},
            "body": None,
            "status": 429,
            "credential": cid,
            "fault": None,
        },
        {
            "method": "POST",
            "path": "/hubspot/oauth/v1/token",
            "query": {},
            "body": {"grant_type": "refresh_token", **creds},
            "status": 200,
            "credential": cid,
            "fault": None,
        },
    ]
    since = sandbox.control("GET", f"hubspot/requests?since_ms={stamps[3]}")["requests"]
    assert [e["status"] for e in since] == [429, 200]
    sandbox.control("DELETE", "hubspot/requests")
    assert sandbox.control("GET", "hubspot/requests") == {"requests": []}


def test_enforced_rate_limit(sandbox: Sandbox) -> None:
    token = sandbox.token()
    assert [get(sandbox, token, DEALS, limit=1).status_code for _ in range(100)] == [200] * 100
    r = get(sandbox, token, DEALS, limit=1)
    assert r.status_code == 429 and "Retry-After" not in r.headers
    assert r.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    assert sandbox.refresh().status_code == 200  # token endpoint is not rate limited

    assert sandbox.control("POST", "hubspot/limits", {"limit": 5, "window_s": 1}) == {
        "limit": 5,
        "window_s": 1.0,
        "enforce_limits": True,
    }
    token = sandbox.token()  # a new token of the same credential shares the window
    codes = [get(sandbox, token, DEALS, limit=1).status_code for _ in range(5)]
    assert codes + [search(sandbox, token, {}).status_code] == [200] * 5 + [429]
    time.sleep(1.05)
    ok = get(sandbox, token, DEALS, limit=1)
    assert ok.status_code == 200 and ok.headers["X-HubSpot-RateLimit-Max"] == "5"
    assert ok.headers["X-HubSpot-RateLimit-Remaining"] == "4"

    sandbox.reset(enforce_limits=False)
    token = sandbox.token()
    assert {get(sandbox, token, DEALS, limit=1).status_code for _ in range(120)} == {200}


def test_latency_delays_data_requests_only(sandbox: Sandbox) -> None:
    token = sandbox.token()
    sandbox.control("POST", "hubspot/faults", {"latency_ms": 500})
    t = time.monotonic()
    assert get(sandbox, token, DEALS, limit=1).status_code == 200
    assert time.monotonic() - t >= 0.5
    t = time.monotonic()
    sandbox.control("GET", "health")
    sandbox.refresh()
    assert time.monotonic() - t < 0.4


def test_a_request_in_flight_at_a_reset_stays_out_of_the_new_log(sandbox: Sandbox) -> None:
    token = sandbox.token()
    sandbox.control("POST", "hubspot/faults", {"latency_ms": 1000})
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(get, sandbox, token, DEALS, limit=1)
        time.sleep(0.3)  # the request has arrived and waits out its latency
        sandbox.reset()
        assert slow.result().status_code == 200
    assert get(sandbox, sandbox.token(), DEALS, limit=1).status_code == 200
    assert [(r["method"], r["path"]) for r in sandbox.control("GET", "hubspot/requests")["requests"]] == [
        ("POST", "/hubspot/oauth/v1/token"),
        ("GET", "/hubspot" + DEALS),
    ]


def test_reset_is_deterministic(sandbox: Sandbox) -> None:
    def first_page(seed: int) -> list[dict[str, Any]]:
        sandbox.reset(seed=seed)
        token = sandbox.token()
        return [
            get(sandbox, token, f"/crm/v3/objects/{o}", limit=5).json()
            for o in ("deals", "contacts", "companies", "tasks")
        ]

    a = first_page(7)
    assert first_page(7) == a
    assert first_page(8) != a
    contact = a[1]["results"][0]
    assert contact["id"] == "10000000" and "lastmodifieddate" in contact["properties"]
    assert {"hs_task_subject", "hs_task_status", "hs_task_priority", "hs_timestamp"} <= set(
        a[3]["results"][0]["properties"]
    )


def test_control_api_validation(sandbox: Sandbox) -> None:
    post = sandbox.http.post
    assert post(f"{sandbox.url}/_sandbox/reset", json={"sizes": {"nope": {}}}).status_code == 400
    assert post(f"{sandbox.url}/_sandbox/reset", json={"sizes": {"hubspot": {"calls": 1}}}).status_code == 400
    assert post(f"{sandbox.url}/_sandbox/hubspot/faults", json={"rate_492": 1}).status_code == 400
    assert post(f"{sandbox.url}/_sandbox/nope/faults", json={}).status_code == 404
    assert sandbox.control("GET", "hubspot/faults")["next_429"] == 0


def test_tenants_get_their_own_credentials_and_rate_windows(sandbox: Sandbox) -> None:
    acme = sandbox.control("GET", "connections?tenant=acme")["hubspot"]["credentials"]
    default = sandbox.credentials()
    assert acme["client_id"] != default["client_id"]
    assert sandbox.control("GET", "connections?tenant=acme")["hubspot"]["credentials"] == acme
    sandbox.control("POST", "hubspot/limits", {"limit": 2, "window_s": 30})
    tokens = [sandbox.refresh(**acme).json()["access_token"], sandbox.token()]
    assert [get(sandbox, t, DEALS).status_code for t in tokens for _ in range(3)] == [200, 200, 429] * 2


def test_million_deal_dataset_over_http(sandbox: Sandbox) -> None:
    sandbox.reset(sizes={"deals": 1_000_000})
    token = sandbox.token()
    last = get(sandbox, token, f"{DEALS}/{deal_id(999_999)}").json()
    mutated = sandbox.control("POST", "hubspot/mutate", {"entity": "deals", "count": 50})
    assert mutated["ids"] == [deal_id(i) for i in range(50)]
    t = time.monotonic()
    found = search(sandbox, token, modified_filter("GT", last["updatedAt"])).json()
    assert [x["id"] for x in found["results"]] == mutated["ids"] and found["total"] == 50
    deep = search(sandbox, token, {**modified_filter("GTE", "0"), "after": "9800"}).json()
    assert deep["total"] == 1_000_000 and deep["results"][0]["id"] == deal_id(9850)
    assert time.monotonic() - t < 1.5  # a per-request scan of 1M records would take seconds
