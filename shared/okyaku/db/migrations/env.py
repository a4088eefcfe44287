"""Alembic environment: online migrations only, run as the table owner.

``target_metadata`` holds every model module's tables (``okyaku.db.migrate.model_modules``), so
autogenerate compares the whole schema and never proposes dropping a feature's tables.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool

from okyaku.db.migrate import all_models_metadata, include_in_autogenerate

config = context.config
target_metadata = all_models_metadata()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set"
    engine = create_engine(url, poolclass=pool.NullPool)
    options: dict[str, Any] = {"compare_type": True, "include_object": include_in_autogenerate}
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, **options)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
