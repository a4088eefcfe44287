"""HNSW indexes per embedding model, and what the server's pgvector can do.

Each model gets a partial expression index, ``((embedding::vector(D)) vector_cosine_ops)
WHERE model = 'M'``, so models of different dimension share one table and a new model can be
indexed and backfilled while the old one keeps serving. Queries must repeat the same cast
and the model as a literal for the planner to pick the index.
"""

from __future__ import annotations

import hashlib
import re

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from okyaku.errors import ValidationFailed, field_error

MAX_HNSW_DIMENSION = 2000  # pgvector's limit for an indexed ``vector``
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,199}$")


def checked_model(model: str) -> str:
    """Model names end up as SQL literals (see the module docstring), so only plain names pass."""
    if not _MODEL_NAME.fullmatch(model):
        raise ValidationFailed(
            "invalid embedding model name",
            details=[field_error("model", "letters, digits and . _ : / @ + - only", "value_error")],
        )
    return model


def checked_dimension(dimension: int) -> int:
    if not 1 <= dimension <= MAX_HNSW_DIMENSION:
        raise ValidationFailed(
            "invalid embedding dimension",
            details=[field_error("dimension", f"must be between 1 and {MAX_HNSW_DIMENSION}", "value_error")],
        )
    return dimension


def model_literal(model: str) -> str:
    return "'" + checked_model(model) + "'"


def vector_cast(dimension: int) -> str:
    return f"vector({checked_dimension(dimension)})"


def hnsw_index_name(model: str, dimension: int) -> str:
    """Readable, unique per (model, dimension), within Postgres' 63-character limit."""
    slug = re.sub(r"[^a-z0-9]+", "_", checked_model(model).lower()).strip("_")[:28]
    digest = hashlib.sha1(f"{model}/{dimension}".encode()).hexdigest()[:8]
    return f"ix_embeddings_hnsw_{slug}_{checked_dimension(dimension)}_{digest}"


def hnsw_index_sql(model: str, dimension: int, *, concurrently: bool = False) -> str:
    return (
        f"CREATE INDEX {'CONCURRENTLY ' if concurrently else ''}IF NOT EXISTS {hnsw_index_name(model, dimension)} "
        f"ON embeddings USING hnsw ((embedding::{vector_cast(dimension)}) vector_cosine_ops) "
        f"WHERE model = {model_literal(model)}"
    )


def ensure_hnsw_index(engine: Engine, model: str, dimension: int, *, maintenance_work_mem: str = "256MB") -> bool:
    """Create the model's index without blocking writes; returns True if it had to be built.

    Needs the table owner (``DATABASE_MIGRATION_URL``): the app role cannot create indexes.
    An invalid index left by an interrupted concurrent build is dropped and rebuilt.
    """
    name = hnsw_index_name(model, dimension)
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        valid = _index_validity(connection, name)
        if valid is True:
            return False
        if valid is False:
            connection.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
        if not re.fullmatch(r"\d+(kB|MB|GB)", maintenance_work_mem):
            raise ValueError("maintenance_work_mem must look like 256MB")
        connection.execute(text(f"SET maintenance_work_mem = '{maintenance_work_mem}'"))
        connection.execute(text("SET statement_timeout = 0"))  # a large index takes minutes to build
        connection.execute(text(hnsw_index_sql(model, dimension, concurrently=True)))
    return True


def _index_validity(connection: Connection, name: str) -> bool | None:
    row = connection.execute(
        text("SELECT i.indisvalid FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = :name"),
        {"name": name},
    ).first()
    return None if row is None else bool(row[0])


def pgvector_version(session: Session) -> tuple[int, ...]:
    """The installed extension's version, e.g. (0, 6, 2)."""
    version = session.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
    if not version:
        return (0,)
    return tuple(int(part) for part in re.findall(r"\d+", str(version)))


def has_iterative_scan(version: tuple[int, ...]) -> bool:
    """``hnsw.iterative_scan`` arrived in pgvector 0.8.0."""
    return version >= (0, 8)
