"""Secrets never reach the logs."""

from __future__ import annotations

import logging

from poolhub.app.logging import RedactSecrets


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
