"""Authenticate a miner by its session token: from the in-memory cache, the database only on a miss."""

from __future__ import annotations

from dataclasses import dataclass

from poolhub.domain.errors import AuthenticationError, ForbiddenError
from poolhub.domain.model import Miner
from poolhub.domain.ports import Clock, LiveState, TokenLookup
from poolhub.domain.security import hash_token, same_secret


@dataclass(frozen=True, slots=True)
class OtherRoleSecrets:
    """The coordinator's and operator's secrets: presenting one on a miner route is a 403, not a 401."""

    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthenticatedMiner:
    miner: Miner
    token_hash: str


class AuthenticateMiner:
    """Resolve a bearer token to its miner. Raises AuthenticationError (401) or ForbiddenError (403).

    Reads the database only when this process has not seen the token yet (another process issued it);
    process-wide, so a cached beat touches no database object at all.
    """

    def __init__(
        self, directory: LiveState, lookup: TokenLookup, clock: Clock, other_roles: OtherRoleSecrets
    ) -> None:
        self._directory = directory
        self._lookup = lookup
        self._clock = clock
        self._other_roles = other_roles

    async def execute(self, token: str | None) -> AuthenticatedMiner:
        if not token:
            raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <session_token>'")
        if any(same_secret(token, secret) for secret in self._other_roles.secrets):
            raise ForbiddenError("this route is for miners: authenticate with a miner session_token")
        token_hash = hash_token(token)
        miner_id = self._directory.miner_for_token(token_hash)
        if miner_id is None:
            miner_id = await self._lookup.miner_of_live_token(token_hash)
            if miner_id is None:
                raise AuthenticationError("invalid or revoked session token: register again")
            if self._directory.get(miner_id) is None:
                stored = await self._lookup.miner(miner_id)
                if stored is not None:
                    self._directory.adopt([stored], self._clock.now())
            self._directory.remember_token(token_hash, miner_id)
        miner = self._directory.get(miner_id)
        now = self._clock.now()
        if miner is None or not self._directory.lease.token_is_valid(miner.status, now):
            self._directory.forget_tokens([token_hash])
            raise AuthenticationError("session token expired: register again")
        return AuthenticatedMiner(miner, token_hash)
