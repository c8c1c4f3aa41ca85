"""Seeded, realistic variety of miners and jobs for benchmarks, the simulator and the demo."""

from __future__ import annotations

import random
from dataclasses import dataclass

# (model, VRAM GB, relative price): prices loosely follow what such cards rent for.
GPU_MODELS: tuple[tuple[str, int, float], ...] = (
    ("RTX 3060", 12, 0.35),
    ("RTX 3090", 24, 0.60),
    ("RTX 4070 Ti", 12, 0.50),
    ("RTX 4090", 24, 0.85),
    ("A10", 24, 0.75),
    ("L4", 24, 0.70),
    ("A100 40GB", 40, 1.60),
    ("A100 80GB", 80, 2.10),
    ("H100", 80, 3.20),
)
REGIONS: tuple[str, ...] = ("eu", "us", "asia", "sa", "af")
TAGS_BY_REGION: dict[str, tuple[str, ...]] = {
    "eu": ("eu-west", "eu-central"),
    "us": ("us-east", "us-west"),
    "asia": ("ap-south", "ap-east"),
    "sa": ("sa-east",),
    "af": ("af-south",),
}
CAPABILITIES: tuple[str, ...] = (
    "sentence-transformers/all-MiniLM-L6-v2",
    "BAAI/bge-small-en-v1.5",
    "openai/whisper-small",
    "openai/clip-vit-base-patch32",
    "stabilityai/sdxl-turbo",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "Qwen/Qwen2.5-14B-Instruct",
    "meta-llama/Llama-3.1-70B-Instruct",
    "black-forest-labs/FLUX.1-schnell",
)
TASKS: tuple[str, ...] = ("text_embedding", "transcription", "image_generation", "llm_inference")


@dataclass(frozen=True, slots=True)
class MinerProfile:
    """A simulated miner's registration body plus how it behaves."""

    body: dict[str, object]
    latency_ms: float
    failure_rate: float
    flaky: bool


def miner_profiles(
    count: int, seed: int, *, flaky_share: float = 0.1, prefix: str = "sim"
) -> list[MinerProfile]:
    rng = random.Random(seed)
    profiles = []
    for i in range(count):
        model, vram, price = rng.choice(GPU_MODELS)
        region = rng.choice(REGIONS)
        gpu_count = rng.choices((1, 2, 4, 8), weights=(70, 15, 10, 5))[0]
        capabilities = sorted(rng.sample(CAPABILITIES, k=rng.randint(1, 4)))
        flaky = rng.random() < flaky_share
        body: dict[str, object] = {
            "miner_id": f"{prefix}-{i:06d}",
            "api_key": f"{prefix}-key-{seed}-{i:06d}-0123456789",
            "addr": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}:9000",
            "proto": rng.choice(("grpc", "http")),
            "gpu_name": model,
            "gpu_vram_gb": vram,
            "gpu_count": gpu_count,
            "cpu_cores": rng.choice((8, 16, 32, 64)),
            "ram_gb": rng.choice((32, 64, 128, 256)),
            "accel": "cuda",
            "price_token_per_ksec": f"{price * gpu_count * rng.uniform(0.8, 1.25):.4f}",
            "max_parallel": rng.randint(1, 8),
            "region": region,
            "tags": [rng.choice(TAGS_BY_REGION[region])],
            "capabilities": capabilities,
        }
        base_latency = rng.lognormvariate(5.0, 0.5)  # median ~150 ms
        profiles.append(
            MinerProfile(
                body=body,
                latency_ms=base_latency * (6.0 if flaky else 1.0),
                failure_rate=0.35 if flaky else 0.02,
                flaky=flaky,
            )
        )
    return profiles


def job_request(rng: random.Random, number: int, *, tenants: int = 5, top_k: int = 3) -> dict[str, object]:
    """A realistic match request: a VRAM floor, one model, often a region and a price cap."""
    requirements: dict[str, object] = {
        "task": rng.choice(TASKS),
        "min_vram_gb": rng.choice((8, 12, 16, 24, 40)),
        "capabilities_any": [rng.choice(CAPABILITIES)],
    }
    hints: dict[str, object] = {}
    if rng.random() < 0.5:
        hints["region"] = rng.choice(REGIONS)
    if rng.random() < 0.5:
        hints["max_price"] = f"{rng.uniform(0.5, 4.0):.2f}"
    return {
        "job_id": f"job-{number:08d}",
        "tenant_id": f"tenant-{rng.randrange(tenants)}",
        "requirements": requirements,
        "hints": hints,
        "top_k": top_k,
    }


@dataclass(frozen=True, slots=True)
class JobOutcome:
    completed: bool
    duration_ms: float
    latency_ms: float


def draw_outcome(profile: MinerProfile, rng: random.Random) -> JobOutcome:
    """How one job on this miner goes: flaky miners fail often and run slow."""
    latency = profile.latency_ms * rng.lognormvariate(0.0, 0.25)
    duration = latency * rng.uniform(2.0, 6.0)
    return JobOutcome(
        completed=rng.random() >= profile.failure_rate, duration_ms=duration, latency_ms=latency
    )
