"""The OpenAPI schema the app serves matches the wire contract (API.md)."""

from __future__ import annotations

import json
from typing import Any

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


async def _document(hub: Hub) -> dict[str, Any]:
    response = await hub.client.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def test_bounds_survive_on_optional_fields_and_list_items(hub: Hub) -> None:
    schemas = (await _document(hub))["components"]["schemas"]
    queue_len = schemas["MinerHeartbeat"]["properties"]["queue_len"]["anyOf"][0]
    assert (queue_len["minimum"], queue_len["maximum"]) == (0, 1_000_000)
    item = schemas["MinerRegister"]["properties"]["tags"]["items"]
    assert (item["minLength"], item["maxLength"]) == (1, 128)
    assert "\\x00" in item["pattern"]
    ts = schemas["MinerHeartbeat"]["properties"]["ts"]["anyOf"][0]
    assert ts["format"] == "date-time"


async def test_sla_metadata_accepts_integers(hub: Hub) -> None:
    metadata = (await _document(hub))["components"]["schemas"]["SlaMetricRead"]["properties"]["metadata"]
    assert "oneOf" not in str(metadata)
    assert {"type": "integer"} in metadata["additionalProperties"]["anyOf"]


async def test_optional_bodies_are_optional(hub: Hub) -> None:
    paths = (await _document(hub))["paths"]
    assert paths["/sla/billing/sync"]["post"]["requestBody"]["required"] is False
    assert paths["/v1/miners/register"]["post"]["requestBody"]["required"] is True


async def test_every_operation_documents_its_errors(hub: Hub) -> None:
    paths = (await _document(hub))["paths"]
    register = paths["/v1/miners/register"]["post"]["responses"]
    assert {"400", "401", "409", "413", "415", "422", "429", "503"} <= register.keys()
    assert "Retry-After" in register["429"]["headers"]
    match = paths["/v1/match"]["post"]["responses"]
    assert {"400", "401", "403", "413", "415", "429", "503"} <= match.keys()
    assert "404" in paths["/sla/metrics/{miner_id}"]["get"]["responses"]
    assert "502" in paths["/sla/billing/sync"]["post"]["responses"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            if path not in ("/livez", "/v1/metrics"):
                assert "503" in operation["responses"], (method, path)
