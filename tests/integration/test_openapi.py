"""The OpenAPI document says what the service does: bounds, optional bodies, errors."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Hub


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
