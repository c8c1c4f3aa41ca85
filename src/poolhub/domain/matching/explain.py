"""The explain strings of a match, and the scalar twin of the filters that names every failed constraint."""

from __future__ import annotations

from typing import Final

from poolhub.domain.matching.values import REJECTION_REASONS, IndexedMiner, MatchQuery, ScoreTerms

_SEP: Final = " • "


def terms_explain(terms: ScoreTerms, sla_penalty: float, *, exploration: bool) -> str:
    """The candidate explain string: five terms with two decimals, then any penalty and exploration flag."""
    text = (
        f"cap={terms.cap:.2f} • price={terms.price:.2f} • latency={terms.latency:.2f} • "
        f"trust={terms.trust:.2f} • load={terms.load:.2f}"
    )
    if sla_penalty < 1.0:
        text += f" • sla_penalty={sla_penalty:.2f}"
    if exploration:
        text += " • exploration=true"
    return text


def rejection_explain(considered: int, rejections: dict[str, int], returned: int) -> str:
    """The top-level explain string: considered, non-zero rejections in reason order, returned."""
    listed = " ".join(
        f"{reason}={rejections[reason]}" for reason in REJECTION_REASONS if rejections.get(reason)
    )
    return f"considered={considered}{_SEP}rejected: {listed or 'none'}{_SEP}returned={returned}"


def failed_constraints(miner: IndexedMiner, query: MatchQuery, now: float) -> tuple[str, ...]:
    """Every constraint the miner fails, in REJECTION_REASONS order: the scalar twin of the filters."""
    return tuple(reason for reason, _detail in failures(miner, query, now))


def failures(miner: IndexedMiner, query: MatchQuery, now: float) -> list[tuple[str, str]]:
    req, hints = query.requirements, query.hints
    out: list[tuple[str, str]] = []
    if not now < miner.lease_expires_at:
        out.append(("offline", "offline (lease lapsed or logged out)"))
    if miner.busy or miner.queue_len >= miner.max_parallel:
        why = "busy" if miner.busy else f"queue {miner.queue_len} of {miner.max_parallel}"
        out.append(("full", f"full ({why})"))
    if req.min_vram_gb is not None and miner.gpu_vram_gb < req.min_vram_gb:
        out.append(("vram", f"vram ({miner.gpu_vram_gb:g} GB < {req.min_vram_gb:g} GB)"))
    if req.min_ram_gb is not None and miner.ram_gb < req.min_ram_gb:
        out.append(("ram", f"ram ({miner.ram_gb:g} GB < {req.min_ram_gb:g} GB)"))
    if req.accel and miner.accel not in req.accel:
        out.append(("accel", f"accel ({miner.accel} not in {', '.join(req.accel)})"))
    if req.tags_any and not set(req.tags_any).intersection(miner.tags):
        out.append(("tags", f"tags (none of {', '.join(req.tags_any)})"))
    if req.capabilities_any and not set(req.capabilities_any).intersection(miner.capabilities):
        out.append(("capabilities", f"capabilities (none of {', '.join(req.capabilities_any)})"))
    if hints.region is not None and miner.region != hints.region:
        out.append(("region", f"region ({miner.region or 'none'} ≠ {hints.region})"))
    # Same float64 comparison as the vectorised filter, so the explanation agrees with the counts.
    if hints.max_price is not None and float(miner.price) > float(hints.max_price):
        out.append(("price", f"price ({miner.price} > {hints.max_price})"))
    eta = miner.eta_ms
    if hints.deadline_ms is not None and eta is not None and eta > hints.deadline_ms:
        out.append(("deadline", f"deadline (eta {eta:g} ms > {hints.deadline_ms:g} ms)"))
    return out
