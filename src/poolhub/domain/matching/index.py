"""The miner index: add, update and remove miners; matching itself is in `ranking`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal

import numpy as np

from poolhub.domain.matching.columns import clamp01
from poolhub.domain.matching.ranking import RankedColumns
from poolhub.domain.matching.values import IndexedMiner


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def _check_price(price: Decimal) -> None:
    if not price.is_finite() or price < 0:
        raise ValueError(f"price must be a finite decimal >= 0, got {price}")


class MinerIndex(RankedColumns):
    """The directory's in-memory index: every registered miner, kept current by heartbeats and updates."""

    def upsert(self, miner: IndexedMiner) -> None:
        """Add the miner or replace what the index holds of it, keeping its row."""
        for name in ("gpu_vram_gb", "ram_gb", "trust", "trust_samples", "sla_penalty"):
            _check_finite(name, getattr(miner, name))
        _check_price(miner.price)
        row = self._rows.get(miner.miner_id)
        if row is None:
            row = self._allocate_row()
            self._rows[miner.miner_id] = row
            self._ids[row] = miner.miner_id
            self._live[row] = True
            self._id_rank = None
        self._records[row] = miner
        self._vram[row] = miner.gpu_vram_gb
        self._ram[row] = miner.ram_gb
        self._accel.set(row, miner.accel)
        self._region.set(row, miner.region)
        self._tags.set_row(row, miner.tags)
        self._caps.set_row(row, miner.capabilities)
        self._set_lease(row, miner.lease_expires_at)
        self._set_price(row, float(miner.price))
        self._set_eta(row, miner.eta_ms)
        self._set_slots(row, miner)
        self._trust[row] = clamp01(miner.trust)
        self._samples[row] = miner.trust_samples
        self._set_penalty(row, miner.sla_penalty)
        self._restate_static(row)

    def update_status(
        self,
        miner_id: str,
        *,
        queue_len: int | None = None,
        busy: bool | None = None,
        lease_expires_at: float | None = None,
        eta_ms: float | None = None,
        price: Decimal | None = None,
    ) -> bool:
        """Apply a heartbeat or status update; None leaves a field as it is. False if the id is unknown."""
        if price is not None:
            _check_price(price)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        miner = self._record(row)
        miner = replace(
            miner,
            queue_len=miner.queue_len if queue_len is None else queue_len,
            busy=miner.busy if busy is None else busy,
            lease_expires_at=miner.lease_expires_at if lease_expires_at is None else lease_expires_at,
            eta_ms=miner.eta_ms if eta_ms is None else eta_ms,
            price=miner.price if price is None else price,
        )
        self._records[row] = miner
        if queue_len is not None or busy is not None:
            self._set_slots(row, miner)
            self._restate_static(row)
        if lease_expires_at is not None:
            self._set_lease(row, lease_expires_at)
        if eta_ms is not None:
            self._set_eta(row, eta_ms)
        if price is not None:
            self._set_price(row, float(price))
        return True

    def update_trust(self, miner_id: str, trust: float, samples: float) -> bool:
        """Record a new trust score and the evidence behind it; False if the id is unknown."""
        _check_finite("trust", trust)
        _check_finite("trust_samples", samples)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        self._records[row] = replace(self._record(row), trust=trust, trust_samples=samples)
        self._trust[row] = clamp01(trust)
        self._samples[row] = samples
        self._restate_static(row)
        return True

    def set_penalty(self, miner_id: str, factor: float) -> bool:
        """Set the factor an open SLA violation multiplies the score by (1 = none); False if unknown."""
        _check_finite("sla_penalty", factor)
        row = self._rows.get(miner_id)
        if row is None:
            return False
        self._records[row] = replace(self._record(row), sla_penalty=factor)
        self._set_penalty(row, factor)
        return True

    def remove(self, miner_id: str) -> bool:
        """Forget the miner; a later upsert reuses its row. False if the id is unknown."""
        row = self._rows.pop(miner_id, None)
        if row is None:
            return False
        self._records[row] = None
        self._ids[row] = ""
        self._live[row] = False
        self._id_rank = None
        self._set_lease(row, -math.inf)
        self._has_slot[row] = False
        self._set_eta(row, None)
        self._set_penalty(row, 1.0)
        self._tags.set_row(row, ())
        self._caps.set_row(row, ())
        self._free.append(row)
        return True

    def token_count(self) -> int:
        """Distinct tags plus distinct capabilities the indexed miners carry."""
        return len(self._tags) + len(self._caps)

    def new_tokens(self, tags: Iterable[str], capabilities: Iterable[str]) -> tuple[set[str], set[str]]:
        """The tags and the capabilities no indexed miner carries yet."""
        return self._tags.new_tokens(tags), self._caps.new_tokens(capabilities)

    def get(self, miner_id: str) -> IndexedMiner | None:
        row = self._rows.get(miner_id)
        return None if row is None else self._records[row]

    def miner_ids(self) -> list[str]:
        return sorted(self._rows)

    def __contains__(self, miner_id: object) -> bool:
        return isinstance(miner_id, str) and miner_id in self._rows

    def online_count(self, now: float) -> int:
        return int(np.count_nonzero(self._lease[: self._size] > now))

    def avg_eta_ms(self, now: float) -> float | None:
        """Mean eta over online miners whose eta is known; None when there is none."""
        eta = self._eta[: self._size]
        known = (self._lease[: self._size] > now) & ~np.isnan(eta)
        if not known.any():
            return None
        return float(eta[known].mean())
