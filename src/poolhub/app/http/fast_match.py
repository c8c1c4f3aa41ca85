"""POST /v1/match without the framework's per-request machinery, for the requests that succeed.

A coordinator fleet calls this route far more than any other, and Litestar's routing, signature model,
guards, request container and response objects cost more CPU than the matching itself. `MatchFastPath`
answers a request only when it is one the framework route would answer 200: the coordinator's bearer
token, a JSON body under the size limit that decodes strictly, and an address that has no recent failed
authentication. Anything else goes on to the Litestar route with the body it has read replayed, so every
error answer (401, 403, 400, 413, 415, 429, 500) and the OpenAPI document stay the framework's. Both paths
run the same mapping, use case, metrics and access-log line, and send the same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Final

import msgspec
from dishka import AsyncContainer
from litestar.stores.registry import StoreRegistry
from litestar.types import HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, ReceiveMessage, Scope, Send

from poolhub.app.http.auth import RoleSecrets, bearer_token
from poolhub.app.http.controllers.match import observe_match, to_match_query, to_match_response
from poolhub.app.http.middleware import log_request, request_id_of
from poolhub.app.http.ratelimit import AUTH_FAILURES_STORE, ClientAddress, auth_failure_key
from poolhub.app.http.schemas.match import MatchRequest
from poolhub.app.http.strict import BodyError, decode_strict, is_json_media_type
from poolhub.app.metrics import Metrics
from poolhub.app.settings import Settings
from poolhub.domain.security import same_secret
from poolhub.domain.use_cases.match_job import MatchJob

MATCH_PATH: Final = "/v1/match"
_JSON_HEADERS: Final = (b"content-type", b"application/json")


class _Resolved:
    __slots__ = ("match_job", "metrics", "secret")

    def __init__(self, match_job: MatchJob, metrics: Metrics, secret: str) -> None:
        self.match_job = match_job
        self.metrics = metrics
        self.secret = secret


class MatchFastPath:
    def __init__(
        self, container: AsyncContainer, settings: Settings, stores: StoreRegistry, max_body: int
    ) -> None:
        self._container = container
        self._decoder = msgspec.json.Decoder(MatchRequest)
        self._encoder = msgspec.json.Encoder()
        self._max_body = max_body
        self._resolved: _Resolved | None = None
        # With a `match` request limit the framework route counts every request and sends its headers.
        self.enabled = settings.rate_limit("match") is None
        self._auth_limited = settings.rate_limit("auth_failures") is not None
        self._identify = ClientAddress(settings.forwarded_allow_ips)
        self._stores = stores

    async def _resolve(self) -> _Resolved:
        if self._resolved is None:
            secrets = await self._container.get(RoleSecrets)
            self._resolved = _Resolved(
                await self._container.get(MatchJob), await self._container.get(Metrics), secrets.coordinator
            )
        return self._resolved

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """Answer the request and return None, or return the `receive` the framework route must use."""
        started = time.perf_counter()
        authorization = content_type = None
        for name, value in scope["headers"]:  # the first of each, as the framework route reads them
            if name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"content-type":
                content_type = value if content_type is None else content_type
        if authorization is None or content_type is None:
            return receive
        resolved = await self._resolve()
        token = bearer_token(authorization.decode("latin-1"))
        if token is None or not same_secret(token, resolved.secret):
            return receive
        if not is_json_media_type(content_type.decode("latin-1")):
            return receive
        if self._auth_limited:
            store = self._stores.get(AUTH_FAILURES_STORE)
            if await store.exists(auth_failure_key(self._identify, scope)):
                return receive
        messages, body = await self._read_body(receive)
        if body is None:
            return _replay(messages, receive)
        try:
            data = decode_strict(self._decoder, body)
        except BodyError:
            return _replay(messages, receive)
        try:
            result = resolved.match_job.execute(to_match_query(data), msgspec.to_builtins(data))
        except Exception:
            # Nothing was answered or recorded: the framework route runs it again and answers the error.
            return _replay(messages, receive)
        payload = self._encoder.encode(to_match_response(result))
        request_id = request_id_of(scope)
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                _JSON_HEADERS,
                (b"content-length", str(len(payload)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
        await send(start)
        end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": payload, "more_body": False}
        await send(end)
        observe_match(resolved.metrics, result, started)
        log_request("POST", MATCH_PATH, 200, started, request_id=request_id)
        return None

    async def _read_body(self, receive: Receive) -> tuple[list[ReceiveMessage], bytes | None]:
        """The messages read and the whole body; None for a body over the limit or a disconnect."""
        messages: list[ReceiveMessage] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return messages, None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return messages, chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(messages: list[ReceiveMessage], receive: Receive) -> Callable[[], Awaitable[ReceiveMessage]]:
    pending = list(messages)

    async def replaying() -> ReceiveMessage:
        if pending:
            return pending.pop(0)
        return await receive()

    return replaying
