"""Keyed hashing of API keys and session tokens: pure functions over the stdlib."""

from __future__ import annotations

import hashlib
import hmac


def hash_api_key(secret_key: str, api_key: str) -> str:
    """HMAC-SHA256 keyed with the server secret: a stolen database alone reveals no key."""
    return hmac.new(secret_key.encode(), api_key.encode(), hashlib.sha256).hexdigest()


def hash_token(token: str) -> str:
    """Session tokens carry 256 random bits, so an unkeyed SHA-256 is enough to store them safely."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison, so timing reveals nothing about the expected secret."""
    return hmac.compare_digest(given.encode(), expected.encode())
