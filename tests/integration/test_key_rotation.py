"""POOLHUB_SECRET_KEY rotation: keys hashed under the previous key still register, and are re-hashed."""

from __future__ import annotations

from tests.integration.conftest import miner_body, started_hub, test_settings

OLD = "old-secret-key-0123456789abcdef-old"
NEW = "new-secret-key-0123456789abcdef-new"


async def _register(url: str, **settings: object) -> int:
    async with started_hub(test_settings(url, **settings)) as hub:
        response = await hub.client.post("/v1/miners/register", json=miner_body("m-rot"))
        return response.status_code


async def test_a_miner_registered_under_the_previous_key_is_accepted_and_rehashed(clean_db: str) -> None:
    assert await _register(clean_db, secret_key=OLD) == 201
    # Without the previous key the stored hash no longer matches: the miner would be locked out.
    assert await _register(clean_db, secret_key=NEW) == 401
    assert await _register(clean_db, secret_key=NEW, secret_key_previous=OLD) == 200
    # That registration stored the key under NEW: the previous key can now be dropped.
    assert await _register(clean_db, secret_key=NEW) == 200
    assert await _register(clean_db, secret_key=OLD) == 401


async def test_a_wrong_api_key_is_refused_under_either_key(clean_db: str) -> None:
    assert await _register(clean_db, secret_key=OLD) == 201
    async with started_hub(test_settings(clean_db, secret_key=NEW, secret_key_previous=OLD)) as hub:
        wrong = miner_body("m-rot", api_key="another-api-key-0123456789")
        response = await hub.client.post("/v1/miners/register", json=wrong)
    assert response.status_code == 401
