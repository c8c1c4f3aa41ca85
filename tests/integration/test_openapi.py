"""The OpenAPI schema the app serves matches the wire contract (API.md)."""

from __future__ import annotations

import json

from tests.integration.conftest import Hub

CONTRACT = {
    "/v1/miners/register": {"post"},
    "/v1/miners/update": {"post"},
    "/v1/miners/heartbeat": {"post"},
    "/v1/miners/lease/renew": {"post", "get"},
    "/v1/miners/logout": {"post"},
    "/v1/miners": {"get"},
    "/v1/match": {"post"},
    "/v1/feedback": {"post"},
    "/v1/health": {"get"},
    "/v1/metrics": {"get"},
    "/sla/metrics/{miner_id}": {"get"},
    "/sla/metrics": {"get"},
    "/sla/violations": {"get"},
    "/sla/metrics/collect": {"post"},
    "/sla/capacity/snapshots": {"get"},
    "/sla/capacity/forecast": {"get"},
    "/sla/capacity/recommendations": {"get"},
    "/sla/billing/usage": {"get"},
    "/sla/billing/sync": {"post"},
    "/sla/billing/usage/record": {"post"},
    "/sla/billing/invoice/generate": {"post"},
    "/sla/billing/requeue": {"post"},
    "/sla/status": {"get"},
}


async def test_the_schema_lists_every_route_of_the_contract(hub: Hub) -> None:
    response = await hub.client.get("/schema/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    for path, methods in CONTRACT.items():
        assert path in schema["paths"], path
        assert methods <= set(schema["paths"][path]), (path, set(schema["paths"][path]))
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"


async def test_the_schema_documents_the_fields_users_rely_on(hub: Hub) -> None:
    schema = (await hub.client.get("/schema/openapi.json")).json()
    text = json.dumps(schema)
    components = schema["components"]["schemas"]
    match_request = components["MatchRequest"]["properties"]
    assert {"job_id", "tenant_id", "requirements", "hints", "top_k", "explain_miner"} <= set(match_request)
    assert "Why not this miner" in json.dumps(match_request["explain_miner"])
    register = components["MinerRegister"]["properties"]
    assert register["api_key"]["minLength"] == 16 and register["api_key"]["maxLength"] == 256
    assert "capacity_forecast" in text
    assert "miner_explanation" in text
    # v1.1 billing: why delivery is blocked, on the sync answer and the status; the requeue shapes
    assert "billing_blocked" in components["SyncResultRead"]["properties"]
    assert "billing_blocked" in components["SlaStatusRead"]["properties"]
    assert set(components["RequeueCreate"]["properties"]) == {"tenant_id", "resource_type", "since", "until"}
    assert set(components["RequeueResultRead"]["properties"]) == {"records_requeued"}


async def test_the_browsable_ui_is_served(hub: Hub) -> None:
    response = await hub.client.get("/schema/swagger")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
