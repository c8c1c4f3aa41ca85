"""POST /v1/miners/register's fast path (see `fastpath`): a JSON body under the size limit that decodes
strictly and reads as a registration goes to the registration batcher. A refusal of the batch (a key that
does not match, a full directory) is answered here in the framework's error shape, so a refused
registration costs one attempt; a body the framework must explain, or a database fault, goes on to the
framework route (which tries the registration again and answers its 503 or 500)."""

from __future__ import annotations

import time
from typing import Final

import msgspec
from dishka import AsyncContainer
from litestar.types import Receive, Scope, Send

from poolhub.app.http.controllers.miner_inputs import registration_spec
from poolhub.app.http.controllers.miners import registered_answer
from poolhub.app.http.errors import domain_error_answer
from poolhub.app.http.fastpath import first_header, read_body, replay, send_json
from poolhub.app.http.middleware import log_request, request_id_of
from poolhub.app.http.schemas.miners import MinerRegister
from poolhub.app.http.strict import decode_strict, is_json_media_type
from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.app.settings import Settings
from poolhub.domain.errors import DomainError
from poolhub.domain.use_cases.register_miner import Registration

REGISTER_PATH: Final = "/v1/miners/register"


class RegisterFastPath:
    def __init__(self, container: AsyncContainer, settings: Settings, max_body: int) -> None:
        self._container = container
        self._decoder = msgspec.json.Decoder(MinerRegister)
        self._encoder = msgspec.json.Encoder()
        self._max_body = max_body
        self._batcher: RegistrationBatcher | None = None
        # With a `register` request limit the framework route counts every request and sends its headers.
        self.enabled = settings.rate_limit("register") is None

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        started = time.perf_counter()
        content_type = first_header(scope, b"content-type")
        if content_type is None or not is_json_media_type(content_type.decode("latin-1")):
            return receive
        messages, body = await read_body(receive, self._max_body)
        if body is None:
            return replay(messages, receive)
        try:
            data = decode_strict(self._decoder, body)
            spec = registration_spec(data)
        except Exception:  # the framework route names the problem (400)
            return replay(messages, receive)
        if self._batcher is None:
            self._batcher = await self._container.get(RegistrationBatcher)
        request_id = request_id_of(scope)
        try:
            grant = await self._batcher.submit(Registration(spec, data.api_key))
        except DomainError as error:
            status, answer, headers = domain_error_answer(error)
            extra = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
            await send_json(send, status, self._encoder.encode(answer), request_id, extra)
            log_request("POST", REGISTER_PATH, status, started, request_id=request_id)
            return None
        except Exception:
            # Nothing of it was saved (its batch rolled back): the framework route tries again and answers.
            return replay(messages, receive)
        registered, status = registered_answer(grant)
        await send_json(send, status, self._encoder.encode(registered), request_id)
        log_request("POST", REGISTER_PATH, status, started, request_id=request_id)
        return None
