"""What a match is asked and what it answers: weights, queries, indexed miners and results."""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

_WEIGHT_KEYS: Final = ("cap", "price", "latency", "trust", "load")
_WEIGHT_SUM_TOLERANCE: Final = 1e-6

REJECTION_REASONS: Final = (
    "offline",
    "full",
    "vram",
    "ram",
    "accel",
    "tags",
    "capabilities",
    "region",
    "price",
    "deadline",
)


@dataclass(frozen=True, slots=True)
class Weights:
    """How much each score term counts: five finite non-negative weights that sum to 1."""

    cap: float
    price: float
    latency: float
    trust: float
    load: float

    def __post_init__(self) -> None:
        for key, value in zip(_WEIGHT_KEYS, self._values(), strict=True):
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"weight {key}={value!r} must be a finite number >= 0")
        total = math.fsum(self._values())
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"weights must sum to 1 (±1e-6), got {total:.9g}")

    def _values(self) -> tuple[float, float, float, float, float]:
        return (self.cap, self.price, self.latency, self.trust, self.load)

    @classmethod
    def parse(cls, text: str) -> Weights:
        """Read `cap:0.40,price:0.20,latency:0.20,trust:0.15,load:0.05`; ValueError names what is wrong."""
        if not text.strip():
            raise ValueError("weights are empty; expected 'cap:…,price:…,latency:…,trust:…,load:…'")
        values: dict[str, float] = {}
        for item in text.split(","):
            name, sep, raw = (part.strip() for part in item.partition(":"))
            if not sep or not name or not raw:
                raise ValueError(f"weight item {item.strip()!r} is not of the form name:value")
            if name not in _WEIGHT_KEYS:
                raise ValueError(f"unknown weight {name!r}; expected {', '.join(_WEIGHT_KEYS)}")
            if name in values:
                raise ValueError(f"weight {name!r} is given twice")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ValueError(f"weight {name}={raw!r} is not a number") from None
        missing = [key for key in _WEIGHT_KEYS if key not in values]
        if missing:
            raise ValueError(f"missing weight(s): {', '.join(missing)}")
        return cls(**values)


DEFAULT_WEIGHTS: Final = Weights(0.40, 0.20, 0.20, 0.15, 0.05)


@dataclass(frozen=True, slots=True)
class IndexedMiner:
    """What the index keeps of one miner; it is online while `now < lease_expires_at`."""

    miner_id: str
    addr: str
    proto: str
    gpu_vram_gb: float
    ram_gb: float
    accel: str
    region: str | None
    tags: tuple[str, ...]
    capabilities: tuple[str, ...]
    price: Decimal
    max_parallel: int
    queue_len: int
    busy: bool
    lease_expires_at: float
    eta_ms: float | None
    trust: float
    trust_samples: float
    sla_penalty: float = 1.0


@dataclass(frozen=True, slots=True)
class Requirements:
    """Hard requirements; None or an empty tuple means the constraint is absent. `task` is informational."""

    min_vram_gb: float | None = None
    min_ram_gb: float | None = None
    accel: tuple[str, ...] | None = None
    tags_any: tuple[str, ...] | None = None
    capabilities_any: tuple[str, ...] | None = None
    task: str | None = None


@dataclass(frozen=True, slots=True)
class Hints:
    """Constraints from the request's hints; each applies only when given."""

    region: str | None = None
    max_price: Decimal | None = None
    deadline_ms: float | None = None


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """One match request; `explain_miner` asks why that miner was or was not returned."""

    job_id: str
    tenant_id: str | None
    requirements: Requirements
    hints: Hints
    top_k: int = 1
    explain_miner: str | None = None

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {self.top_k}")


@dataclass(frozen=True, slots=True)
class ExplorationPolicy:
    """How many top_k slots go to little-known miners, so new miners can earn a reputation."""

    share: float = 0.1
    max_samples: float = 5.0
    min_cap: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"exploration share must be within [0, 1], got {self.share!r}")
        if not self.max_samples >= 0.0:
            raise ValueError(f"exploration max_samples must be >= 0, got {self.max_samples!r}")
        if not 0.0 <= self.min_cap <= 1.0:
            raise ValueError(f"exploration min_cap must be within [0, 1], got {self.min_cap!r}")


DEFAULT_EXPLORATION: Final = ExplorationPolicy()


@dataclass(frozen=True, slots=True)
class ScoreTerms:
    """The five score terms of one miner, each in [0, 1]."""

    cap: float
    price: float
    latency: float
    trust: float
    load: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """A miner offered for the job, with its score and how it was reached."""

    miner_id: str
    addr: str
    proto: str
    score: float
    eta_ms: float | None
    price: Decimal
    matched_capabilities: tuple[str, ...]
    explain: str
    terms: ScoreTerms
    sla_penalty: float
    exploration: bool


@dataclass(frozen=True, slots=True)
class MinerExplanation:
    """Why one miner was or was not returned; `rank` is its place among all eligible miners."""

    miner_id: str
    registered: bool
    eligible: bool
    failed: tuple[str, ...]
    score: float | None
    rank: int | None
    returned: bool
    explain: str


@dataclass(frozen=True, slots=True)
class MatchResult:
    """The candidates and the counts behind them; `rejections` holds every reason, zero when none."""

    job_id: str
    candidates: tuple[Candidate, ...]
    explain: str
    considered: int
    eligible: int
    rejections: dict[str, int]
    miner_explanation: MinerExplanation | None
