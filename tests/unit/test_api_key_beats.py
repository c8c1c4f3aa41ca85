"""Authenticating a beat with the miner's API key (AITBC miners keep no session): one lookup, then cached."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest

from poolhub.adapters.live import LiveDirectory
from poolhub.domain.errors import AuthenticationError, ConflictError
from poolhub.domain.model import LeasePolicy, Miner, MinerSpec, MinerStatus
from poolhub.domain.security import hash_api_key
from poolhub.domain.trust import TrustPolicy
from poolhub.domain.use_cases.authenticate_miner import AuthenticateMiner, OtherRoleSecrets
from poolhub.domain.use_cases.register_miner import ServerSecret
from tests.fakes import FixedClock

SECRET = "server-secret"
KEY = "aitbc-auth-token-0123456789"


@dataclass
class CountingLookup:
    """The durable side: API-key hashes and miners, counting every lookup the use case makes."""

    keys: dict[str, list[str]] = field(default_factory=dict)
    miners: dict[str, Miner] = field(default_factory=dict)
    key_lookups: int = 0
    token_lookups: int = 0

    async def miner_of_live_token(self, token_hash: str) -> str | None:
        self.token_lookups += 1
        return None

    async def miners_with_api_key(self, key_hash: str) -> list[str]:
        self.key_lookups += 1
        return self.keys.get(key_hash, [])[:2]

    async def miner(self, miner_id: str) -> Miner | None:
        return self.miners.get(miner_id)


def _miner(miner_id: str, clock: FixedClock) -> Miner:
    spec = MinerSpec(miner_id, "http://h:8101", "http", 24, 8, 16, Decimal("0.01"), 1)
    return Miner(spec=spec, status=MinerStatus(last_beat_at=clock.now()), registered_at=clock.now())


def _world(*miner_ids: str) -> tuple[AuthenticateMiner, CountingLookup, LiveDirectory, FixedClock]:
    clock = FixedClock()
    directory = LiveDirectory(LeasePolicy(120, 60), TrustPolicy(), clock)
    lookup = CountingLookup()
    lookup.keys[hash_api_key(SECRET, KEY)] = list(miner_ids)
    lookup.miners = {m: _miner(m, clock) for m in miner_ids}
    use_case = AuthenticateMiner(directory, lookup, clock, OtherRoleSecrets(("admin",)), ServerSecret(SECRET))
    return use_case, lookup, directory, clock


async def test_the_api_key_is_looked_up_once_then_served_from_memory() -> None:
    authenticate, lookup, _, _ = _world("shop-1")
    for _ in range(3):
        auth = await authenticate.execute(KEY, allow_api_key=True)
        assert auth.miner.miner_id == "shop-1"
    assert lookup.key_lookups == 1


async def test_the_api_key_keeps_working_long_after_the_session_would_have_expired() -> None:
    authenticate, _, _, clock = _world("shop-1")
    await authenticate.execute(KEY, allow_api_key=True)
    clock.advance(timedelta(hours=6))
    assert (await authenticate.execute(KEY, allow_api_key=True)).miner.miner_id == "shop-1"


async def test_only_the_beat_routes_take_the_api_key() -> None:
    authenticate, lookup, _, _ = _world("shop-1")
    with pytest.raises(AuthenticationError):
        await authenticate.execute(KEY)
    assert lookup.key_lookups == 0


async def test_a_shared_key_is_a_conflict_that_points_at_the_session_token() -> None:
    authenticate, _, _, _ = _world("shop-1", "shop-2")
    with pytest.raises(ConflictError, match="session_token"):
        await authenticate.execute(KEY, allow_api_key=True)


async def test_an_unknown_key_is_401_and_repeating_it_costs_no_lookup() -> None:
    authenticate, lookup, _, _ = _world()
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await authenticate.execute("not-a-key-0123456789", allow_api_key=True)
    # The miss is remembered in the bounded negative cache (v1.1: a flood of bad tokens costs no query each).
    assert lookup.key_lookups == 1


async def test_a_new_miner_in_the_directory_drops_the_cached_keys() -> None:
    authenticate, lookup, directory, clock = _world("shop-1")
    await authenticate.execute(KEY, allow_api_key=True)
    lookup.keys[hash_api_key(SECRET, KEY)].append("shop-2")
    directory.put(_miner("shop-2", clock), clock.now())  # registered here or read by the refresher
    with pytest.raises(ConflictError):
        await authenticate.execute(KEY, allow_api_key=True)
    assert lookup.key_lookups == 2
