"""The migrations and the models describe the same schema, and the migrations are frozen.

Autogenerate (``compare_metadata``, with env.py's metadata and filter) against the database the
migrations built must find nothing to do: otherwise the next ``alembic revision --autogenerate``
would propose dropping what the models forgot, or the models promise what the database lacks.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Index, UniqueConstraint, create_engine

from okyaku.db import normalize_url
from okyaku.db.migrate import MIGRATIONS_DIR, all_models_metadata, include_in_autogenerate, model_modules
from okyaku.embeddings.indexes import hnsw_index_name, hnsw_index_sql
from okyaku.local.postgres import LocalDatabase

# Differences autogenerate may find between the models and the migrations: none. A new one
# means a model and its migration disagree; fix whichever is wrong.
KNOWN_DRIFT: frozenset[tuple[str, ...]] = frozenset()


def describe(difference: Any) -> tuple[str, ...]:
    """One autogenerate difference as (operation, table, what), readable in a failure."""
    if isinstance(difference, list):  # column changes come as a list of one
        (operation, _schema, table, column, *_rest) = difference[0]
        return (operation, table, column)
    operation, item = difference[0], difference[1]
    if isinstance(item, Index):
        return (operation, item.table.name if item.table is not None else "?", str(item.name))
    if isinstance(item, UniqueConstraint):
        columns = ", ".join(c.name for c in item.columns)
        return (operation, item.table.name, item.name or f"unique({columns})")
    name = getattr(item, "name", None) or repr(item)
    table = getattr(getattr(item, "table", None), "name", "")
    return (operation, table, str(name))


def test_autogenerate_finds_nothing_but_the_known_drift(pg: LocalDatabase) -> None:
    engine = create_engine(normalize_url(pg.owner_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": include_in_autogenerate}
            )
            differences = {describe(d) for d in compare_metadata(context, all_models_metadata())}
    finally:
        engine.dispose()
    new = sorted(differences - KNOWN_DRIFT)
    fixed = sorted(KNOWN_DRIFT - differences)
    assert new == [], f"models and migrations disagree: {new}"
    assert fixed == [], f"fixed, remove from KNOWN_DRIFT: {fixed}"


def test_every_feature_package_with_tables_is_loaded_for_alembic() -> None:
    modules = model_modules()
    assert {"okyaku.db.models", "okyaku.embeddings.models", "okyaku.predictions.models", "okyaku.agents.models"} <= set(
        modules
    )
    tables = set(all_models_metadata().tables)
    assert {"contacts", "embeddings", "predictions", "pending_actions"} <= tables


def load_revision(filename: str) -> Any:
    path = MIGRATIONS_DIR / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"okyaku_revision_{Path(filename).stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_frozen_local_model_index_is_the_one_the_embeddings_code_looks_for() -> None:
    # 0002 inlines the index rather than importing okyaku.embeddings.indexes; if the naming there
    # changes, the running code would build a second index instead of using this one.
    revision = load_revision("0002_embeddings.py")
    assert hnsw_index_name(revision.LOCAL_MODEL, revision.LOCAL_DIMENSION) == revision.LOCAL_HNSW_INDEX
    assert hnsw_index_sql(revision.LOCAL_MODEL, revision.LOCAL_DIMENSION) == revision.LOCAL_HNSW_INDEX_SQL
