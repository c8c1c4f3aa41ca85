"""RATE_LIMITS, FORWARDED_ALLOW_IPS and the client address the limits count by."""

from __future__ import annotations

import pytest

from poolhub.app.http.ratelimit import ClientAddress
from poolhub.app.settings import RateLimit, SettingsError, load_settings


def test_rate_limit_defaults_and_off() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.rate_limits == (
        RateLimit("register", 60, "minute"),
        RateLimit("auth_failures", 30, "minute"),
    )
    assert settings.forwarded_allow_ips == ("127.0.0.1",)
    assert settings.max_directory_tokens == 10_000
    assert load_settings({"RATE_LIMITS": "off"}, env_file=None).rate_limits == ()


def test_optional_groups_parse() -> None:
    settings = load_settings({"RATE_LIMITS": "match:200/second, heartbeat:50/second"}, env_file=None)
    assert settings.rate_limit("match") == RateLimit("match", 200, "second")
    assert settings.rate_limit("register") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMITS", "register:sixty/minute"),
        ("RATE_LIMITS", "login:5/minute"),
        ("RATE_LIMITS", "register:0/minute"),
        ("RATE_LIMITS", "register:5/fortnight"),
        ("RATE_LIMITS", "register:5/minute,register:6/minute"),
        ("FORWARDED_ALLOW_IPS", "127.0.0.1,proxy.local"),
        ("MAX_DIRECTORY_TOKENS", "0"),
        ("POOLHUB_ENV", "staging"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load_settings({name: value}, env_file=None)
    assert name in str(error.value)
    assert "\n" not in str(error.value)


def _scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"client": (peer, 5000), "headers": headers}


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "expected"),
    [
        (("127.0.0.1",), "203.0.113.1", "198.51.100.9", "203.0.113.1"),  # an untrusted peer is the client
        (("127.0.0.1",), "127.0.0.1", "198.51.100.9", "198.51.100.9"),
        (("127.0.0.1",), "127.0.0.1", None, "127.0.0.1"),
        # The client wrote its own X-Forwarded-For, the proxy appended the real address: last untrusted wins.
        (("127.0.0.1",), "127.0.0.1", "1.2.3.4, 198.51.100.9", "198.51.100.9"),
        (("127.0.0.1", "10.0.0.0/8"), "127.0.0.1", "198.51.100.9, 10.1.2.3", "198.51.100.9"),
        (("*",), "203.0.113.1", "198.51.100.9", "198.51.100.9"),
    ],
)
def test_client_address(trusted: tuple[str, ...], peer: str, forwarded: str | None, expected: str) -> None:
    assert ClientAddress(trusted).of_scope(_scope(peer, forwarded)) == expected  # type: ignore[arg-type]
