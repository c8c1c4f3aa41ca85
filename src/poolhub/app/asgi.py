"""ASGI entry point for uvicorn workers: build the app from the environment."""

from __future__ import annotations

from litestar import Litestar

from poolhub.app.logging import configure_logging
from poolhub.app.main import create_app
from poolhub.app.settings import load_settings


def create_app_from_env() -> Litestar:
    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
