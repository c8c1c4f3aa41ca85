"""Pool capacity snapshots and forecast-driven scaling recommendations."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from poolhub.domain.errors import InvalidInputError
from poolhub.domain.forecasting import METHOD_NONE, Forecast, hours_until_threshold, peak

STATE_HEALTHY = "healthy"
STATE_WATCH = "watch"
STATE_SCALE_UP = "scale_up"
STATE_SCALE_DOWN = "scale_down"

ACTION_ADD_MINERS = "add_miners"
ACTION_ADD_SLOTS = "add_slots"
ACTION_REMOVE_MINERS = "remove_miners"
ACTION_HOLD = "hold"

# "watch" starts when the peak reaches this share of the alert threshold (72 % for an 80 % alert).
WATCH_FRACTION = 0.9
# "scale_down" is considered when the peak stays under this share of the threshold (40 % for 80 %) ...
SCALE_DOWN_FRACTION = 0.5
# ... and may remove capacity only while the peak stays under this share of it (48 % for 80 %).
SCALE_DOWN_TARGET_FRACTION = 0.6
# Priority of a scale-up by the hours until the threshold is reached: ≤ 24 critical, ≤ 72 high, else medium.
CRITICAL_WITHIN_HOURS = 24
HIGH_WITHIN_HOURS = 72
# Float noise must not turn an exact 56.0 slots into 57.
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class CapacitySnapshotValues:
    """The pool's capacity at one instant."""

    total_miners: int
    online_miners: int
    total_slots: int
    used_slots: int
    capacity_utilization_pct: float
    capacity_availability_pct: float


@dataclass(frozen=True, slots=True)
class PoolMember:
    """What a snapshot needs to know of one registered miner."""

    max_parallel: int
    queue_len: int
    busy: bool
    online: bool


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One action for the operator; `priority` is low, medium, high or critical."""

    action: str
    quantity: int
    reason: str
    priority: str


@dataclass(frozen=True, slots=True)
class CapacityPlan:
    """The pool's state (healthy, watch, scale_up, scale_down) and what to do about it."""

    current_state: str
    recommendations: tuple[Recommendation, ...]


def snapshot(members: Sequence[PoolMember]) -> CapacitySnapshotValues:
    """Count every miner; slots only of online ones.

    total_slots = Σ max_parallel and used_slots = Σ min(queue_len, max_parallel) (a busy miner: all its
    slots) over online miners; utilisation = used ÷ total × 100 and availability = 100 − utilisation,
    both 0 when there is no online slot (no miner online, or only miners declaring 0 slots).
    """
    online = [member for member in members if member.online]
    total = sum(max(0, member.max_parallel) for member in online)
    used = sum(
        max(0, member.max_parallel) if member.busy else max(0, min(member.queue_len, member.max_parallel))
        for member in online
    )
    utilization = used / total * 100.0 if total > 0 else 0.0
    availability = 100.0 - utilization if total > 0 else 0.0
    return CapacitySnapshotValues(
        total_miners=len(members),
        online_miners=len(online),
        total_slots=total,
        used_slots=used,
        capacity_utilization_pct=utilization,
        capacity_availability_pct=availability,
    )


def _ceil(value: float) -> int:
    return math.ceil(value - _EPSILON)


def _typical_miner_slots(miner_slot_sizes: Sequence[int], current: CapacitySnapshotValues) -> int:
    """Median declared slots of the miners; without sizes, the online average; at least 1."""
    sizes = [size for size in miner_slot_sizes if size > 0]
    if sizes:
        return max(1, _ceil(statistics.median(sizes)))
    if current.online_miners > 0:
        return max(1, round(current.total_slots / current.online_miners))
    return 1


def _scale_up_priority(hours_until: int) -> str:
    if hours_until <= CRITICAL_WITHIN_HOURS:
        return "critical"
    if hours_until <= HIGH_WITHIN_HOURS:
        return "high"
    return "medium"


def recommend(
    forecast: Forecast,
    current: CapacitySnapshotValues,
    miner_slot_sizes: Sequence[int],
    alert_threshold_pct: float,
) -> CapacityPlan:
    """Turn the utilisation forecast and current capacity into a state and actions.

    The peak is the highest forecast value, or the current utilisation when higher (hour 0). With
    T = alert threshold, S = current total slots and a typical miner = median of `miner_slot_sizes`:
    - no online slot → "watch": add_miners 1, high (the pool cannot take any job);
    - no history (method "none") → "watch": hold 0, low (nothing to forecast from yet);
    - peak ≥ T → "scale_up": add_slots = ceil(peak·S/100 ÷ (T/100)) − S (at least 1) and
      add_miners = ceil(add_slots ÷ typical miner); priority critical when T is reached within 24 h
      (or now), high within 72 h, else medium;
    - peak ≥ 0.9·T → "watch": hold 0, medium when within 24 h, else low;
    - peak < 0.5·T and at least one whole typical miner can go while the peak stays under 0.6·T (and one
      miner stays online) → "scale_down": remove_miners n, low;
    - otherwise → "healthy": hold 0, low.
    """
    if not 0.0 < alert_threshold_pct <= 100.0:
        raise InvalidInputError("alert_threshold_pct must be in (0, 100]")
    threshold = alert_threshold_pct
    total = current.total_slots
    if current.online_miners == 0 or total == 0:
        return CapacityPlan(
            current_state=STATE_WATCH,
            recommendations=(
                Recommendation(
                    action=ACTION_ADD_MINERS,
                    quantity=1,
                    reason=(
                        f"No online slot ({current.online_miners} of {current.total_miners} miners online): "
                        "the pool cannot take any job, so bring at least one miner online."
                    ),
                    priority="high",
                ),
            ),
        )
    top = peak(forecast.points)
    if forecast.method == METHOD_NONE or top is None:
        return CapacityPlan(
            current_state=STATE_WATCH,
            recommendations=(
                Recommendation(
                    action=ACTION_HOLD,
                    quantity=0,
                    reason=(
                        "No capacity history to forecast from yet "
                        f"({forecast.history_points} hourly points); current utilisation is "
                        f"{current.capacity_utilization_pct:.1f}% of {total} slots."
                    ),
                    priority="low",
                ),
            ),
        )

    now_pct = current.capacity_utilization_pct
    peak_pct, peak_hour = (now_pct, 0) if now_pct > top.value else (top.value, top.hours_ahead)
    crossing = 0 if now_pct >= threshold else hours_until_threshold(forecast.points, threshold)
    typical = _typical_miner_slots(miner_slot_sizes, current)
    peak_used = peak_pct * total / 100.0
    horizon = max(point.hours_ahead for point in forecast.points)
    when = "now" if peak_hour == 0 else f"in {peak_hour} h"

    if peak_pct >= threshold and crossing is not None:
        slots = max(1, _ceil(peak_used / (threshold / 100.0)) - total)
        miners = _ceil(slots / typical)
        priority = _scale_up_priority(crossing)
        reached = "is already reached" if crossing == 0 else f"is reached in {crossing} h"
        base = (
            f"Utilisation is forecast to peak at {peak_pct:.1f}% {when} ({peak_used:.1f} of {total} slots); "
            f"the {threshold:.0f}% alert threshold {reached}."
        )
        return CapacityPlan(
            current_state=STATE_SCALE_UP,
            recommendations=(
                Recommendation(
                    action=ACTION_ADD_MINERS,
                    quantity=miners,
                    reason=f"{base} Add {miners} miner(s) of {typical} slots to keep the peak under it.",
                    priority=priority,
                ),
                Recommendation(
                    action=ACTION_ADD_SLOTS,
                    quantity=slots,
                    reason=f"{base} Or add {slots} slot(s): {total + slots} slots keep the peak under it.",
                    priority=priority,
                ),
            ),
        )
    if peak_pct >= WATCH_FRACTION * threshold:
        return CapacityPlan(
            current_state=STATE_WATCH,
            recommendations=(
                Recommendation(
                    action=ACTION_HOLD,
                    quantity=0,
                    reason=(
                        f"Utilisation is forecast to peak at {peak_pct:.1f}% {when}, within "
                        f"{threshold - peak_pct:.1f} points of the {threshold:.0f}% alert threshold "
                        f"over the next {horizon} h; no change needed yet."
                    ),
                    priority="medium" if peak_hour <= CRITICAL_WITHIN_HOURS else "low",
                ),
            ),
        )
    if peak_pct < SCALE_DOWN_FRACTION * threshold:
        target = SCALE_DOWN_TARGET_FRACTION * threshold
        keep_slots = _ceil(peak_used / (target / 100.0))
        removable_slots = max(0, total - keep_slots)
        miners = min(removable_slots // typical, current.online_miners - 1)
        if miners >= 1:
            return CapacityPlan(
                current_state=STATE_SCALE_DOWN,
                recommendations=(
                    Recommendation(
                        action=ACTION_REMOVE_MINERS,
                        quantity=miners,
                        reason=(
                            f"Utilisation is forecast to peak at only {peak_pct:.1f}% {when} "
                            f"({peak_used:.1f} of {total} slots) over the next {horizon} h; {keep_slots} "
                            f"slots keep it under {target:.0f}%, so {miners} miner(s) of {typical} slots "
                            "could be released."
                        ),
                        priority="low",
                    ),
                ),
            )
    return CapacityPlan(
        current_state=STATE_HEALTHY,
        recommendations=(
            Recommendation(
                action=ACTION_HOLD,
                quantity=0,
                reason=(
                    f"Utilisation is forecast to peak at {peak_pct:.1f}% {when} over the next {horizon} h, "
                    f"below the {threshold:.0f}% alert threshold with {total} slots."
                ),
                priority="low",
            ),
        ),
    )
