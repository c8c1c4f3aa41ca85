"""Miner use cases: registration, status updates, leases, logout and the operator list."""

from __future__ import annotations

from dishka import Provider, Scope, provide

from poolhub.domain.use_cases.list_miners import ListMiners
from poolhub.domain.use_cases.miner_session import (
    LogoutMiner,
    RenewLease,
    UpdateMinerStatus,
)
from poolhub.domain.use_cases.register_miner import RegisterMiners


class MinerProvider(Provider):
    """Miner use cases, one per request."""

    scope = Scope.REQUEST

    register_miners = provide(RegisterMiners)
    update_status = provide(UpdateMinerStatus)
    renew_lease = provide(RenewLease)
    logout_miner = provide(LogoutMiner)
    list_miners = provide(ListMiners)
