"""The coordinator's routes: match a job to miners, and report how a job went."""

from __future__ import annotations

import time

import msgspec
from dishka.integrations.litestar import FromDishka, inject
from litestar import Controller, Response, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from poolhub.app.http.auth import Role, require
from poolhub.app.http.schemas.match import (
    FeedbackCreate,
    FeedbackRecorded,
    MatchCandidate,
    MatchRequest,
    MatchResponse,
    MinerExplanationRead,
)
from poolhub.app.metrics import Metrics
from poolhub.domain.matching import Hints, MatchQuery, MatchResult, Requirements
from poolhub.domain.trust import Outcome
from poolhub.domain.use_cases.match_job import MatchJob
from poolhub.domain.use_cases.record_feedback import Feedback, RecordFeedback


def _tuple(items: list[str] | None) -> tuple[str, ...] | None:
    return tuple(items) if items is not None else None


def to_match_query(body: MatchRequest) -> MatchQuery:
    req, hints = body.requirements, body.hints
    return MatchQuery(
        job_id=body.job_id,
        tenant_id=body.tenant_id,
        requirements=Requirements(
            min_vram_gb=req.min_vram_gb,
            min_ram_gb=req.min_ram_gb,
            accel=_tuple(req.accel),
            tags_any=_tuple(req.tags_any),
            capabilities_any=_tuple(req.capabilities_any),
            task=req.task,
        ),
        hints=Hints(
            region=hints.region,
            max_price=hints.max_price,
            deadline_ms=hints.deadline_ms,
        ),
        top_k=body.top_k,
        explain_miner=body.explain_miner,
    )


def to_match_response(result: MatchResult) -> MatchResponse:
    explained = result.miner_explanation
    return MatchResponse(
        job_id=result.job_id,
        candidates=[
            MatchCandidate(
                miner_id=c.miner_id,
                addr=c.addr,
                proto=c.proto,
                score=c.score,
                eta_ms=c.eta_ms,
                price=str(c.price),
                matched_capabilities=list(c.matched_capabilities),
                explain=c.explain,
            )
            for c in result.candidates
        ],
        explain=result.explain,
        miner_explanation=MinerExplanationRead(
            miner_id=explained.miner_id,
            registered=explained.registered,
            eligible=explained.eligible,
            failed=list(explained.failed),
            score=explained.score,
            rank=explained.rank,
            returned=explained.returned,
            explain=explained.explain,
        )
        if explained is not None
        else None,
    )


def observe_match(metrics: Metrics, result: MatchResult, started: float) -> None:
    """The match metrics of one answered request; `started` is its `time.perf_counter()` at arrival."""
    metrics.match_latency_ms.observe((time.perf_counter() - started) * 1000)
    metrics.match_requests.inc()
    for reason, count in result.rejections.items():
        if count:
            metrics.rejections_by_reason[reason].inc(count)


class MatchController(Controller):
    path = "/v1"
    tags = ["coordinator"]  # noqa: RUF012  (Litestar reads it as a class attribute)
    guards = [require(Role.COORDINATOR)]  # type: ignore[list-item]  # noqa: RUF012
    security = [{"BearerToken": []}]  # noqa: RUF012

    @post(
        "/match",
        status_code=200,
        summary="The best K online miners for a job, with explanations",
        description="Answered from memory. `explain` counts the miners rejected by each hard filter "
        "(an online miner failing several is counted under each). Set `explain_miner` to learn why a "
        "given miner was or was not returned.",
    )
    @inject
    async def match(
        self, data: JSONBody[MatchRequest], use_case: FromDishka[MatchJob], metrics: FromDishka[Metrics]
    ) -> MatchResponse:
        started = time.perf_counter()
        result = use_case.execute(to_match_query(data), msgspec.to_builtins(data))
        response = to_match_response(result)
        observe_match(metrics, result, started)
        return response

    @post(
        "/feedback",
        status_code=201,
        summary="How a job went on a miner; moves its trust, and a completed job becomes usage",
        description="201 `recorded` the first time; the same (job_id, miner_id, outcome) again is "
        "200 `duplicate` and changes nothing. Unknown miner: 404.",
        responses={
            200: ResponseSpec(
                generate_examples=False,
                data_container=FeedbackRecorded,
                description="a duplicate: nothing changed",
            )
        },
    )
    @inject
    async def feedback(
        self, data: JSONBody[FeedbackCreate], use_case: FromDishka[RecordFeedback]
    ) -> Response[FeedbackRecorded]:
        result = await use_case.execute(
            Feedback(
                job_id=data.job_id,
                miner_id=data.miner_id,
                outcome=Outcome(data.outcome),
                latency_ms=data.latency_ms,
                duration_ms=data.duration_ms,
                fail_code=data.fail_code,
                tokens_spent=data.tokens_spent,
                tenant_id=data.tenant_id,
            )
        )
        return Response(
            FeedbackRecorded(
                status="recorded" if result.recorded else "duplicate",
                trust_score=round(result.trust_score, 6),
            ),
            status_code=201 if result.recorded else 200,
        )
