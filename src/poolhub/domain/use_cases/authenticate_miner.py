"""Authenticate a miner by its session token (or, on beat routes, its API key): from the in-memory cache,
the database only on a miss."""

from __future__ import annotations

from dataclasses import dataclass

from poolhub.domain.errors import AuthenticationError, ConflictError, ForbiddenError
from poolhub.domain.model import Miner
from poolhub.domain.ports import Clock, LiveState, TokenLookup
from poolhub.domain.security import hash_api_key, hash_token, same_secret
from poolhub.domain.use_cases.register_miner import ServerSecret


@dataclass(frozen=True, slots=True)
class OtherRoleSecrets:
    """The coordinator's and operator's secrets: presenting one on a miner route is a 403, not a 401."""

    secrets: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuthenticatedMiner:
    miner: Miner
    token_hash: str
    by_api_key: bool = False


class AuthenticateMiner:
    """Resolve a bearer token to its miner. Raises AuthenticationError (401) or ForbiddenError (403).

    Reads the database only when this process has not seen the token yet (another process issued it);
    process-wide, so a cached beat touches no database object at all.

    With `allow_api_key` (the beat routes, for miners that keep no session, such as the AITBC miner) a
    token that is no live session token may be the miner's API key, found by its keyed hash: one indexed
    lookup, then cached. The API key stays valid while the miner is registered (logout revokes sessions,
    not the key), and a key shared by several miners is a ConflictError (409): they need session tokens.
    """

    def __init__(
        self,
        directory: LiveState,
        lookup: TokenLookup,
        clock: Clock,
        other_roles: OtherRoleSecrets,
        secret: ServerSecret,
    ) -> None:
        self._directory = directory
        self._lookup = lookup
        self._clock = clock
        self._other_roles = other_roles
        self._secret = secret

    async def execute(self, token: str | None, *, allow_api_key: bool = False) -> AuthenticatedMiner:
        if not token:
            raise AuthenticationError("missing bearer token: send 'Authorization: Bearer <session_token>'")
        if any(same_secret(token, secret) for secret in self._other_roles.secrets):
            raise ForbiddenError("this route is for miners: authenticate with a miner session_token")
        token_hash = hash_token(token)
        miner_id = self._directory.miner_for_token(token_hash)
        if miner_id is None:
            key_hash = hash_api_key(self._secret.value, token) if allow_api_key else None
            if key_hash is not None and (cached := self._directory.miners_for_api_key(key_hash)):
                return await self._by_api_key(key_hash, cached)
            if self._directory.is_unknown_token(token_hash, self._clock.now()):
                raise AuthenticationError("invalid or revoked session token: register again")
            miner_id = await self._lookup.miner_of_live_token(token_hash)
            if miner_id is None:
                if key_hash is not None and (stored := await self._lookup.miners_with_api_key(key_hash)):
                    for stored_id in stored:
                        # Loaded before caching: a miner new to the directory empties the key cache.
                        await self._load(stored_id)
                    # Only hits are cached: random tokens must not grow the cache.
                    self._directory.remember_api_key(key_hash, tuple(stored))
                    return await self._by_api_key(key_hash, tuple(stored))
                # Neither a live session token nor (where allowed) a registered API key: remembered for a
                # while, so repeating it costs no query. A miner that registers this key later beats with it
                # once the entry expired, or at once with its session token.
                self._directory.remember_unknown_token(token_hash, self._clock.now())
                raise AuthenticationError("invalid or revoked session token: register again")
            await self._load(miner_id)
            self._directory.remember_token(token_hash, miner_id)
        miner = self._directory.get(miner_id)
        now = self._clock.now()
        if miner is None or not self._directory.lease.token_is_valid(miner.status, now):
            self._directory.forget_tokens([token_hash])
            raise AuthenticationError("session token expired: register again")
        return AuthenticatedMiner(miner, token_hash)

    async def _by_api_key(self, key_hash: str, miner_ids: tuple[str, ...]) -> AuthenticatedMiner:
        if len(miner_ids) > 1:
            raise ConflictError(
                "several miners registered with this api_key: authenticate with the session_token "
                "that /v1/miners/register returned"
            )
        await self._load(miner_ids[0])
        miner = self._directory.get(miner_ids[0])
        if miner is None:
            raise AuthenticationError("invalid api_key or session token: register again")
        return AuthenticatedMiner(miner, key_hash, by_api_key=True)

    async def _load(self, miner_id: str) -> None:
        if self._directory.get(miner_id) is None:
            stored = await self._lookup.miner(miner_id)
            if stored is not None:
                self._directory.adopt([stored], self._clock.now())
