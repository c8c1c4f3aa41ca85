"""An OpenAPI document that says what the service does: exact body schemas, optional bodies, every error.

Litestar's generator drops bounds it finds falsy (`minimum: 0`), the constraints of list items, and documents
no error it does not see in a handler's signature. The body and answer schemas are therefore taken from
msgspec, which decodes them (so the document and the decoder cannot disagree), and each operation lists the
4xx/5xx it can answer, from the rules of the edge (auth, rate limits, body decoding) and a table of the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Final

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin
from litestar.handlers import HTTPRouteHandler

from poolhub.app.http.schemas.common import Base, Problem

_DESCRIPTIONS: Final[dict[int, str]] = {
    400: "bad input: `detail` and `extra` name the field; nothing changed",
    401: "missing or invalid bearer token",
    403: "a valid token of another role",
    404: "no such resource",
    409: "conflicts with the current state",
    413: "the body is larger than 1 MiB",
    415: "the body is not sent as JSON (Content-Type: application/json or */*+json)",
    422: "well-formed, but past a configured limit (MAX_DIRECTORY_TOKENS)",
    429: "over a rate limit (RATE_LIMITS) or too many failed authentications; see Retry-After",
    502: "the coordinator's billing API failed",
    503: "the database is unavailable; retry after Retry-After",
}
_RETRY_AFTER: Final = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}}

# What the edge rules cannot tell: (method, path) -> the further statuses its use case can answer.
_EXTRA: Final[dict[tuple[str, str], frozenset[int]]] = {
    ("POST", "/v1/miners/register"): frozenset({401, 409, 422, 429}),
    ("POST", "/v1/feedback"): frozenset({404, 409}),
    ("GET", "/sla/metrics/{miner_id}"): frozenset({404}),
    ("POST", "/sla/billing/usage/record"): frozenset({409}),
    ("POST", "/sla/billing/sync"): frozenset({502}),
}
# Answered from memory, never touching the database.
_NO_DATABASE: Final = frozenset({"/livez", "/v1/metrics"})
_NO_INPUT_STATUS: Final = frozenset({"/livez", "/readyz", "/v1/health", "/v1/metrics"})


def _structs() -> list[type[Base]]:
    found: list[type[Base]] = []
    stack: list[type[Base]] = [Base]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            found.append(sub)
            stack.append(sub)
    return sorted({cls for cls in found if cls.__module__.startswith("poolhub.")}, key=lambda c: c.__name__)


def _handlers(app: Litestar) -> Iterator[tuple[str, str, HTTPRouteHandler]]:
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if isinstance(handler, HTTPRouteHandler):
                for method in handler.http_methods:
                    yield route.path_format, method, handler


def _statuses(path: str, method: str, handler: HTTPRouteHandler) -> set[int]:
    codes: set[int] = set()
    parameters = handler.parsed_fn_signature.parameters
    has_body = "data" in parameters
    if has_body:
        codes |= {400, 413, 415}
    if path not in _NO_INPUT_STATUS:
        codes.add(400)
    if handler.resolve_security() or handler.resolve_guards():
        codes |= {401, 403, 429}
    if path not in _NO_DATABASE:
        codes.add(503)
    return codes | _EXTRA.get((method, path), frozenset())


def refine(schema: dict[str, Any], app: Litestar) -> dict[str, Any]:
    """The generated document, with msgspec's schemas, optional bodies optional and every error listed."""
    document = copy.deepcopy(schema)
    _, components = msgspec.json.schema_components(_structs(), ref_template="#/components/schemas/{name}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(components)
    problem = {"$ref": f"#/components/schemas/{Problem.__name__}"}
    for path, method, handler in _handlers(app):
        operation = document["paths"].get(path, {}).get(method.lower())
        if operation is None:
            continue
        data = handler.parsed_fn_signature.parameters.get("data")
        body = operation.get("requestBody")
        if data is not None and body is not None and data.default is None:
            body["required"] = False
        responses = operation.setdefault("responses", {})
        for status in sorted(_statuses(path, method, handler)):
            entry = responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
            entry.setdefault("content", {"application/json": {"schema": problem}})
            if status in (429, 503):
                entry.setdefault("headers", dict(_RETRY_AFTER))
    return document


class RefinedOpenAPIPlugin(OpenAPIPlugin):
    """Litestar's OpenAPI plugin, serving the refined document (built once, on first use)."""

    __slots__ = ()

    def provide_openapi_schema(self) -> dict[str, Any]:
        if not self._openapi_schema:
            self._openapi_schema = refine(self.provide_openapi().to_schema(), self.app)
        return self._openapi_schema


def install(app: Litestar) -> None:
    """Make the app's OpenAPI plugin (which Litestar creates itself) the refined one."""
    plugin = app.plugins.get(OpenAPIPlugin)
    plugin.__class__ = RefinedOpenAPIPlugin
