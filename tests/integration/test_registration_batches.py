"""Concurrent registrations share transactions, and each still gets its own answer."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import ADMIN, Hub, bearer, miner_body


async def test_many_concurrent_registrations_each_get_a_working_token(hub: Hub) -> None:
    bodies = [miner_body(f"m-{i:03d}") for i in range(60)]
    bodies.append(miner_body("m-000", api_key="not-the-key-m-000-registered-with"))
    responses = await asyncio.gather(*(hub.client.post("/v1/miners/register", json=b) for b in bodies))
    statuses = [r.status_code for r in responses]
    assert statuses[1:60] == [201] * 59
    # The real m-000 and an imposter with another key raced: whichever came first owns m-000.
    assert sorted([statuses[0], statuses[60]]) == [201, 401]
    tokens = [r.json()["session_token"] for r in responses if r.status_code in (200, 201)]
    beats = await asyncio.gather(
        *(hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(t)) for t in tokens)
    )
    assert {b.status_code for b in beats} == {200}
    listed = await hub.client.get("/v1/miners?limit=500", headers=bearer(ADMIN))
    assert listed.headers["X-Total-Count"] == "60"


async def test_a_wrong_key_in_a_batch_refuses_only_that_registration(hub: Hub) -> None:
    first = await hub.client.post("/v1/miners/register", json=miner_body("m-owner"))
    assert first.status_code == 201
    wrong, right, new = await asyncio.gather(
        hub.client.post("/v1/miners/register", json=miner_body("m-owner", api_key="someone-elses-key-000")),
        hub.client.post("/v1/miners/register", json=miner_body("m-owner")),
        hub.client.post("/v1/miners/register", json=miner_body("m-new")),
    )
    assert wrong.status_code == 401
    assert "api_key" in wrong.json()["detail"]
    assert right.status_code == 200
    assert new.status_code == 201


async def test_a_miner_re_registered_concurrently_keeps_one_token_and_its_spec(hub: Hub) -> None:
    assert (await hub.client.post("/v1/miners/register", json=miner_body("m-busy"))).status_code == 201
    # Other miners keep batches coming, so the re-registrations of m-busy land in different batches.
    bodies = []
    for i in range(24):
        bodies.append(miner_body("m-busy", addr=f"10.0.1.{i}:9000"))
        bodies.append(miner_body(f"m-other-{i:02d}"))
    responses = await asyncio.gather(*(hub.client.post("/v1/miners/register", json=b) for b in bodies))
    assert all(r.status_code in (200, 201) for r in responses)
    tokens = {
        body["addr"]: response.json()["session_token"]
        for body, response in zip(bodies, responses, strict=True)
        if body["miner_id"] == "m-busy"
    }
    beats = {
        addr: (await hub.client.post("/v1/miners/heartbeat", json={}, headers=bearer(token))).status_code
        for addr, token in tokens.items()
    }
    live = [addr for addr, status in beats.items() if status == 200]
    assert len(live) == 1
    assert set(beats.values()) == {200, 401}
    listed = await hub.client.get("/v1/miners?limit=500", headers=bearer(ADMIN))
    (busy,) = [m for m in listed.json() if m["miner_id"] == "m-busy"]
    assert busy["addr"] == live[0]
