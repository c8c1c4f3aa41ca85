"""POOLHUB_ENV=production refuses weak or example secrets at start-up, one line naming the variable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from dotenv import dotenv_values

from poolhub.app.cli.main import main
from poolhub.app.settings import EXAMPLE_VALUES, load_settings

REPO = Path(__file__).resolve().parents[2]
STRONG = {
    "POOLHUB_SECRET_KEY": "k" * 40,
    "POOLHUB_ADMIN_TOKEN": "a" * 40,
    "COORDINATOR_SHARED_SECRET": "c" * 40,
    "COORDINATOR_API_KEY": "coordinator-issued-key",
}


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]) -> str | None:
    """Run `poolhub serve` in tmp_path; returns the refusal, or None when it would have started."""
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: started.append(kw))
    try:
        main(["serve"])
    except SystemExit as stopped:
        return str(stopped.code)
    assert started
    return None


def test_the_example_env_file_is_refused_in_production(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    refusal = _serve(monkeypatch, tmp_path, {"POOLHUB_ENV": "production"})
    assert refusal is not None
    assert "\n" not in refusal
    assert "POOLHUB_SECRET_KEY is the example value from .env.example" in refusal
    assert "POOLHUB_ADMIN_TOKEN" in refusal and "COORDINATOR_SHARED_SECRET" in refusal


def test_production_is_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("POOLHUB_ENV", raising=False)
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    assert load_settings(env_file=tmp_path / ".env").env == "production"
    assert _serve(monkeypatch, tmp_path, {}) is not None


def test_the_example_env_file_starts_in_development(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env")
    assert _serve(monkeypatch, tmp_path, {"POOLHUB_ENV": "development"}) is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"POOLHUB_ADMIN_TOKEN": "short-admin-token"}, "POOLHUB_ADMIN_TOKEN is shorter than 32 characters"),
        ({"COORDINATOR_SHARED_SECRET": "a" * 40}, "COORDINATOR_SHARED_SECRET equals POOLHUB_ADMIN_TOKEN"),
        ({"POOLHUB_SECRET_KEY_PREVIOUS": "k" * 40}, "POOLHUB_SECRET_KEY_PREVIOUS equals POOLHUB_SECRET_KEY"),
        ({"COORDINATOR_API_KEY": "dev-only-coordinator-api-key"}, "COORDINATOR_API_KEY is the example value"),
    ],
)
def test_weak_secrets_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, overrides: dict[str, str], expected: str
) -> None:
    refusal = _serve(monkeypatch, tmp_path, {**STRONG, "POOLHUB_ENV": "production", **overrides})
    assert refusal is not None and expected in refusal
    assert "\n" not in refusal


def test_strong_distinct_secrets_start_in_production(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert _serve(monkeypatch, tmp_path, {**STRONG, "POOLHUB_ENV": "production"}) is None


def test_every_example_secret_is_known_to_the_check() -> None:
    example = dotenv_values(REPO / ".env.example")
    for name in (
        "POOLHUB_SECRET_KEY",
        "POOLHUB_ADMIN_TOKEN",
        "COORDINATOR_SHARED_SECRET",
        "COORDINATOR_API_KEY",
    ):
        assert example[name] in EXAMPLE_VALUES, name


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_env_creates_a_development_env_that_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shutil.copy(REPO / ".env.example", tmp_path / ".env.example")
    subprocess.run(["make", "-s", "-f", str(REPO / "Makefile"), "env"], cwd=tmp_path, check=True)  # noqa: S603, S607
    monkeypatch.delenv("POOLHUB_ENV", raising=False)
    assert load_settings(env_file=tmp_path / ".env").env == "development"
    assert _serve(monkeypatch, tmp_path, {}) is None
