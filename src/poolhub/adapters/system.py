"""The system clock and token source: the real time and real randomness behind the domain's ports."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from poolhub.domain.ports import Clock, TokenSource


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class SecretsTokenSource(TokenSource):
    def new_token(self) -> str:
        return secrets.token_urlsafe(32)
