"""The operator console over HTTP in-process: the page and its headers, sign-in, and the console-only
operator routes (search, overview, explain without recording, violations and billing filters)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from poolhub.adapters.db.models import MatchRecordRow
from tests.integration.conftest import ADMIN, COORDINATOR, Hub, bearer, register
from tests.integration.sla_support import add_feedback, collect, execute

OPERATOR = bearer(ADMIN)


async def test_the_page_and_its_files_carry_a_strict_csp_and_nosniff(hub: Hub) -> None:
    page = await hub.client.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<h1 id="signin-title">Sign in</h1>' in page.text
    for response in (
        page,
        await hub.client.get("/console/static/core.js"),
        await hub.client.get("/console/static/vendor/uPlot.iife.min.js"),
        await hub.client.get("/console/api/session", headers=OPERATOR),
        await hub.client.get("/console/api/session"),
    ):
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    # The public API keeps its own headers: Swagger's page needs its CDN.
    assert "content-security-policy" not in (await hub.client.get("/v1/health")).headers


async def test_sign_in_accepts_only_the_operator_token(hub: Hub) -> None:
    assert (await hub.client.get("/console/api/session", headers=OPERATOR)).json() == {"role": "operator"}
    wrong = await hub.client.get("/console/api/session", headers=bearer("not-the-token"))
    assert wrong.status_code == 401
    assert "operator" in wrong.json()["detail"]
    assert (await hub.client.get("/console/api/session", headers=bearer(COORDINATOR))).status_code == 403
    assert (await hub.client.get("/console/api/overview")).status_code == 401


async def test_miners_are_searched_filtered_sorted_and_paged_on_the_server(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-eu-1", region="eu", max_parallel=4)
    await register(hub.client, "m-eu-2", region="eu", accel="rocm", gpu_name="MI300X")
    await register(hub.client, "m-us-1", region="us", max_parallel=2)
    token = await register(hub.client, "m-us-2", region="us", max_parallel=4)
    heartbeat = await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 3}, headers=bearer(token))
    assert heartbeat.status_code == 200
    await add_feedback(clean_db, "m-us-1", "failed", 12)
    for n in range(3):
        failed = await hub.client.post(
            "/v1/feedback",
            json={"job_id": f"j-{n}", "miner_id": "m-us-1", "outcome": "failed"},
            headers=bearer(COORDINATOR),
        )
        assert failed.status_code == 201
    await collect(hub)

    async def ids(**params: object) -> tuple[list[str], int]:
        response = await hub.client.get("/console/api/miners", params=params, headers=OPERATOR)
        assert response.status_code == 200, response.text
        body = response.json()
        assert int(response.headers["x-total-count"]) == body["total"]
        return [item["miner"]["miner_id"] for item in body["items"]], body["total"]

    assert await ids(region="eu") == (["m-eu-1", "m-eu-2"], 2)
    assert await ids(accel="rocm") == (["m-eu-2"], 1)
    assert await ids(search="mi300") == (["m-eu-2"], 1)
    assert await ids(has_violation="true") == (["m-us-1"], 1)
    assert (await ids(sort="load", order="desc"))[0][0] == "m-us-2"  # 3 of 4 slots
    assert (await ids(sort="trust"))[0][0] == "m-us-1"  # three failed jobs: least trusted
    assert await ids(limit=2, offset=2) == (["m-us-1", "m-us-2"], 4)
    facets = (await hub.client.get("/console/api/miners", headers=OPERATOR)).json()
    assert facets["regions"] == ["eu", "us"] and facets["accels"] == ["cuda", "rocm"]

    one = await hub.client.get("/console/api/miners/m-us-1", headers=OPERATOR)
    assert one.json()["open_violations"] == 1 and one.json()["miner"]["region"] == "us"
    missing = await hub.client.get("/console/api/miners/nobody", headers=OPERATOR)
    assert missing.status_code == 404 and "nobody" in missing.json()["detail"]
    bad = await hub.client.get("/console/api/miners", params={"sort": "price"}, headers=OPERATOR)
    assert bad.status_code == 400 and "sort" in bad.text


async def test_the_overview_counts_miners_slots_matches_violations_and_billing(hub: Hub) -> None:
    token = await register(hub.client, "m-1", max_parallel=4)
    await register(hub.client, "m-2", max_parallel=2)
    await hub.client.post("/v1/miners/heartbeat", json={"queue_len": 1}, headers=bearer(token))
    await hub.client.post("/v1/miners/logout", headers=bearer(await register(hub.client, "m-gone")))
    for n in range(3):
        await hub.client.post("/v1/match", json={"job_id": f"j-{n}"}, headers=bearer(COORDINATOR))
    recorded = await hub.client.post(
        "/sla/billing/usage/record",
        json={"tenant_id": "acme", "resource_type": "gpu_hours", "quantity": "2"},
        headers=OPERATOR,
    )
    assert recorded.status_code == 201

    body = (await hub.client.get("/console/api/overview", headers=OPERATOR)).json()
    assert body["miners"] == {"registered": 3, "online": 2}
    assert body["slots"] == {"total": 6, "used": 1, "free": 5}
    assert body["matching"]["requests_total"] == 3
    assert body["matching"]["p99_ms"] is not None and body["matching"]["p99_ms"] > 0
    assert body["sla"] == {"status": "healthy", "open_violations": []}
    assert body["billing"]["totals"] == [
        {
            "currency": "USD",
            "pending_amount": "1.00000000",
            "synced_amount": "0.00000000",
            "rejected_amount": "0.00000000",
        }
    ]
    assert body["billing"]["last_synced_at"] is None


async def test_explain_tells_why_a_miner_was_not_chosen_and_records_no_match(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-small", gpu_vram_gb=8, region="us")
    await register(hub.client, "m-big", gpu_vram_gb=80)
    response = await hub.client.post(
        "/console/api/explain",
        json={"miner_id": "m-small", "requirements": {"min_vram_gb": 24}, "hints": {"region": "eu"}},
        headers=OPERATOR,
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["miner_explanation"]["eligible"] is False
    assert answer["miner_explanation"]["failed"] == ["vram", "region"]
    assert answer["eligible_count"] == 1
    assert "considered=2" in answer["explain"]
    await hub.flush()
    await hub.app.state.background.flush()
    (rows,) = await execute(clean_db, select(func.count()).select_from(MatchRecordRow))
    assert rows[0][0] == 0  # nothing for the audit log, so no api_calls to bill

    coordinator = await hub.client.post(
        "/console/api/explain", json={"miner_id": "m-small"}, headers=bearer(COORDINATOR)
    )
    assert coordinator.status_code == 403
    bad = await hub.client.post("/console/api/explain", json={"miner_id": "bad id!"}, headers=OPERATOR)
    assert bad.status_code == 400 and "miner_id" in bad.text


async def test_violations_filter_by_type_and_severity(hub: Hub, clean_db: str) -> None:
    await register(hub.client, "m-1")
    await register(hub.client, "m-2")
    await add_feedback(clean_db, "m-1", "failed", 12)
    await add_feedback(clean_db, "m-2", "completed", 12, latency_ms=1150.0)
    await collect(hub)

    async def listed(**params: object) -> list[tuple[str | None, str, str]]:
        response = await hub.client.get("/console/api/violations", params=params, headers=OPERATOR)
        assert response.status_code == 200, response.text
        assert int(response.headers["x-total-count"]) == len(response.json())
        return sorted((v["miner_id"], v["violation_type"], v["severity"]) for v in response.json())

    everything = await listed()
    assert ("m-1", "completion_rate_pct", "critical") in everything
    assert ("m-2", "response_time_ms", "medium") in everything
    assert await listed(violation_type="response_time_ms") == [("m-2", "response_time_ms", "medium")]
    assert await listed(severity="critical", miner_id="m-1") == [("m-1", "completion_rate_pct", "critical")]
    assert await listed(resolved="true") == []
    bad = await hub.client.get("/console/api/violations", params={"severity": "dire"}, headers=OPERATOR)
    assert bad.status_code == 400 and "severity" in bad.text


async def test_billing_splits_amounts_by_delivery_state(hub: Hub) -> None:
    for tenant, resource, quantity in (
        ("acme", "gpu_hours", "2"),
        ("acme", "compute_hours", "1.5"),
        ("beta", "gpu_hours", "1"),
    ):
        response = await hub.client.post(
            "/sla/billing/usage/record",
            json={"tenant_id": tenant, "resource_type": resource, "quantity": quantity},
            headers=OPERATOR,
        )
        assert response.status_code == 201
    body = (await hub.client.get("/console/api/billing", params={"hours": 1}, headers=OPERATOR)).json()
    lines = {(line["tenant_id"], line["resource_type"]): line for line in body["lines"]}
    assert lines["acme", "gpu_hours"]["pending_amount"] == "1.00000000"
    assert lines["acme", "compute_hours"]["amount"] == "0.45000000"
    assert lines["acme", "compute_hours"]["pending_quantity"] == "1.5"
    assert body["totals"][0]["pending_amount"] == "1.95000000"
    assert sum(Decimal(line["synced_amount"]) for line in body["lines"]) == 0
    only_beta = await hub.client.get("/console/api/billing", params={"tenant_id": "beta"}, headers=OPERATOR)
    assert [line["tenant_id"] for line in only_beta.json()["lines"]] == ["beta"]
    bad = await hub.client.get("/console/api/billing", params={"hours": 0}, headers=OPERATOR)
    assert bad.status_code == 400 and "hours" in bad.text
