"""Request and response shapes of the coordinator's routes: match and feedback."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from poolhub.app.http.schemas.common import Base, Id, Items, Millis, Price, Size, text

TopK = Annotated[int, Meta(ge=1, le=50, description="how many candidates to return, 1-50")]


class MatchRequirements(Base, kw_only=True):
    task: Annotated[str, text(128, description="informational")] | None = None
    min_vram_gb: Size | None = None
    min_ram_gb: Size | None = None
    accel: Items | None = None
    tags_any: Items | None = None
    capabilities_any: Items | None = None


class MatchHints(Base, kw_only=True):
    region: Annotated[str, text(64, 1)] | None = None
    max_price: Price | None = None
    deadline_ms: Millis | None = None


class MatchRequest(Base, kw_only=True):
    job_id: Id
    tenant_id: Id | None = None
    requirements: MatchRequirements = msgspec.field(default_factory=MatchRequirements)
    hints: MatchHints = msgspec.field(default_factory=MatchHints)
    top_k: TopK = 1
    explain_miner: Annotated[
        Id | None,
        Meta(
            description="Why not this miner? The answer then carries `miner_explanation`: every "
            "constraint it failed and, if it is eligible, its score and rank."
        ),
    ] = None


class MatchCandidate(Base):
    miner_id: str
    addr: str
    proto: str
    score: float
    eta_ms: float | None
    price: str
    matched_capabilities: list[str]
    explain: str


class MinerExplanationRead(Base):
    miner_id: str
    registered: bool
    eligible: bool
    failed: Annotated[list[str], Meta(description="every hard constraint it failed, by reason name")]
    score: float | None
    rank: Annotated[int | None, Meta(description="1-based place among all eligible miners")]
    returned: bool
    explain: str


class MatchResponse(msgspec.Struct, omit_defaults=True):
    job_id: str
    candidates: list[MatchCandidate]
    explain: str
    miner_explanation: MinerExplanationRead | None = None


class FeedbackCreate(Base, kw_only=True):
    job_id: Id
    miner_id: Id
    outcome: Literal["accepted", "rejected", "failed", "completed"]
    latency_ms: Millis | None = None
    duration_ms: Millis | None = None
    fail_code: Annotated[str, text(64, 1)] | None = None
    tokens_spent: Annotated[float, Meta(ge=0, le=1e15)] | None = None
    tenant_id: Id | None = None


class FeedbackRecorded(Base):
    status: Literal["recorded", "duplicate"]
    trust_score: float
