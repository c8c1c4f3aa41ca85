"""Secrets never reach the logs."""

from __future__ import annotations

import logging
import sys

import pytest

from poolhub.app.logging import RedactSecrets, _console_renderer, _redact


def test_tokens_in_logged_query_strings_are_redacted() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" [accepted]',
        ("127.0.0.1:5000", "/v1/miners/heartbeat?session_token=abcDEF-123_x&x=1"),
        None,
    )
    RedactSecrets().filter(record)
    assert "abcDEF" not in record.getMessage()
    assert "session_token=[redacted]&x=1" in record.getMessage()


def _uvicorn_record(path: str) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s"', ("127.0.0.1:5000", path), None
    )


@pytest.mark.parametrize(
    "path",
    [
        "/v1/miners/heartbeat?session_toke%6E=abcDEF",
        "/v1/miners/heartbeat?%73ession_token=abcDEF&x=1",
        "/v1/miners/heartbeat?x=1&SESSION_TOKEN=abcDEF",
        "/v1/miners/heartbeat?api%5Fkey=abcDEF",
    ],
)
def test_redaction_runs_on_the_decoded_name(path: str) -> None:
    record = _uvicorn_record(path)
    RedactSecrets().filter(record)
    assert "abcDEF" not in record.getMessage()
    assert "[redacted]" in record.getMessage()


def test_structlog_events_are_redacted_in_nested_headers_and_text() -> None:
    event = _redact(
        None,
        "info",
        {
            "event": "request",
            "headers": {"Authorization": "Bearer abcDEF", "X-Request-Id": "r1"},
            "query": "session_toke%6E=abcDEF",
            "api_key": "abcDEF",
        },
    )
    assert "abcDEF" not in repr(event)
    assert event["headers"]["X-Request-Id"] == "r1"


def test_console_tracebacks_never_show_local_variables(capsys: pytest.CaptureFixture[str]) -> None:
    renderer = _console_renderer()

    def fail(api_key: str) -> None:
        raise RuntimeError("boom")

    secret = "".join(reversed("eulav-yek-ipa-terces"))  # not in the source lines the traceback shows
    try:
        fail(secret)
    except RuntimeError:
        rendered = renderer(None, "error", {"event": "failed", "exc_info": sys.exc_info()})
    assert "boom" in str(rendered)
    assert secret not in str(rendered)
