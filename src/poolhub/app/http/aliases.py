"""Second paths for existing routes, for clients written against the AITBC network's pool hub.

Its CLI, monitoring and deployment probe `GET /health`, scrape `GET /metrics` and address SLA routes as
`/v1/sla/…`. An alias serves the very same handlers (same answers, same roles); the OpenAPI schema
says which route each one stands for.
"""

from __future__ import annotations

import re

from litestar import Controller
from litestar.handlers import BaseRouteHandler, HTTPRouteHandler

ALIAS_TAG = "aliases"


def _canonical(prefix: str, path: str) -> str:
    joined = f"{prefix.rstrip('/')}/{path.lstrip('/')}"
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", joined.rstrip("/") or "/")


def alias_of(controller: type[Controller], path: str) -> type[Controller]:
    """`controller`'s routes again under `path` instead of its own, marked as aliases in the schema."""
    # Read through getattr: Controller declares `path` in __slots__, which mypy forbids reading on the class.
    canonical_prefix: str = getattr(controller, "path")  # noqa: B009

    def get_route_handlers(self: Controller) -> list[BaseRouteHandler]:
        handlers = controller.get_route_handlers(self)
        for handler in handlers:
            if not isinstance(handler, HTTPRouteHandler):
                continue
            canonical = " ".join(sorted(_canonical(canonical_prefix, p) for p in handler.paths))
            methods = "/".join(sorted(handler.http_methods))
            handler.summary = f"{handler.summary or handler.handler_name} (alias of {methods} {canonical})"
            handler.description = (
                f"Alias of `{methods} {canonical}` for the AITBC network's clients: the same route, "
                f"answer and role. {handler.description or ''}"
            ).strip()
            handler.tags = [*(handler.tags or []), ALIAS_TAG]
        return handlers

    return type(
        f"{controller.__name__}Alias",
        (controller,),
        {"path": path, "get_route_handlers": get_route_handlers},
    )
