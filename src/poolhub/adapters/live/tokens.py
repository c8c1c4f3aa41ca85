"""The live directory's token cache: live session tokens, API keys of miners that keep no session, and
tokens known to be unknown. All keyed by hash; none of it is ever the source of truth."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Final

# An unknown token is answered from memory for this long, so a flood of bad tokens costs no query each;
# a session token is unknown only before it is issued, and tokens are random, so a wrong "no" cannot
# happen for one. An API key can become known (its miner registers): the change feed clears the entries.
UNKNOWN_TOKEN_TTL: Final = timedelta(seconds=30)
UNKNOWN_TOKEN_CAPACITY: Final = 100_000


class UnknownTokens:
    """Hashes of tokens the database did not know, each until its expiry; bounded (oldest first out)."""

    def __init__(self, ttl: timedelta = UNKNOWN_TOKEN_TTL, capacity: int = UNKNOWN_TOKEN_CAPACITY) -> None:
        self._ttl = ttl
        self._capacity = capacity
        self._until: dict[str, datetime] = {}

    def __len__(self) -> int:
        return len(self._until)

    def contains(self, token_hash: str, now: datetime) -> bool:
        until = self._until.get(token_hash)
        if until is None:
            return False
        if until <= now:
            del self._until[token_hash]
            return False
        return True

    def add(self, token_hash: str, now: datetime) -> None:
        self._until.pop(token_hash, None)
        self._until[token_hash] = now + self._ttl
        while len(self._until) > self._capacity:
            del self._until[next(iter(self._until))]

    def clear(self) -> None:
        self._until.clear()


class TokenCache:
    """Session-token hash -> miner id (and back), API-key hash -> miner ids, and the negative cache."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}
        self._tokens_of: dict[str, set[str]] = {}
        # Only hits are cached (random tokens must not grow it); emptied whenever the set of miners
        # behind some key may have changed, since a key shared by two miners must turn into a 409.
        self._api_keys: dict[str, tuple[str, ...]] = {}
        self.unknown = UnknownTokens()

    def remember(self, token_hash: str, miner_id: str) -> None:
        self._tokens[token_hash] = miner_id
        self._tokens_of.setdefault(miner_id, set()).add(token_hash)

    def forget(self, token_hashes: Iterable[str]) -> None:
        for token_hash in token_hashes:
            miner_id = self._tokens.pop(token_hash, None)
            if miner_id is not None:
                self._tokens_of.get(miner_id, set()).discard(token_hash)

    def forget_miner(self, miner_id: str) -> None:
        for token_hash in self._tokens_of.pop(miner_id, set()):
            self._tokens.pop(token_hash, None)

    def miner_for(self, token_hash: str) -> str | None:
        return self._tokens.get(token_hash)

    def remember_api_key(self, key_hash: str, miner_ids: tuple[str, ...]) -> None:
        self._api_keys[key_hash] = miner_ids

    def miners_for_api_key(self, key_hash: str) -> tuple[str, ...] | None:
        return self._api_keys.get(key_hash)

    def api_keys_changed(self) -> None:
        """Some key now belongs to other miners (a new miner, a re-hashed key): forget every key, and
        every remembered miss, which may have been that key before its miner registered."""
        self._api_keys.clear()
        self.unknown.clear()
