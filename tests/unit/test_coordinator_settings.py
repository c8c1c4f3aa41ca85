"""Settings of the coordinator's HTTP client: the CA bundle and the two timeouts."""

from __future__ import annotations

from pathlib import Path

import certifi
import pytest

from poolhub.app.settings import SettingsError, load_settings


def test_defaults_verify_against_the_system_store_with_bounded_waits() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.coordinator_ca_bundle == ""
    assert settings.coordinator_connect_timeout_seconds == 3.0
    assert settings.coordinator_timeout_seconds == 10.0


def test_a_pem_ca_bundle_and_timeouts_are_read() -> None:
    settings = load_settings(
        {
            "COORDINATOR_CA_BUNDLE": certifi.where(),
            "COORDINATOR_CONNECT_TIMEOUT_SECONDS": "1.5",
            "COORDINATOR_TIMEOUT_SECONDS": "30",
        },
        env_file=None,
    )
    assert settings.coordinator_ca_bundle == certifi.where()
    assert (settings.coordinator_connect_timeout_seconds, settings.coordinator_timeout_seconds) == (1.5, 30.0)


def test_an_empty_ca_bundle_means_the_system_store() -> None:
    assert load_settings({"COORDINATOR_CA_BUNDLE": ""}, env_file=None).coordinator_ca_bundle == ""


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing file", "not PEM"])
def test_a_ca_bundle_that_cannot_be_loaded_is_one_line_naming_it(tmp_path: Path, content: str | None) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_text(content)
    with pytest.raises(SettingsError) as error:
        load_settings({"COORDINATOR_CA_BUNDLE": str(bundle)}, env_file=None)
    message = str(error.value)
    assert "COORDINATOR_CA_BUNDLE" in message
    assert "cannot load it" in message
    assert "\n" not in message


@pytest.mark.parametrize("name", ["COORDINATOR_CONNECT_TIMEOUT_SECONDS", "COORDINATOR_TIMEOUT_SECONDS"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "301", "soon"])
def test_a_timeout_must_be_positive_and_bounded(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings({name: value}, env_file=None)
