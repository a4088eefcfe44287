"""Run Alembic migrations programmatically (``okyaku migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from okyaku.db import normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str, app_role: str = "okyaku_app") -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


def upgrade(url: str, revision: str = "heads", app_role: str = "okyaku_app") -> None:
    """Feature migrations branch from the core revision, so "heads" applies them all."""
    command.upgrade(alembic_config(url, app_role), revision)


def downgrade(url: str, revision: str, app_role: str = "okyaku_app") -> None:
    command.downgrade(alembic_config(url, app_role), revision)
