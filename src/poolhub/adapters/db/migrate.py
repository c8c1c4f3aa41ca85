"""Run the alembic migrations programmatically (the CLI's `migrate` and the test fixtures)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from poolhub.adapters.db.engine import ensure_sqlite_directory

PROJECT_ROOT = Path(__file__).resolve().parents[4]


def alembic_config(database_url: str) -> Config:
    ini = Path.cwd() / "alembic.ini"
    if not ini.is_file():
        ini = PROJECT_ROOT / "alembic.ini"
    config = Config(str(ini))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: alembic's env runs its own event loop, so call this from a thread inside async code."""
    ensure_sqlite_directory(database_url)
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
