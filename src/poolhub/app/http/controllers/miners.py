"""Miner routes: registration, beats over HTTP and WebSocket, lease renewal, logout, the operator's list."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import msgspec
import structlog
from dishka.integrations.litestar import FromDishka, inject, inject_websocket
from litestar import Controller, Response, WebSocket, get, post, route, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, QueryParameter

from poolhub.app.http.auth import Role, bearer_token, require
from poolhub.app.http.controllers.miner_inputs import heartbeat_beat, registration_spec, status_update
from poolhub.app.http.schemas.common import Limit, Offset, page_response
from poolhub.app.http.schemas.miners import (
    LeaseAck,
    LeaseRenewed,
    LoggedOut,
    MinerHeartbeat,
    MinerRead,
    MinerRegister,
    MinerRegistered,
    MinerUpdate,
    WsAck,
)
from poolhub.app.http.strict import BodyError, decode_strict
from poolhub.app.metrics import Metrics
from poolhub.app.runtime.registrations import RegistrationBatcher
from poolhub.domain.errors import DomainError
from poolhub.domain.use_cases.authenticate_miner import AuthenticateMiner
from poolhub.domain.use_cases.list_miners import ListMiners, MinerView
from poolhub.domain.use_cases.miner_session import (
    ApplyBeat,
    LogoutMiner,
    RecordHeartbeat,
    RenewLease,
    UpdateMinerStatus,
)
from poolhub.domain.use_cases.register_miner import Registration, SessionGrant

_log = structlog.get_logger("poolhub.miners")

Authorization = Annotated[
    str | None,
    HeaderParameter(name="Authorization", required=False, description="Bearer <session_token>"),
]
BeatAuthorization = Annotated[
    str | None,
    HeaderParameter(
        name="Authorization",
        required=False,
        description="Bearer <session_token>, or Bearer <api_key> for a miner that keeps no session (AITBC); "
        "409 when several miners registered with that api_key",
    ),
]
MINER_SECURITY: list[dict[str, list[str]]] = [{"BearerToken": []}]


def to_miner_read(view: MinerView) -> MinerRead:
    miner = view.miner
    spec, status = miner.spec, miner.status
    return MinerRead(
        miner_id=spec.miner_id,
        online=view.online,
        lease_expires_at=view.lease_expires_at,
        queue_len=status.queue_len,
        max_parallel=spec.max_parallel,
        trust_score=round(view.trust_score, 6),
        trust_samples=round(view.trust_samples, 6),
        region=spec.region,
        gpu_name=spec.gpu_name,
        gpu_vram_gb=spec.gpu_vram_gb,
        gpu_count=spec.gpu_count,
        ram_gb=spec.ram_gb,
        accel=spec.accel,
        price_token_per_ksec=str(spec.price_token_per_ksec),
        tags=list(spec.tags),
        capabilities=list(spec.capabilities),
        addr=spec.addr,
        proto=spec.proto,
        registered_at=miner.registered_at,
        last_beat_at=status.last_beat_at,
        busy=status.busy,
        cpu_cores=spec.cpu_cores,
        avg_latency_ms=status.avg_latency_ms,
        gpu_utilization_pct=status.gpu_utilization_pct,
        mem_free_gb=status.mem_free_gb,
    )


def registered_answer(grant: SessionGrant) -> tuple[MinerRegistered, int]:
    """The body and status of a registration: 201 for a new miner, 200 for an existing one."""
    registered = MinerRegistered(
        status="registered",
        session_token=grant.session_token,
        lease_ttl_sec=grant.lease_ttl_sec,
        next_heartbeat_sec=grant.next_heartbeat_sec,
        lease_expires_at=grant.lease_expires_at,
    )
    return registered, 201 if grant.created else 200


class MinerController(Controller):
    path = "/v1/miners"
    tags = ["miners"]  # noqa: RUF012  (Litestar reads it as a class attribute)

    @post(
        "/register",
        status_code=200,
        summary="Register a miner (or re-register it with the same api_key)",
        description="No token: the api_key authenticates. 201 for a new miner, 200 for an existing one. "
        "Re-registering revokes the miner's older session tokens.",
        responses={
            201: ResponseSpec(
                generate_examples=False,
                data_container=MinerRegistered,
                description="a new miner was registered",
            )
        },
    )
    @inject
    async def register(
        self, data: JSONBody[MinerRegister], batcher: FromDishka[RegistrationBatcher]
    ) -> Response[MinerRegistered]:
        grant = await batcher.submit(Registration(registration_spec(data), data.api_key))
        registered, status = registered_answer(grant)
        return Response(registered, status_code=status)

    @post("/update", status_code=200, summary="Report load and price (a beat)", security=MINER_SECURITY)
    @inject
    async def update(
        self,
        data: JSONBody[MinerUpdate],
        authorization: BeatAuthorization,
        use_case: FromDishka[UpdateMinerStatus],
    ) -> LeaseAck:
        expires = await use_case.execute(bearer_token(authorization), status_update(data))
        return LeaseAck(status="ok", lease_expires_at=expires)

    @post("/heartbeat", status_code=200, summary="Keep the lease alive over HTTP", security=MINER_SECURITY)
    @inject
    async def heartbeat(
        self,
        data: JSONBody[MinerHeartbeat],
        authorization: BeatAuthorization,
        use_case: FromDishka[RecordHeartbeat],
        metrics: FromDishka[Metrics],
    ) -> LeaseAck:
        expires = await use_case.execute(bearer_token(authorization), heartbeat_beat(data))
        metrics.heartbeats.inc()
        return LeaseAck(status="ok", lease_expires_at=expires)

    @route(
        "/lease/renew",
        http_method=["POST", "GET"],
        status_code=200,
        summary="Exchange the session token for a new one (a beat); the old one is revoked",
        security=MINER_SECURITY,
    )
    @inject
    async def renew(self, authorization: Authorization, use_case: FromDishka[RenewLease]) -> LeaseRenewed:
        renewed = await use_case.execute(bearer_token(authorization))
        return LeaseRenewed(session_token=renewed.session_token, lease_expires_at=renewed.lease_expires_at)

    @post(
        "/logout",
        status_code=200,
        summary="Go offline at once; the token is revoked",
        security=MINER_SECURITY,
    )
    @inject
    async def logout(self, authorization: Authorization, use_case: FromDishka[LogoutMiner]) -> LoggedOut:
        await use_case.execute(bearer_token(authorization))
        return LoggedOut(status="offline")

    @get(
        "/",
        summary="List miners with status and trust (operator)",
        guards=[require(Role.OPERATOR)],  # type: ignore[list-item]
        security=[{"BearerToken": []}],
    )
    @inject
    async def list_miners(
        self,
        use_case: FromDishka[ListMiners],
        online: Annotated[
            bool | None, QueryParameter(description="only online (true) or offline (false)")
        ] = None,
        offset: Offset = 0,
        limit: Limit = 100,
    ) -> Response[list[MinerRead]]:
        page = use_case.execute(online=online, offset=offset, limit=limit)
        return page_response([to_miner_read(v) for v in page.items], page.total)


_beat_decoder = msgspec.json.Decoder(MinerHeartbeat)
_ack_encoder = msgspec.json.Encoder()

WS_UNAUTHORIZED = 4401
WS_REPLACED = 4409


def _error(detail: str) -> str:
    return _ack_encoder.encode({"type": "error", "detail": detail}).decode()


async def _take_over(socket: WebSocket[Any, Any, Any], miner_id: str) -> None:
    """Make `socket` the miner's one live connection in this process; the older one is closed (4409)."""
    live: dict[str, WebSocket[Any, Any, Any]] = socket.app.state.setdefault("heartbeat_sockets", {})
    older = live.get(miner_id)
    live[miner_id] = socket
    if older is not None and older is not socket:
        with contextlib.suppress(Exception):  # it may be closing on its own already
            await older.close(code=WS_REPLACED, reason="replaced by a newer connection")


def _release(socket: WebSocket[Any, Any, Any], miner_id: str) -> None:
    live: dict[str, WebSocket[Any, Any, Any]] = socket.app.state.get("heartbeat_sockets", {})
    if live.get(miner_id) is socket:
        del live[miner_id]


@websocket("/v1/miners/heartbeat")
@inject_websocket
async def heartbeat_socket(
    socket: WebSocket[Any, Any, Any],
    authenticate: FromDishka[AuthenticateMiner],
    apply_beat: FromDishka[ApplyBeat],
    metrics: FromDishka[Metrics],
) -> None:
    """One JSON beat per message, each answered `{type:"ack", lease_expires_at}`.

    The token comes as an Authorization header or `?session_token=`; a missing or bad one closes
    the connection with code 4401 after accepting it, without an ack. One connection per miner: a newer
    one closes the older with code 4409.
    """
    await socket.accept()
    token = bearer_token(socket.headers.get("authorization")) or socket.query_params.get("session_token")
    try:
        auth = await authenticate.execute(token)
    except DomainError as exc:
        await socket.close(code=WS_UNAUTHORIZED, reason=exc.message[:120])
        return
    miner_id = auth.miner.miner_id
    await _take_over(socket, miner_id)
    try:
        while True:
            raw = await socket.receive_data(mode="text")
            if socket.app.state.get("heartbeat_sockets", {}).get(miner_id) is not socket:
                return  # replaced while this message was on its way
            try:
                beat = decode_strict(_beat_decoder, raw)
            except BodyError as exc:
                await socket.send_text(_error(exc.message))
                continue
            if apply_beat.live_miner(auth.token_hash, miner_id) is None:
                await socket.close(code=WS_UNAUTHORIZED, reason="session expired or revoked: register again")
                return
            expires = apply_beat.apply(miner_id, heartbeat_beat(beat))
            metrics.heartbeats.inc()
            await socket.send_text(_ack_encoder.encode(WsAck(type="ack", lease_expires_at=expires)).decode())
    except WebSocketDisconnect:
        return
    finally:
        _release(socket, miner_id)
