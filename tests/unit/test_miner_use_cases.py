"""Registration and feedback use cases through in-memory fakes: no database, no container."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from poolhub.adapters.live import LiveDirectory
from poolhub.domain.billing import UnitPrices
from poolhub.domain.errors import AuthenticationError, MinerNotFoundError
from poolhub.domain.model import LeasePolicy, MinerSpec
from poolhub.domain.ports import MatchRecord
from poolhub.domain.security import hash_api_key, hash_token
from poolhub.domain.trust import Outcome, TrustPolicy
from poolhub.domain.use_cases.record_feedback import Feedback, RecordFeedback
from poolhub.domain.use_cases.register_miner import (
    DirectoryLimits,
    RegisterMiners,
    Registration,
    ServerSecret,
    SessionGrant,
)
from tests.fakes import (
    FakeChangeLog,
    FakeFeedbackRepository,
    FakeMatchRecordRepository,
    FakeMinerRepository,
    FakePresenceRepository,
    FakeRegistrationStore,
    FakeSessionRepository,
    FakeUnitOfWork,
    FakeUsageLedger,
    FixedClock,
    SequentialTokens,
)


def spec(miner_id: str, price: str = "0.75", gpu_count: int = 1) -> MinerSpec:
    return MinerSpec(
        miner_id=miner_id,
        addr="10.0.0.1:9000",
        proto="grpc",
        gpu_vram_gb=24,
        cpu_cores=8,
        ram_gb=64,
        price_token_per_ksec=Decimal(price),
        max_parallel=4,
        gpu_count=gpu_count,
    )


SECRET = ServerSecret("secret")


class World:
    def __init__(self) -> None:
        self.clock = FixedClock()
        self.miners = FakeMinerRepository()
        self.sessions = FakeSessionRepository()
        self.presence = FakePresenceRepository()
        self.uow = FakeUnitOfWork()
        self.directory = LiveDirectory(LeasePolicy(120, 60), TrustPolicy(), self.clock)
        self.changes = FakeChangeLog()
        self.feedback = FakeFeedbackRepository()
        self.ledger = FakeUsageLedger()
        self.matches = FakeMatchRecordRepository()

    def register(self, secret: ServerSecret = SECRET) -> RegisterMiners:
        return RegisterMiners(
            self.miners,
            FakeRegistrationStore(self.miners, self.sessions, self.presence),
            self.uow,
            self.directory,
            self.clock,
            SequentialTokens(),
            secret,
            self.changes,
            DirectoryLimits(),
        )

    def record_feedback(self) -> RecordFeedback:
        return RecordFeedback(
            self.feedback,
            self.miners,
            self.matches,
            self.ledger,
            self.uow,
            self.directory,
            UnitPrices.parse("gpu_hours:0.50,compute_hours:0.30,api_calls:0.0001"),
            self.clock,
            self.changes,
        )


@pytest.fixture
def world() -> World:
    return World()


async def test_a_new_miner_gets_a_live_token_in_one_commit(world: World) -> None:
    [grant] = await world.register().execute([Registration(spec("m-1"), "api-key-0123456789")])
    assert isinstance(grant, SessionGrant)
    assert grant.created
    assert grant.lease_expires_at == world.clock.now() + timedelta(seconds=120)
    assert world.uow.commits == 1
    assert world.directory.miner_for_token(hash_token(grant.session_token)) == "m-1"
    assert list(world.presence.intervals) == [("m-1", world.clock.now())]
    assert "api-key" not in world.miners.key_hashes["m-1"]


async def test_reregistering_revokes_the_old_token_and_keeps_trust(world: World) -> None:
    use_case = world.register()
    [first] = await use_case.execute([Registration(spec("m-1"), "api-key-0123456789")])
    assert isinstance(first, SessionGrant)
    world.clock.advance(timedelta(seconds=10))
    [second] = await use_case.execute([Registration(spec("m-1", price="0.5"), "api-key-0123456789")])
    assert isinstance(second, SessionGrant)
    assert not second.created
    assert world.directory.miner_for_token(hash_token(first.session_token)) is None
    assert hash_token(first.session_token) in world.sessions.revoked
    miner = world.directory.get("m-1")
    assert miner is not None
    assert miner.spec.price_token_per_ksec == Decimal("0.5")
    assert miner.registered_at == world.clock.now() - timedelta(seconds=10)


async def test_a_key_stored_under_the_previous_secret_is_stored_again_and_announced(world: World) -> None:
    key = "api-key-0123456789"
    await world.register(ServerSecret("old-secret")).execute([Registration(spec("m-1"), key)])
    world.directory.remember_api_key(hash_api_key("new-secret", key), ())
    rotated = world.register(ServerSecret("new-secret", previous="old-secret"))
    [grant] = await rotated.execute([Registration(spec("m-1"), key)])
    assert isinstance(grant, SessionGrant)
    assert not grant.created
    assert world.miners.key_hashes["m-1"] == hash_api_key("new-secret", key)
    # Other processes forget what they cached for that key; so does this one.
    assert ("api_key", "m-1") in world.changes.changes
    assert world.directory.miners_for_api_key(hash_api_key("new-secret", key)) is None
    # An unchanged key announces nothing beyond the registration.
    world.changes.changes.clear()
    await rotated.execute([Registration(spec("m-1"), key)])
    assert world.changes.changes == [("registered", "m-1")]


async def test_a_wrong_key_refuses_only_that_registration(world: World) -> None:
    use_case = world.register()
    await use_case.execute([Registration(spec("m-1"), "api-key-0123456789")])
    commits = world.uow.commits
    refused, accepted = await use_case.execute(
        [
            Registration(spec("m-1", price="9"), "not-the-key-of-m-1"),
            Registration(spec("m-2"), "key-of-m-2-000000"),
        ]
    )
    assert isinstance(refused, AuthenticationError)
    assert isinstance(accepted, SessionGrant)
    assert world.uow.commits == commits + 1
    assert world.miners.miners["m-1"].spec.price_token_per_ksec == Decimal("0.75")


async def test_only_refused_registrations_commit_nothing(world: World) -> None:
    use_case = world.register()
    await use_case.execute([Registration(spec("m-1"), "api-key-0123456789")])
    commits = world.uow.commits
    [refused] = await use_case.execute([Registration(spec("m-1"), "not-the-key-of-m-1")])
    assert isinstance(refused, AuthenticationError)
    assert world.uow.commits == commits


async def test_a_completed_job_moves_trust_and_bills_compute_and_gpu_hours(world: World) -> None:
    await world.register().execute([Registration(spec("m-1", gpu_count=4), "api-key-0123456789")])
    world.directory.record_match(MatchRecord("job-1", "acme", world.clock.now(), {}, [], "", 1, 1))
    result = await world.record_feedback().execute(
        Feedback("job-1", "m-1", Outcome.COMPLETED, duration_ms=1_800_000)
    )
    assert result.recorded
    assert result.trust_score > 0.5
    quantities = {r.resource_type: (r.tenant_id, r.quantity) for r in world.ledger.records.values()}
    assert quantities == {"compute_hours": ("acme", Decimal("0.5")), "gpu_hours": ("acme", Decimal("2"))}


async def test_a_repeated_feedback_changes_nothing(world: World) -> None:
    await world.register().execute([Registration(spec("m-1"), "api-key-0123456789")])
    use_case = world.record_feedback()
    first = await use_case.execute(Feedback("job-1", "m-1", Outcome.FAILED))
    commits = world.uow.commits
    again = await use_case.execute(Feedback("job-1", "m-1", Outcome.FAILED))
    assert not again.recorded
    assert again.trust_score == first.trust_score
    assert world.uow.commits == commits


async def test_feedback_for_an_unknown_miner_raises_and_commits_nothing(world: World) -> None:
    with pytest.raises(MinerNotFoundError, match="ghost"):
        await world.record_feedback().execute(Feedback("job-1", "ghost", Outcome.COMPLETED))
    assert world.uow.commits == 0
    assert world.feedback.entries == {}


async def test_without_any_tenant_the_miner_is_billed_as_its_own_tenant(world: World) -> None:
    await world.register().execute([Registration(spec("m-1"), "api-key-0123456789")])
    await world.record_feedback().execute(Feedback("job-9", "m-1", Outcome.COMPLETED, latency_ms=3_600_000))
    assert {r.tenant_id for r in world.ledger.records.values()} == {"m-1"}
