"""The one place that assembles the application container from the feature providers."""

from __future__ import annotations

from dishka import AsyncContainer, Provider, make_async_container
from dishka.integrations.litestar import LitestarProvider

from poolhub.app.ioc.billing import BillingProvider
from poolhub.app.ioc.console import ConsoleProvider
from poolhub.app.ioc.core import CoreProvider, PersistenceProvider
from poolhub.app.ioc.matching import MatchingProvider
from poolhub.app.ioc.miners import MinerProvider
from poolhub.app.ioc.sla import SlaProvider
from poolhub.app.settings import Settings


def make_container(settings: Settings, *overrides: Provider) -> AsyncContainer:
    """The application container; tests pass providers that replace the outside world."""
    return make_async_container(
        CoreProvider(),
        PersistenceProvider(),
        MinerProvider(),
        MatchingProvider(),
        SlaProvider(),
        BillingProvider(),
        ConsoleProvider(),
        LitestarProvider(),
        *overrides,
        context={Settings: settings},
    )
