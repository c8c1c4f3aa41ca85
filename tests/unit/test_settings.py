"""Settings: defaults, parsing, and one clear line per invalid variable."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from poolhub.app.cli.main import main
from poolhub.app.settings import SettingsError, load_settings


def test_defaults_match_the_operating_contract() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.database_url == "sqlite+aiosqlite:///./var/poolhub.db"
    assert (settings.bind, settings.port) == ("127.0.0.1", 8210)
    assert (settings.session_ttl_sec, settings.heartbeat_grace_sec) == (60, 120)
    assert settings.default_weights.cap == 0.40
    assert settings.coordinator_billing_url == "http://localhost:8011"
    assert settings.billing_unit_prices.price_of("gpu_hours") == Decimal("0.50")
    assert settings.sla_collection_interval_seconds == 300
    assert settings.capacity_forecast_hours == 168


def test_values_come_from_the_environment_over_the_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("POOLHUB_PORT=9000\nHEARTBEAT_GRACE_SEC=30\n")
    settings = load_settings({"POOLHUB_PORT": "9100"}, env_file=env_file)
    assert settings.port == 9100
    assert settings.heartbeat_grace_sec == 30


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("POOLHUB_PORT", "eighty", "POOLHUB_PORT"),
        ("HEARTBEAT_GRACE_SEC", "0", "HEARTBEAT_GRACE_SEC"),
        ("DEFAULT_WEIGHTS", "cap:1,price:1", "DEFAULT_WEIGHTS"),
        ("SLA_UPTIME_THRESHOLD", "150", "SLA_UPTIME_THRESHOLD"),
        ("TRUST_HALF_LIFE_HOURS", "-1", "TRUST_HALF_LIFE_HOURS"),
        ("BILLING_UNIT_PRICES", "gpu_hours:free", "BILLING_UNIT_PRICES"),
        ("DATABASE_URL", "not a url", "DATABASE_URL"),
        ("EXPLORATION_SHARE", "nan", "EXPLORATION_SHARE"),
    ],
)
def test_an_invalid_value_is_one_line_naming_the_variable(name: str, value: str, expected: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({name: value}, env_file=None)
    message = str(error.value)
    assert expected in message
    assert "\n" not in message


def test_serve_refuses_to_start_with_empty_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("POOLHUB_SECRET_KEY", "POOLHUB_ADMIN_TOKEN", "COORDINATOR_SHARED_SECRET"):
        monkeypatch.setenv(name, "")
    with pytest.raises(SystemExit) as stopped:
        main(["serve"])
    assert "POOLHUB_SECRET_KEY" in str(stopped.value.code)
    assert "refusing to start" in str(stopped.value.code)


def test_an_invalid_setting_stops_the_cli_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POOLHUB_PORT", "eighty")
    with pytest.raises(SystemExit) as stopped:
        main(["migrate"])
    assert "POOLHUB_PORT='eighty' is invalid" in str(stopped.value.code)


def test_retention_days_come_from_the_environment_with_their_defaults() -> None:
    defaults = load_settings({}, env_file=None)
    assert (defaults.retention_days, defaults.capacity_history_days) == (30, 90)
    custom = load_settings({"RETENTION_DAYS": "7", "CAPACITY_HISTORY_DAYS": "365"}, env_file=None)
    assert (custom.retention_days, custom.capacity_history_days) == (7, 365)
    with pytest.raises(SettingsError, match="RETENTION_DAYS"):
        load_settings({"RETENTION_DAYS": "0"}, env_file=None)
