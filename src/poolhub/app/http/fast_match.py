"""POST /v1/match's fast path (see `fastpath`): the coordinator's bearer token, a JSON body under the size
limit that decodes strictly, and an address with no recent failed authentication; the rest goes on to the
framework route, which answers every error (401, 403, 400, 413, 415, 429, 500)."""

from __future__ import annotations

import time
from typing import Final

import msgspec
from dishka import AsyncContainer
from litestar.stores.registry import StoreRegistry
from litestar.types import Receive, Scope, Send

from poolhub.app.http.auth import RoleSecrets, bearer_token
from poolhub.app.http.controllers.match import observe_match, to_match_query, to_match_response
from poolhub.app.http.fastpath import first_header, read_body, replay, send_json
from poolhub.app.http.middleware import log_request, request_id_of
from poolhub.app.http.ratelimit import AUTH_FAILURES_STORE, ClientAddress, auth_failure_key
from poolhub.app.http.schemas.match import MatchRequest
from poolhub.app.http.strict import BodyError, decode_strict, is_json_media_type
from poolhub.app.metrics import Metrics
from poolhub.app.settings import Settings
from poolhub.domain.security import same_secret
from poolhub.domain.use_cases.match_job import MatchJob

MATCH_PATH: Final = "/v1/match"


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
        started = time.perf_counter()
        authorization = first_header(scope, b"authorization")
        content_type = first_header(scope, b"content-type")
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
        messages, body = await read_body(receive, self._max_body)
        if body is None:
            return replay(messages, receive)
        try:
            data = decode_strict(self._decoder, body)
        except BodyError:
            return replay(messages, receive)
        try:
            result = resolved.match_job.execute(to_match_query(data), msgspec.to_builtins(data))
        except Exception:
            # Nothing was answered or recorded: the framework route runs it again and answers the error.
            return replay(messages, receive)
        request_id = request_id_of(scope)
        await send_json(send, 200, self._encoder.encode(to_match_response(result)), request_id)
        observe_match(resolved.metrics, result, started)
        log_request("POST", MATCH_PATH, 200, started, request_id=request_id)
        return None
