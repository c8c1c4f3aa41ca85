"""Lease, session-token and trust rules, with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from poolhub.domain.model import LeasePolicy, MinerStatus, Trust
from poolhub.domain.trust import Outcome, TrustPolicy

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_miner_is_online_until_the_grace_period_after_its_last_beat() -> None:
    lease = LeasePolicy(heartbeat_grace_sec=120, session_ttl_sec=60)
    status = lease.beat(None, T0)
    assert lease.lease_expires_at(status) == T0 + timedelta(seconds=120)
    assert lease.is_online(status, T0 + timedelta(seconds=119))
    assert not lease.is_online(status, T0 + timedelta(seconds=120))


def test_next_heartbeat_is_a_quarter_of_the_grace_and_at_least_one_second() -> None:
    assert LeasePolicy(heartbeat_grace_sec=120).next_heartbeat_sec == 30
    assert LeasePolicy(heartbeat_grace_sec=3).next_heartbeat_sec == 1


def test_logout_takes_the_miner_offline_at_once() -> None:
    lease = LeasePolicy()
    status = lease.logout(lease.beat(None, T0), T0 + timedelta(seconds=5))
    assert not lease.is_online(status, T0 + timedelta(seconds=6))
    assert lease.presence_end(status) == T0 + timedelta(seconds=5)
    assert not lease.token_is_valid(status, T0 + timedelta(seconds=6))


def test_a_beat_after_the_lease_lapsed_starts_a_new_online_interval() -> None:
    lease = LeasePolicy(heartbeat_grace_sec=120)
    first = lease.beat(None, T0)
    kept = lease.beat(first, T0 + timedelta(seconds=100))
    assert kept.online_since == T0
    lapsed = lease.beat(kept, T0 + timedelta(seconds=400))
    assert lapsed.online_since == T0 + timedelta(seconds=400)


def test_token_outlives_its_ttl_while_the_miner_is_online() -> None:
    lease = LeasePolicy(heartbeat_grace_sec=120, session_ttl_sec=60)
    status = MinerStatus(last_beat_at=T0, online_since=T0)
    assert lease.token_is_valid(status, T0 + timedelta(seconds=90))
    assert not lease.token_is_valid(status, T0 + timedelta(seconds=121))


def test_token_lives_its_ttl_after_last_use_when_the_ttl_is_longer_than_the_grace() -> None:
    lease = LeasePolicy(heartbeat_grace_sec=30, session_ttl_sec=300)
    status = MinerStatus(last_beat_at=T0, online_since=T0)
    assert not lease.is_online(status, T0 + timedelta(seconds=60))
    assert lease.token_is_valid(status, T0 + timedelta(seconds=299))
    assert not lease.token_is_valid(status, T0 + timedelta(seconds=300))


def test_trust_starts_at_one_half_and_moves_with_outcomes() -> None:
    policy = TrustPolicy()
    trust = Trust(as_of=T0)
    assert policy.score(trust, T0) == 0.5
    up = policy.observe(trust, Outcome.COMPLETED, T0)
    assert policy.score(up, T0) > 0.5
    failed = policy.observe(trust, Outcome.FAILED, T0)
    rejected = policy.observe(trust, Outcome.REJECTED, T0)
    assert policy.score(failed, T0) < policy.score(rejected, T0) < 0.5
    assert policy.score(policy.observe(trust, Outcome.ACCEPTED, T0), T0) == 0.5


def test_trust_stays_within_zero_and_one_under_long_streaks() -> None:
    policy = TrustPolicy()
    good = bad = Trust(as_of=T0)
    for i in range(2000):
        now = T0 + timedelta(minutes=i)
        good = policy.observe(good, Outcome.COMPLETED, now)
        bad = policy.observe(bad, Outcome.FAILED, now)
    end = T0 + timedelta(minutes=2000)
    assert 0.95 < policy.score(good, end) < 1.0
    assert 0.0 < policy.score(bad, end) < 0.05


def test_old_evidence_counts_half_after_one_half_life_and_trust_drifts_to_the_prior() -> None:
    policy = TrustPolicy(half_life_hours=10)
    trust = Trust(as_of=T0)
    for _ in range(8):
        trust = policy.observe(trust, Outcome.COMPLETED, T0)
    assert policy.samples(trust, T0 + timedelta(hours=10)) == pytest.approx(4.0)
    fresh = policy.score(trust, T0)
    aged = policy.score(trust, T0 + timedelta(hours=50))
    assert 0.5 < aged < fresh


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError, match="half_life_hours"):
        TrustPolicy(half_life_hours=0)
