"""Embeddings: enrichment throughput through the handler vs the embedder alone, and vector search
latency and recall@10 (HNSW vs an exact scan) at 10k and 100k embeddings.

Runs on an embedded Postgres in ``.okyaku/bench-pg-emb`` (the synthetic vectors are kept
there between runs; delete the folder to rebuild). ``python -m bench embeddings``.
Environment: ``BENCH_EMB_RECORDS`` (enrichment records, default 600), ``BENCH_EMB_QUERIES``
(search queries per scenario, default 200), ``BENCH_EMB_PARTS`` (default ``enrichment,search``).

The ANN part uses synthetic 384-dimensional vectors, clustered like real embeddings (200
topics, each point about 0.6 cosine from its topic), not real text: building 100k real
MiniLM embeddings would take ~12 minutes on two cores.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text

from okyaku.config import Settings
from okyaku.db import Database
from okyaku.db.models import Activity, Company, Contact
from okyaku.embeddings.documents import load_documents
from okyaku.embeddings.indexes import ensure_hnsw_index
from okyaku.embeddings.search import SemanticSearch
from okyaku.embeddings.triggers import EmbeddingTriggers
from okyaku.events import ChangeEvent, record_change
from okyaku.events.publishers import sqs_entry
from okyaku.local.postgres import LocalDatabase, prepare_database, start_embedded_postgres
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization

ROOT = Path(__file__).resolve().parents[1]
DATADIR = ROOT / ".okyaku" / "bench-pg-emb"
DIMENSION = 384
TOPICS = 200
NOISE = 0.07  # per coordinate: a point's cosine to its topic centre is about 0.6
SEED = 20261125


# --- enrichment --------------------------------------------------------------------------------


def make_records(db: Database, organization_id: uuid.UUID, count: int) -> list[ChangeEvent]:
    """Companies, contacts and activities with realistic text, each written with its change event."""
    from faker import Faker

    fake = Faker()
    Faker.seed(SEED)
    events: list[ChangeEvent] = []
    now = datetime.now(UTC)
    with db.organization_scope(organization_id) as session:
        companies = []
        for _ in range(max(1, count // 6)):
            company = Company(
                name=fake.company(),
                industry=fake.bs().split()[-1].capitalize(),
                city=fake.city(),
                country=fake.country(),
                description=fake.catch_phrase(),
                custom_properties={},
            )
            session.add(company)
            companies.append(company)
        session.flush()
        contacts = []
        for i in range(max(1, count // 3)):
            contact = Contact(
                first_name=fake.first_name(),
                last_name=fake.last_name(),
                email=fake.email(),
                job_title=fake.job()[:200],
                company_id=companies[i % len(companies)].id,
                custom_properties={},
            )
            session.add(contact)
            contacts.append(contact)
        session.flush()
        activities = []
        for i in range(count - len(companies) - len(contacts)):
            activity = Activity(
                type=("call", "meeting", "email", "note")[i % 4],
                subject=fake.sentence(nb_words=6)[:500],
                body=fake.paragraph(nb_sentences=5),
                contact_id=contacts[i % len(contacts)].id,
                occurred_at=now - timedelta(hours=i),
                custom_properties={},
            )
            session.add(activity)
            activities.append(activity)
        session.flush()
        for entity_type, records in (("company", companies), ("contact", contacts), ("activity", activities)):
            for record in records:
                events.append(
                    record_change(session, entity_type=entity_type, entity_id=record.id, operation="created", version=1)
                )
    return events


def sqs_event(events: Sequence[ChangeEvent]) -> dict[str, Any]:
    records = []
    for i, event in enumerate(events):
        entry = sqs_entry(i, event)
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": entry["MessageBody"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:okyaku-embeddings",
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def bench_enrichment(local: LocalDatabase, owner: Database) -> None:
    from okyaku.embeddings.llm_adapter import LocalModelEmbedder

    count = int(os.environ.get("BENCH_EMB_RECORDS", "600"))
    db = Database(local.app_url)
    org = create_organization(db, f"Embeddings bench {uuid.uuid4().hex[:6]}", "bench@example.com")
    try:
        events = make_records(db, org.organization_id, count)
        embedder = LocalModelEmbedder()
        started = time.perf_counter()
        embedder.embed(["load the model"])
        load_s = time.perf_counter() - started
        with db.organization_scope(org.organization_id) as session:
            documents = {}
            for entity_type in ("company", "contact", "activity"):
                ids = [e.entity_id for e in events if e.entity_type == entity_type]
                documents.update(load_documents(session, entity_type, ids))
        texts = [documents[e.entity_id].content for e in events]  # what the handler will embed, in order
        function = EmbeddingTriggers(Runtime(Settings(database_url=local.app_url), db=db), embedder)
        mean_chars = statistics.mean(len(t) for t in texts)
        print(f"\nenrichment: {len(events)} records (mean text {mean_chars:.0f} chars), model {embedder.model}")
        print(f"model load + first call: {load_s:.2f} s")
        print(
            "each SQS batch is embedded by the model alone, then run through the handler (SQS event → texts "
            "loaded → embedded → rows written → batchItemFailures), alternately, so machine load hits both alike"
        )
        print(f"{'batch':>6}{'embedder texts/s':>18}{'handler records/s':>19}{'ratio':>8}")
        for batch in (10, 100):
            with owner.session() as session:  # start from nothing so every record is embedded
                session.execute(text("DELETE FROM embeddings WHERE organization_id = :o"), {"o": org.organization_id})
            raw_s = handler_s = 0.0
            for i in range(0, len(events), batch):
                raw_s += _timed(lambda i=i, b=batch: embedder.embed(texts[i : i + b]))
                event = sqs_event(events[i : i + batch])
                started = time.perf_counter()
                response = function.consume(event, None)
                handler_s += time.perf_counter() - started
                assert response == {"batchItemFailures": []}, response
            raw_rate, handler_rate = len(texts) / raw_s, len(events) / handler_s
            print(f"{batch:>6}{raw_rate:>18.1f}{handler_rate:>19.1f}{handler_rate / raw_rate:>8.0%}")

        search = SemanticSearch(embedder)
        queries = ["follow up on the proposal", "budget approval next quarter", "technical integration questions"]
        latencies, embedding_ms = [], []
        for _ in range(10):
            for query in queries:
                started = time.perf_counter()
                embedder.embed([query])
                embedding_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                with db.organization_scope(org.organization_id) as session:
                    search.search(session, org.organization_id, query, limit=10)
                latencies.append((time.perf_counter() - started) * 1000)
        print(
            f"hybrid search over these {len(events)} records (exact vector scan + full text + fusion + titles), "
            f"query embedding included: p50 {_pct(latencies, 50):.1f} ms, p95 {_pct(latencies, 95):.1f} ms; "
            f"the query embedding alone: p50 {_pct(embedding_ms, 50):.1f} ms"
        )
    finally:
        db.dispose()
        with owner.session() as session:
            session.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": org.organization_id})


# --- search ------------------------------------------------------------------------------------


class QueryVectors:
    """Stands in for the model at query time: hands out prepared vectors."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.dimension = DIMENSION

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        raise NotImplementedError("the benchmark passes vectors directly")


def clustered(rng: Any, centres: Any, count: int) -> Any:
    import numpy as np

    topics = rng.integers(0, len(centres), size=count)
    points = centres[topics] + rng.normal(0.0, NOISE, size=(count, DIMENSION))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def organization(db: Database, owner: Database, name: str) -> uuid.UUID:
    with owner.session() as session:
        found = session.execute(text("SELECT id FROM organizations WHERE name = :n"), {"n": name}).scalar()
    if found is not None:
        return uuid.UUID(str(found))
    return create_organization(db, name, "bench@example.com").organization_id


def load_vectors(local: LocalDatabase, organization_id: uuid.UUID, model: str, vectors: Any) -> None:
    """Binary COPY as the owner (the benchmark's bulk load, not the app's path)."""
    import psycopg
    from pgvector.psycopg import register_vector

    with psycopg.connect(local.owner_url) as connection:
        register_vector(connection)
        columns = "organization_id, entity_type, entity_id, model, dimension, content_hash, content, embedding"
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY embeddings ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.set_types(["uuid", "varchar", "uuid", "varchar", "int4", "varchar", "text", "vector"])
            for i, vector in enumerate(vectors):
                copy.write_row(
                    (organization_id, "company", uuid.uuid4(), model, DIMENSION, f"{i:064d}", f"Synthetic {i}", vector)
                )


def prepare_search_data(
    local: LocalDatabase, db: Database, owner: Database
) -> tuple[list[tuple[str, str, uuid.UUID, int]], Any]:
    """Scenarios (label, model, organization, its rows) and the topic centres; built once, then reused."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    centres = rng.normal(0.0, 1.0, size=(TOPICS, DIMENSION))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    plan = [
        # label, model, organization name, rows
        ("10k, one org", "bench-10k", "bench-emb-10k", 10_000),
        ("100k, org with 90k", "bench-100k", "bench-emb-90k", 90_000),
        ("100k, org with 10k", "bench-100k", "bench-emb-10k-of-100k", 10_000),
    ]
    scenarios = []
    for label, model, org_name, rows in plan:
        org_id = organization(db, owner, org_name)
        with owner.session() as session:
            have = session.execute(
                text("SELECT count(*) FROM embeddings WHERE organization_id = :o AND model = :m"),
                {"o": org_id, "m": model},
            ).scalar_one()
        if have != rows:
            with owner.session() as session:
                session.execute(text("DELETE FROM embeddings WHERE organization_id = :o"), {"o": org_id})
            started = time.perf_counter()
            load_vectors(local, org_id, model, clustered(rng, centres, rows))
            print(f"loaded {rows} vectors for {label} in {time.perf_counter() - started:.1f} s")
        scenarios.append((label, model, org_id, rows))
    with owner.session() as session:
        session.execute(text("ANALYZE embeddings"))
    for model, size in (("bench-10k", "10k"), ("bench-100k", "100k")):
        started = time.perf_counter()
        if ensure_hnsw_index(owner.engine, model, DIMENSION, maintenance_work_mem="1GB"):
            seconds = time.perf_counter() - started
            print(f"built the HNSW index over {size} vectors in {seconds:.1f} s (m=16, ef_construction=64)")
    return scenarios, centres


def bench_search(local: LocalDatabase, owner: Database) -> None:
    import numpy as np

    db = Database(local.app_url, pool_size=2)
    queries_per_scenario = int(os.environ.get("BENCH_EMB_QUERIES", "200"))
    try:
        scenarios, centres = prepare_search_data(local, db, owner)
        rng = np.random.default_rng(SEED + 1)
        queries = [list(map(float, v)) for v in clustered(rng, centres, queries_per_scenario)]
        print(
            f"\nvector search, k=10, {queries_per_scenario} queries per row; each query is one org-scoped "
            "transaction as in the API (RLS on); recall@10 against the exact scan"
        )
        header = f"{'scenario':<22}{'path':<24}{'p50 ms':>8}{'p95 ms':>8}{'recall@10':>11}"
        print(header)
        for label, model, org_id, _rows in scenarios:
            embedder = QueryVectors(model)
            exact_search = SemanticSearch(embedder)
            truth: list[set[uuid.UUID]] = []

            exact_ms = []
            for query in queries:
                started = time.perf_counter()
                with db.organization_scope(org_id) as session:
                    found, _ = exact_search.vector_candidates(session, org_id, query, k=10, strategy="exact")
                exact_ms.append((time.perf_counter() - started) * 1000)
                truth.append({c.entity_id for c in found})
            print(f"{label:<22}{'exact scan':<24}{_pct(exact_ms, 50):>8.1f}{_pct(exact_ms, 95):>8.1f}{1.0:>11.3f}")
            for min_ef in (40, 100, 200):
                search = SemanticSearch(embedder, min_ef_search=min_ef)
                latencies, recalls, strategies = [], [], set()
                for query, expected in zip(queries, truth, strict=True):
                    started = time.perf_counter()
                    with db.organization_scope(org_id) as session:
                        found, strategy = search.vector_candidates(session, org_id, query, k=10)
                    latencies.append((time.perf_counter() - started) * 1000)
                    recalls.append(len({c.entity_id for c in found} & expected) / 10)
                    strategies.add(strategy)
                path = f"auto: {'/'.join(sorted(strategies))} ef≥{min_ef}"
                print(
                    f"{label:<22}{path:<24}{_pct(latencies, 50):>8.1f}{_pct(latencies, 95):>8.1f}"
                    f"{statistics.mean(recalls):>11.3f}"
                )
    finally:
        db.dispose()


# --- helpers -----------------------------------------------------------------------------------


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _pct(values: Sequence[float], percentile: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(percentile / 100 * (len(ordered) - 1)))]


def main() -> None:
    local = prepare_database(start_embedded_postgres(DATADIR))
    owner = Database(local.owner_url)
    try:
        with owner.session() as session:
            version = session.execute(text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")).scalar()
        print(f"pgvector {version}; {os.cpu_count()} CPUs")
        parts = os.environ.get("BENCH_EMB_PARTS", "enrichment,search").split(",")
        if "enrichment" in parts:
            bench_enrichment(local, owner)
        if "search" in parts:
            bench_search(local, owner)
    finally:
        owner.dispose()
        import pgserver

        server = pgserver.get_server(str(DATADIR))
        server.cleanup_mode = "stop"
        server.cleanup()


if __name__ == "__main__":
    main()
