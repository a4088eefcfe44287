"""``okyaku embeddings backfill`` and ``okyaku embeddings ensure-index``."""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from okyaku.config import get_settings
from okyaku.errors import BadRequest


def register(subparsers: Any) -> None:
    embeddings = subparsers.add_parser("embeddings", help="embeddings for semantic search")
    sub = embeddings.add_subparsers(dest="embeddings_command", required=True)

    backfill = sub.add_parser(
        "backfill",
        help="embed every record that lacks a current embedding (resumable: run it again to continue)",
    )
    backfill.add_argument("--organization", action="append", type=uuid.UUID, help="only this organization (repeat)")
    backfill.add_argument("--types", default="company,contact,deal,activity", help="comma-separated entity types")
    backfill.add_argument("--batch-size", type=int, default=32, help="texts per model call")
    backfill.add_argument("--page-size", type=int, default=256, help="records read and committed per page")
    backfill.add_argument("--max-seconds", type=float, default=None, help="stop after this long (resume later)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bar")
    backfill.set_defaults(func=run_backfill)

    ensure = sub.add_parser(
        "ensure-index",
        help="create a model's HNSW index without blocking writes (as DATABASE_MIGRATION_URL)",
    )
    ensure.add_argument("--model", help="embedding model name (default: the model in use)")
    ensure.add_argument("--dimension", type=int, help="its dimension (default: the model's)")
    ensure.add_argument("--maintenance-work-mem", default="256MB")
    ensure.set_defaults(func=run_ensure_index)


def run_backfill(args: argparse.Namespace) -> int:
    from okyaku.db import Database
    from okyaku.embeddings.documents import count_records
    from okyaku.embeddings.indexer import EmbeddingIndexer
    from okyaku.embeddings.models import EMBEDDABLE_TYPES
    from okyaku.embeddings.triggers import default_embedder
    from okyaku.runtime import Runtime
    from okyaku.tenancy import list_organization_ids

    settings = get_settings()
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in types if t not in EMBEDDABLE_TYPES]
    if unknown:
        raise BadRequest(f"unknown entity types: {', '.join(unknown)}")
    db = Database(settings.database_url)
    embedder = default_embedder(Runtime(settings, db=db))
    indexer = EmbeddingIndexer(db, embedder, batch_size=args.batch_size)
    organizations = args.organization or list_organization_ids(db)
    total = 0
    for organization_id in organizations:
        with db.organization_scope(organization_id) as session:
            total += sum(count_records(session, t) for t in types)
    print(f"model {embedder.model} ({embedder.dimension}d): {total} records, {len(organizations)} organizations")

    from tqdm import tqdm

    deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    with tqdm(total=total, unit="rec", disable=args.no_progress, dynamic_ncols=True) as bar:
        embedded = 0

        def progress(scanned: int, newly_embedded: int) -> None:
            nonlocal embedded
            embedded += newly_embedded
            bar.update(scanned)
            bar.set_postfix(embedded=embedded, refresh=False)

        report = indexer.backfill(
            organization_ids=organizations,
            entity_types=types,
            page_size=args.page_size,
            deadline=deadline,
            on_progress=progress,
        )
    resume = "" if report.complete else " — stopped early; run again to resume"
    print(
        f"scanned {report.scanned}, embedded {report.embedded}, already current {report.unchanged}, "
        f"orphans removed {report.orphans_deleted}{resume}"
    )
    db.dispose()
    return 0


def run_ensure_index(args: argparse.Namespace) -> int:
    from sqlalchemy import create_engine

    from okyaku.db import normalize_url
    from okyaku.embeddings.indexes import ensure_hnsw_index, hnsw_index_name

    settings = get_settings()
    if not settings.migration_url:
        raise BadRequest("set DATABASE_MIGRATION_URL (the table owner's URL): the app role cannot create indexes")
    model, dimension = args.model, args.dimension
    if model is None or dimension is None:
        from okyaku.embeddings.triggers import default_embedder
        from okyaku.runtime import Runtime

        embedder = default_embedder(Runtime(settings))
        model, dimension = model or embedder.model, dimension or embedder.dimension
    engine = create_engine(normalize_url(settings.migration_url))
    try:
        started = time.perf_counter()
        created = ensure_hnsw_index(engine, model, dimension, maintenance_work_mem=args.maintenance_work_mem)
    finally:
        engine.dispose()
    name = hnsw_index_name(model, dimension)
    if created:
        print(f"created {name} for {model} ({dimension}) in {time.perf_counter() - started:.1f} s")
    else:
        print(f"{name} for {model} ({dimension}) already exists")
    return 0
