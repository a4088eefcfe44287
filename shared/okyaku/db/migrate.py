"""Run Alembic migrations programmatically (``okyaku migrate``)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData

from okyaku.db import normalize_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # okyaku/


def model_modules() -> list[str]:
    """Every ``okyaku...models`` module: the rule for where tables are declared, so a new feature
    package's tables are seen by Alembic without editing env.py."""
    return sorted(
        ".".join(("okyaku", *path.relative_to(PACKAGE_DIR).with_suffix("").parts))
        for path in PACKAGE_DIR.rglob("models.py")
    )


# Indexes that live outside the models: one HNSW index per embedding model, built by
# ``okyaku embeddings ensure-index`` (and 0002 for the local model) as models come and go.
UNMODELLED_INDEX_PREFIXES = ("ix_embeddings_hnsw_",)


def include_in_autogenerate(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's ``include_object``: everything but the indexes the models do not declare on purpose."""
    return not (
        type_ == "index" and reflected and compare_to is None and (name or "").startswith(UNMODELLED_INDEX_PREFIXES)
    )


def all_models_metadata() -> MetaData:
    """The metadata of every table, core and feature ones (imported by name: the db layer does
    not depend on the feature packages, it only finds their models)."""
    for name in model_modules():
        importlib.import_module(name)
    from okyaku.db.models import Base

    return Base.metadata


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
