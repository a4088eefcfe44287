"""Backfill: everything lacking a current embedding gets one; resumable; orphans go; CLI and schedule."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.indexes import hnsw_index_name
from okyaku.embeddings.models import Embedding
from okyaku.embeddings.triggers import EmbeddingTriggers
from tests.support.hashing_embedder import HashingEmbedder


def count(db, org_id, **where):
    with db.organization_scope(org_id) as session:
        return session.scalar(select(func.count()).select_from(Embedding).filter_by(**where))


def make_companies(tenant, n, prefix="Backfill Co"):
    return [tenant.client.post("/api/v1/companies", json={"name": f"{prefix} {i}"}).json() for i in range(n)]


def test_backfill_embeds_what_is_missing_or_stale_and_nothing_else(make_tenant, db):
    first, second = make_tenant("First"), make_tenant("Second")
    make_companies(first, 5)
    companies = make_companies(second, 3)
    second.client.post("/api/v1/contacts", json={"first_name": "Ada", "company_id": companies[0]["id"]})
    embedder = HashingEmbedder()
    indexer = EmbeddingIndexer(db, embedder, batch_size=4)

    report = indexer.backfill(organization_ids=[first.id, second.id], page_size=2)
    assert (report.scanned, report.embedded, report.complete) == (9, 9, True)
    assert count(db, first.id) == 5 and count(db, second.id) == 4

    again = indexer.backfill(organization_ids=[first.id, second.id], page_size=2)
    assert (again.scanned, again.embedded, again.unchanged) == (9, 0, 9)

    # A change whose event was lost: the text differs from the stored one, so it is redone.
    second.client.patch(f"/api/v1/companies/{companies[1]['id']}", json={"name": "Renamed Co"})
    texts_before = embedder.texts_embedded
    third = indexer.backfill(organization_ids=[second.id])
    assert third.embedded == 1 and embedder.texts_embedded == texts_before + 1
    with db.organization_scope(second.id) as session:
        contents = set(session.scalars(select(Embedding.content).where(Embedding.entity_type == "company")))
    assert any("Renamed Co" in c for c in contents)


def test_an_interrupted_backfill_resumes_where_it_stopped(tenant, db):
    make_companies(tenant, 10)

    class DiesAfterSix(HashingEmbedder):
        def embed(self, texts):
            if self.texts_embedded >= 6:
                raise KeyboardInterrupt  # the operator pressed Ctrl-C
            return super().embed(texts)

    with pytest.raises(KeyboardInterrupt):
        EmbeddingIndexer(db, DiesAfterSix(), batch_size=3).backfill(organization_ids=[tenant.id], page_size=3)
    assert count(db, tenant.id) == 6  # committed page by page

    resumed = HashingEmbedder()
    report = EmbeddingIndexer(db, resumed).backfill(organization_ids=[tenant.id])
    assert report.embedded == 4 and resumed.texts_embedded == 4
    assert count(db, tenant.id) == 10


def test_a_deadline_stops_the_backfill_cleanly(tenant, db):
    make_companies(tenant, 4)
    report = EmbeddingIndexer(db, HashingEmbedder()).backfill(organization_ids=[tenant.id], deadline=0.0)
    assert report.complete is False and report.embedded == 0


def test_backfill_removes_embeddings_of_records_that_are_gone(tenant, db):
    companies = make_companies(tenant, 2)
    indexer = EmbeddingIndexer(db, HashingEmbedder())
    indexer.backfill(organization_ids=[tenant.id])
    tenant.client.delete(f"/api/v1/companies/{companies[0]['id']}")  # its deletion event never processed
    report = indexer.backfill(organization_ids=[tenant.id])
    assert report.orphans_deleted == 1
    assert count(db, tenant.id) == 1


def test_the_scheduled_rule_runs_a_backfill(tenant, runtime, db):
    make_companies(tenant, 3)
    function = EmbeddingTriggers(runtime, HashingEmbedder())
    scheduled = {
        "version": "0",
        "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-25T15:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/okyaku-embeddings-backfill"],
        "detail": {},
    }

    class Context:
        def get_remaining_time_in_millis(self):
            return 300_000

    report = function.on_schedule(scheduled, Context())
    assert report["complete"] is True and report["embedded"] >= 3
    assert count(db, tenant.id) == 3


def test_cli_backfill_and_ensure_index(tenant, pg, owner_db, monkeypatch, capsys):
    from okyaku.cli import main
    from okyaku.config import get_settings

    make_companies(tenant, 3, prefix="CLI Co")
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("DATABASE_MIGRATION_URL", pg.owner_url)
    monkeypatch.setenv("OLLAMA_EMBEDDING_MODEL", "local:all-minilm-l6-v2")
    get_settings.cache_clear()
    try:
        assert main(["embeddings", "backfill", "--organization", str(tenant.id), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "model local:all-minilm-l6-v2 (384d): 3 records, 1 organizations" in out
        assert "scanned 3, embedded 3, already current 0" in out
        assert main(["embeddings", "backfill", "--organization", str(tenant.id), "--no-progress"]) == 0
        assert "embedded 0, already current 3" in capsys.readouterr().out

        assert main(["embeddings", "ensure-index", "--model", "nomic-embed-text", "--dimension", "768"]) == 0
        assert "created ix_embeddings_hnsw_nomic_embed_text_768" in capsys.readouterr().out
        assert main(["embeddings", "ensure-index", "--model", "nomic-embed-text", "--dimension", "768"]) == 0
        assert "already exists" in capsys.readouterr().out
        with owner_db.session() as session:
            definition = session.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
                {"name": hnsw_index_name("nomic-embed-text", 768)},
            ).scalar()
        assert "hnsw" in definition and "vector(768)" in definition and "'nomic-embed-text'" in definition
        assert main(["embeddings", "ensure-index", "--model", "bad'; DROP TABLE x; --", "--dimension", "8"]) == 2
    finally:
        get_settings.cache_clear()
