"""The AITBC deployment's setting names: read when the canonical name is unset, refused when they clash."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolhub.app.cli.main import main
from poolhub.app.settings import SettingsError, load_settings


def test_the_aitbc_names_stand_in_for_unset_canonical_names() -> None:
    settings = load_settings(
        {
            "POOLHUB_COORDINATOR_SHARED_SECRET": "aitbc-coordinator-secret",
            "POOLHUB_COORDINATOR_BILLING_URL": "http://coordinator.internal:8203",
            "POOLHUB_COORDINATOR_API_KEY": "aitbc-billing-key",
            "POOLHUB_POSTGRES_DSN": "postgresql://poolhub:pw@127.0.0.1:5432/aitbc",
        },
        env_file=None,
    )
    assert settings.coordinator_shared_secret == "aitbc-coordinator-secret"
    assert settings.coordinator_billing_url == "http://coordinator.internal:8203"
    assert settings.coordinator_api_key == "aitbc-billing-key"
    # A plain libpq DSN becomes the asyncpg URL SQLAlchemy needs.
    assert settings.database_url == "postgresql+asyncpg://poolhub:pw@127.0.0.1:5432/aitbc"


def test_an_alias_in_the_environment_fills_a_name_the_env_file_leaves_unset(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POOLHUB_PORT=9000\n")
    settings = load_settings({"POOLHUB_POSTGRES_DSN": "postgres://u@h/db"}, env_file=env_file)
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.port == 9000


def test_the_canonical_name_and_an_equal_alias_agree() -> None:
    settings = load_settings(
        {
            "DATABASE_URL": "postgresql+asyncpg://u@h/db",
            "POOLHUB_POSTGRES_DSN": "postgresql://u@h/db",
            "COORDINATOR_API_KEY": "same-key",
            "POOLHUB_COORDINATOR_API_KEY": "same-key",
        },
        env_file=None,
    )
    assert settings.database_url == "postgresql+asyncpg://u@h/db"
    assert settings.coordinator_api_key == "same-key"


@pytest.mark.parametrize(
    ("canonical", "alias", "value", "other"),
    [
        ("COORDINATOR_SHARED_SECRET", "POOLHUB_COORDINATOR_SHARED_SECRET", "secret-one", "secret-two"),
        ("COORDINATOR_BILLING_URL", "POOLHUB_COORDINATOR_BILLING_URL", "http://a:1", "http://b:2"),
        ("COORDINATOR_API_KEY", "POOLHUB_COORDINATOR_API_KEY", "key-one", "key-two"),
        ("DATABASE_URL", "POOLHUB_POSTGRES_DSN", "postgresql+asyncpg://u@h/a", "postgresql://u@h/b"),
    ],
)
def test_both_names_set_to_different_values_is_refused_in_one_line(
    canonical: str, alias: str, value: str, other: str
) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({canonical: value, alias: other}, env_file=None)
    message = str(error.value)
    assert canonical in message
    assert alias in message
    assert "\n" not in message
    assert other not in message  # secrets never end up in the message


def test_serve_refuses_to_start_on_a_clash(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COORDINATOR_SHARED_SECRET", "one-value")
    monkeypatch.setenv("POOLHUB_COORDINATOR_SHARED_SECRET", "another-value")
    with pytest.raises(SystemExit) as stopped:
        main(["serve"])
    line = str(stopped.value.code)
    assert "COORDINATOR_SHARED_SECRET and its alias POOLHUB_COORDINATOR_SHARED_SECRET" in line
    assert "\n" not in line
