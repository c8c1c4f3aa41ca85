"""The simulator's fleet and job generator: seeded, varied, realistic."""

from __future__ import annotations

import random
import statistics

from poolhub.app.tools.fleet import CAPABILITIES, GPU_MODELS, draw_outcome, job_request, miner_profiles


def test_the_same_seed_gives_the_same_fleet_and_another_seed_another() -> None:
    assert miner_profiles(50, seed=3) == miner_profiles(50, seed=3)
    assert miner_profiles(50, seed=3) != miner_profiles(50, seed=4)


def test_the_fleet_is_varied_and_every_body_is_a_valid_registration() -> None:
    fleet = miner_profiles(500, seed=1)
    models = {p.body["gpu_name"] for p in fleet}
    regions = {p.body["region"] for p in fleet}
    assert len(models) >= len(GPU_MODELS) - 1
    assert len(regions) == 5
    vram_by_model = {name: vram for name, vram, _ in GPU_MODELS}
    for profile in fleet:
        body = profile.body
        assert body["gpu_vram_gb"] == vram_by_model[str(body["gpu_name"])]
        assert 1 <= int(str(body["max_parallel"])) <= 8
        assert float(str(body["price_token_per_ksec"])) > 0
        assert set(body["capabilities"]) <= set(CAPABILITIES)  # type: ignore[arg-type]
        assert 16 <= len(str(body["api_key"])) <= 256
    assert len({p.body["miner_id"] for p in fleet}) == 500


def test_a_share_of_miners_is_flaky_and_they_fail_and_lag_more() -> None:
    fleet = miner_profiles(2000, seed=2, flaky_share=0.2)
    flaky = [p for p in fleet if p.flaky]
    steady = [p for p in fleet if not p.flaky]
    assert 0.15 < len(flaky) / len(fleet) < 0.25
    rng = random.Random(5)
    flaky_failures = sum(not draw_outcome(p, rng).completed for p in flaky for _ in range(10))
    steady_failures = sum(not draw_outcome(p, rng).completed for p in steady for _ in range(10))
    assert flaky_failures / (10 * len(flaky)) > 5 * steady_failures / (10 * len(steady))
    assert statistics.median(p.latency_ms for p in flaky) > 3 * statistics.median(
        p.latency_ms for p in steady
    )


def test_no_flaky_share_means_no_flaky_miners() -> None:
    assert not any(p.flaky for p in miner_profiles(300, seed=1, flaky_share=0.0))


def test_jobs_are_seeded_and_name_one_known_capability() -> None:
    rng_a, rng_b, rng_c = random.Random(9), random.Random(9), random.Random(10)
    first = [job_request(rng_a, n) for n in range(20)]
    again = [job_request(rng_b, n) for n in range(20)]
    other = [job_request(rng_c, n) for n in range(20)]
    assert first == again
    assert first != other
    assert len({str(job["requirements"]) for job in first}) > 5
    for job in first:
        requirements = job["requirements"]
        assert isinstance(requirements, dict)
        assert requirements["capabilities_any"][0] in CAPABILITIES
        assert job["top_k"] == 3
