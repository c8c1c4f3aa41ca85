"""Alembic environment: async engine, batch mode (SQLite), URL from the attributes or the settings."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from advanced_alchemy.base import orm_registry
from alembic import context
from dotenv import dotenv_values
from sqlalchemy.engine import Connection

import poolhub.adapters.db.models  # noqa: F401  (registers the tables)
from poolhub.adapters.db import sla_models  # noqa: F401  (registers the SLA and capacity tables)
from poolhub.adapters.db.engine import DEFAULT_DATABASE_URL, make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = orm_registry.metadata


def _url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return str(url)
    # Run by the alembic CLI: the same sources as the app (environment over .env, then the default).
    return os.environ.get("DATABASE_URL") or dotenv_values(".env").get("DATABASE_URL") or DEFAULT_DATABASE_URL


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(_run_async())
