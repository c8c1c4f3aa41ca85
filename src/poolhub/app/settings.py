"""Settings from the environment and `.env`, parsed once into a frozen struct; one error per bad value."""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from dotenv import dotenv_values

from poolhub.domain.billing import DEFAULT_UNIT_PRICES, UnitPrices
from poolhub.domain.matching import DEFAULT_WEIGHTS, Weights


class SettingsError(ValueError):
    """One or more environment variables are invalid; the message names each and what it expects."""


RATE_LIMIT_GROUPS: Final = ("register", "auth_failures", "match", "feedback", "heartbeat")
_UNIT_SECONDS: Final = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
DEFAULT_RATE_LIMITS: Final = "register:60/minute,auth_failures:30/minute"


class RateLimit(msgspec.Struct, frozen=True):
    group: str
    count: int
    unit: Literal["second", "minute", "hour", "day"]


def parse_rate_limits(text: str) -> tuple[RateLimit, ...]:
    """`register:60/minute,auth_failures:30/minute`; `off` (or nothing) disables every limit."""
    value = text.strip()
    if value.lower() in {"off", ""}:
        return ()
    limits: dict[str, RateLimit] = {}
    for entry in value.split(","):
        group, _, rate = entry.strip().partition(":")
        count, _, unit = rate.partition("/")
        if group not in RATE_LIMIT_GROUPS:
            raise ValueError(f"unknown group {group!r}; known: {', '.join(RATE_LIMIT_GROUPS)}")
        if unit not in _UNIT_SECONDS or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(
                f"{entry.strip()!r} is not group:N/unit with N >= 1 and unit second|minute|hour|day"
            )
        if group in limits:
            raise ValueError(f"{group} is given twice")
        limits[group] = RateLimit(group, int(count), unit)  # type: ignore[arg-type]
    return tuple(limits.values())


def parse_forwarded_allow_ips(text: str) -> tuple[str, ...]:
    """Addresses or CIDR networks of trusted proxies, comma-separated; `*` trusts every peer."""
    import ipaddress

    entries = tuple(part.strip() for part in text.split(",") if part.strip())
    for entry in entries:
        if entry != "*":
            ipaddress.ip_network(entry, strict=False)
    return entries


# The development values shipped in .env.example; a production start refuses every one of them
# (tests/unit/test_production_config.py keeps this list and the file in step).
EXAMPLE_VALUES: Final = frozenset(
    {
        "dev-only-secret-key-change-me",
        "dev-only-admin-token",
        "dev-only-coordinator-secret",
        "dev-only-coordinator-api-key",
    }
)
MIN_SECRET_LENGTH: Final = 32


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database_url: str = "sqlite+aiosqlite:///./var/poolhub.db"
    bind: str = "127.0.0.1"
    port: int = 8210
    secret_key: str = ""
    admin_token: str = ""
    coordinator_shared_secret: str = ""
    session_ttl_sec: int = 60
    heartbeat_grace_sec: int = 120
    default_weights: Weights = DEFAULT_WEIGHTS
    trust_half_life_hours: float = 168.0
    exploration_share: float = 0.1
    coordinator_billing_url: str = "http://localhost:8011"
    coordinator_api_key: str = ""
    coordinator_ca_bundle: str = ""
    coordinator_connect_timeout_seconds: float = 3.0
    coordinator_timeout_seconds: float = 10.0
    sla_uptime_threshold: float = 95.0
    sla_response_time_threshold: float = 1000.0
    sla_completion_rate_threshold: float = 90.0
    sla_capacity_threshold: float = 80.0
    sla_window_hours: int = 24
    sla_min_samples: int = 10
    capacity_forecast_hours: int = 168
    capacity_alert_threshold_pct: float = 80.0
    billing_sync_interval_hours: float = 1.0
    billing_unit_prices: UnitPrices = UnitPrices.parse(DEFAULT_UNIT_PRICES)
    sla_collection_interval_seconds: float = 300.0
    retention_days: int = 30
    capacity_history_days: int = 90
    writebehind_queue_max: int = 100_000
    log_level: str = "INFO"
    env: Literal["production", "development"] = "production"
    secret_key_previous: str = ""
    rate_limits: tuple[RateLimit, ...] = parse_rate_limits(DEFAULT_RATE_LIMITS)
    forwarded_allow_ips: tuple[str, ...] = ("127.0.0.1",)
    max_directory_tokens: int = 10_000

    def production_problems(self) -> list[str]:
        """Why a production start must be refused: one line per variable, empty when the secrets are fit."""
        if self.env != "production":
            return []
        secrets = {
            "POOLHUB_SECRET_KEY": self.secret_key,
            "POOLHUB_ADMIN_TOKEN": self.admin_token,
            "COORDINATOR_SHARED_SECRET": self.coordinator_shared_secret,
        }
        if self.secret_key_previous:
            secrets["POOLHUB_SECRET_KEY_PREVIOUS"] = self.secret_key_previous
        problems: list[str] = []
        seen: dict[str, str] = {}
        for name, value in secrets.items():
            if value in EXAMPLE_VALUES:
                problems.append(f"{name} is the example value from .env.example")
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(f"{name} is shorter than {MIN_SECRET_LENGTH} characters")
            elif value in seen:
                problems.append(f"{name} equals {seen[value]}: every secret must be different")
            seen.setdefault(value, name)
        if self.coordinator_api_key in EXAMPLE_VALUES:
            problems.append("COORDINATOR_API_KEY is the example value from .env.example")
        return problems

    def rate_limit(self, group: str) -> RateLimit | None:
        return next((limit for limit in self.rate_limits if limit.group == group), None)

    def missing_secrets(self) -> list[str]:
        """Names of the secrets that are empty; the server refuses to start with any of them."""
        pairs = {
            "POOLHUB_SECRET_KEY": self.secret_key,
            "POOLHUB_ADMIN_TOKEN": self.admin_token,
            "COORDINATOR_SHARED_SECRET": self.coordinator_shared_secret,
        }
        return [name for name, value in pairs.items() if not value]


@dataclass(frozen=True, slots=True)
class _Var:
    env: str
    field: str
    parse: Callable[[str], Any]
    expects: str


def _int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text.strip())
        if value < low or (high is not None and value > high):
            raise ValueError
        return value

    return parse


def _float(low: float, high: float | None = None, *, strict_low: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text.strip())
        if not math.isfinite(value) or value < low or (strict_low and value == low):
            raise ValueError
        if high is not None and value > high:
            raise ValueError
        return value

    return parse


def _text(text: str) -> str:
    return text.strip()


def _url(text: str) -> str:
    value = text.strip()
    if "://" not in value:
        raise ValueError
    return value


def _env(text: str) -> str:
    value = text.strip().lower()
    if value not in {"production", "development"}:
        raise ValueError
    return value


def _ca_bundle(text: str) -> str:
    path = text.strip()
    try:
        # Loading it now turns a wrong path or a file without certificates into one start-up error line
        # instead of a failed TLS handshake at the first sync.
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load it: {exc.strerror or exc}") from None
    return path


def _log_level(text: str) -> str:
    value = text.strip().upper()
    if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError
    return value


_VARS = (
    _Var("DATABASE_URL", "database_url", _url, "a SQLAlchemy URL such as postgresql+asyncpg://user@host/db"),
    _Var("POOLHUB_BIND", "bind", _text, "a host address such as 127.0.0.1"),
    _Var("POOLHUB_PORT", "port", _int(1, 65535), "a port number from 1 to 65535"),
    _Var("POOLHUB_SECRET_KEY", "secret_key", _text, "a secret string"),
    _Var("POOLHUB_ADMIN_TOKEN", "admin_token", _text, "a secret string"),
    _Var("COORDINATOR_SHARED_SECRET", "coordinator_shared_secret", _text, "a secret string"),
    _Var("SESSION_TTL_SEC", "session_ttl_sec", _int(1), "a whole number of seconds >= 1"),
    _Var("HEARTBEAT_GRACE_SEC", "heartbeat_grace_sec", _int(1), "a whole number of seconds >= 1"),
    _Var(
        "DEFAULT_WEIGHTS",
        "default_weights",
        Weights.parse,
        "five weights summing to 1, e.g. cap:0.4,price:0.2,latency:0.2,trust:0.15,load:0.05",
    ),
    _Var(
        "TRUST_HALF_LIFE_HOURS", "trust_half_life_hours", _float(0, strict_low=True), "a number of hours > 0"
    ),
    _Var("EXPLORATION_SHARE", "exploration_share", _float(0, 1), "a share from 0 to 1"),
    _Var("COORDINATOR_BILLING_URL", "coordinator_billing_url", _url, "an http(s) URL"),
    _Var("COORDINATOR_API_KEY", "coordinator_api_key", _text, "the coordinator's API key"),
    _Var(
        "COORDINATOR_CA_BUNDLE",
        "coordinator_ca_bundle",
        _ca_bundle,
        "a PEM file of CA certificates to trust for the coordinator's TLS",
    ),
    _Var(
        "COORDINATOR_CONNECT_TIMEOUT_SECONDS",
        "coordinator_connect_timeout_seconds",
        _float(0, 300, strict_low=True),
        "a number of seconds > 0 and <= 300",
    ),
    _Var(
        "COORDINATOR_TIMEOUT_SECONDS",
        "coordinator_timeout_seconds",
        _float(0, 300, strict_low=True),
        "a number of seconds > 0 and <= 300",
    ),
    _Var("SLA_UPTIME_THRESHOLD", "sla_uptime_threshold", _float(0, 100), "a percentage from 0 to 100"),
    _Var("SLA_RESPONSE_TIME_THRESHOLD", "sla_response_time_threshold", _float(0), "milliseconds >= 0"),
    _Var(
        "SLA_COMPLETION_RATE_THRESHOLD", "sla_completion_rate_threshold", _float(0, 100), "a percentage 0-100"
    ),
    _Var("SLA_CAPACITY_THRESHOLD", "sla_capacity_threshold", _float(0, 100), "a percentage from 0 to 100"),
    _Var("SLA_WINDOW_HOURS", "sla_window_hours", _int(1, 720), "a whole number of hours from 1 to 720"),
    _Var("SLA_MIN_SAMPLES", "sla_min_samples", _int(0), "a whole number >= 0"),
    _Var("CAPACITY_FORECAST_HOURS", "capacity_forecast_hours", _int(1, 720), "whole hours from 1 to 720"),
    _Var(
        "CAPACITY_ALERT_THRESHOLD_PCT", "capacity_alert_threshold_pct", _float(0, 100), "a percentage 0-100"
    ),
    _Var(
        "BILLING_SYNC_INTERVAL_HOURS",
        "billing_sync_interval_hours",
        _float(0, strict_low=True),
        "a number of hours > 0",
    ),
    _Var(
        "BILLING_UNIT_PRICES",
        "billing_unit_prices",
        UnitPrices.parse,
        "resource:price pairs, e.g. gpu_hours:0.50,compute_hours:0.30,api_calls:0.0001",
    ),
    _Var(
        "SLA_COLLECTION_INTERVAL_SECONDS",
        "sla_collection_interval_seconds",
        _float(0, strict_low=True),
        "a number of seconds > 0",
    ),
    _Var("RETENTION_DAYS", "retention_days", _int(1, 36500), "a whole number of days from 1 to 36500"),
    _Var(
        "CAPACITY_HISTORY_DAYS",
        "capacity_history_days",
        _int(1, 36500),
        "a whole number of days from 1 to 36500",
    ),
    _Var(
        "WRITEBEHIND_QUEUE_MAX",
        "writebehind_queue_max",
        _int(1),
        "a whole number of queued items >= 1",
    ),
    _Var("LOG_LEVEL", "log_level", _log_level, "one of DEBUG, INFO, WARNING, ERROR"),
    _Var("POOLHUB_ENV", "env", _env, "production or development"),
    _Var(
        "POOLHUB_SECRET_KEY_PREVIOUS", "secret_key_previous", _text, "the secret key before the current one"
    ),
    _Var(
        "RATE_LIMITS",
        "rate_limits",
        parse_rate_limits,
        "off, or group:N/unit pairs such as register:60/minute,auth_failures:30/minute",
    ),
    _Var(
        "FORWARDED_ALLOW_IPS",
        "forwarded_allow_ips",
        parse_forwarded_allow_ips,
        "addresses or CIDR networks of trusted proxies, comma-separated, or *",
    ),
    _Var("MAX_DIRECTORY_TOKENS", "max_directory_tokens", _int(1), "a whole number >= 1"),
)

ENV_NAMES = tuple(var.env for var in _VARS)


def _asyncpg_dsn(text: str) -> str:
    """A plain libpq DSN (what the AITBC env file holds) as the SQLAlchemy URL of the asyncpg driver."""
    value = text.strip()
    for plain in ("postgresql://", "postgres://"):
        if value.startswith(plain):
            return "postgresql+asyncpg://" + value.removeprefix(plain)
    return value


# The names the AITBC network's deployment uses; read only when the canonical name is unset.
ALIASES: tuple[tuple[str, str, Callable[[str], str]], ...] = (
    ("POOLHUB_COORDINATOR_SHARED_SECRET", "COORDINATOR_SHARED_SECRET", str.strip),
    ("POOLHUB_COORDINATOR_BILLING_URL", "COORDINATOR_BILLING_URL", str.strip),
    ("POOLHUB_COORDINATOR_API_KEY", "COORDINATOR_API_KEY", str.strip),
    ("POOLHUB_POSTGRES_DSN", "DATABASE_URL", _asyncpg_dsn),
)


def _apply_aliases(values: dict[str, str]) -> list[str]:
    """Fill each unset canonical name from its alias; a problem per name set both ways to different values."""
    problems: list[str] = []
    for alias, canonical, convert in ALIASES:
        raw = values.get(alias)
        if raw is None or not raw.strip():
            continue
        value = convert(raw)
        current = values.get(canonical)
        if current is None or not current.strip():
            values[canonical] = value
        elif convert(current) != value:
            problems.append(f"{canonical} and its alias {alias} are both set, to different values: keep one")
    return problems


def load_settings(environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")) -> Settings:
    """Read the process environment over `.env` (the environment wins). Raises SettingsError.

    The AITBC names (ALIASES) stand in for unset canonical names; both set and different is an error.
    """
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    parsed: dict[str, Any] = {}
    problems = _apply_aliases(values)
    for var in _VARS:
        raw = values.get(var.env)
        if raw is None or (raw.strip() == "" and var.parse is not _text):
            continue
        try:
            parsed[var.field] = var.parse(raw)
        except (ValueError, ArithmeticError) as exc:
            reason = f" ({exc})" if str(exc) else ""
            problems.append(f"{var.env}={raw!r} is invalid: expected {var.expects}{reason}")
    if problems:
        raise SettingsError("; ".join(problems))
    return Settings(**parsed)
