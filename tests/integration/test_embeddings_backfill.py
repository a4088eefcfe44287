"""Backfill: everything lacking a current embedding gets one; resumable; orphans go; CLI and schedule."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from okyaku.config import Settings
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.indexes import hnsw_index_name
from okyaku.embeddings.models import Embedding
from okyaku.embeddings.triggers import EmbeddingTriggers
from okyaku.entry import function_handler
from okyaku.runtime import Runtime
from tests.support.hashing_embedder import HashingEmbedder

SCHEDULE_EVENT = Path(__file__).resolve().parents[2] / "events" / "embeddings" / "schedule.json"


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


def job_event(bodies):
    """An SQS event of the jobs queue, one record per body, as Lambda's poller delivers it."""
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1764072000000"},
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:okyaku-embedding-jobs",
                "awsRegion": "us-east-1",
            }
            for body in bodies
        ]
    }


class Remaining:
    """A Lambda context with ``ms`` left."""

    def __init__(self, ms):
        self.ms = ms

    def get_remaining_time_in_millis(self):
        return self.ms


def drain(sqs, queue_url):
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return [m["Body"] for m in messages]


def test_the_scheduled_backfill_fans_out_one_job_per_organization_and_a_job_out_of_time_continues(
    make_tenant, pg, db, sqs
):
    small, big = make_tenant("Small"), make_tenant("Big")
    make_companies(small, 2)
    make_companies(big, 3)
    big.client.post("/api/v1/contacts", json={"first_name": "Ada"})
    queue_url = sqs.create_queue(QueueName=f"embedding-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = Settings(
        database_url=pg.app_url, embedding_jobs_queue_url=queue_url, aws_endpoint_url=sqs.meta.endpoint_url
    )

    class SlowEmbedder(HashingEmbedder):
        """Each call takes longer than the one second a job short of time is given."""

        def embed(self, texts):
            time.sleep(1.2)
            return super().embed(texts)

    triggers = EmbeddingTriggers(Runtime(settings, db=db), SlowEmbedder())
    handler = function_handler(name="embeddings", on_batch=triggers.on_batch, on_schedule=triggers.on_schedule)

    report = handler(json.loads(SCHEDULE_EVENT.read_text()), Remaining(100_000))
    assert report["not_queued"] == [] and report["queued"] == report["organizations"] >= 2
    bodies = {json.loads(b)["organization_id"]: b for b in drain(sqs, queue_url)}
    assert {str(small.id), str(big.id)} <= set(bodies) and len(bodies) == report["queued"]
    assert count(db, small.id) == count(db, big.id) == 0  # the schedule only queued the work

    # One organization per message; a job body that does not parse fails alone (retried, then DLQ).
    broken = json.dumps({"job": "embeddings_backfill", "organization_id": "not-a-uuid"})
    event = job_event([bodies[str(small.id)], broken])
    response = handler(event, Remaining(100_000))
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][1]["messageId"]]
    assert count(db, small.id) == 2 and count(db, big.id) == 0
    assert drain(sqs, queue_url) == []  # done: nothing continues

    # Out of time (0 ms left: one second of work), the job embeds what it can and sends the rest.
    assert handler(job_event([bodies[str(big.id)]]), Remaining(0)) == {"batchItemFailures": []}
    assert count(db, big.id) == 3  # the companies' page; the contact's type was not reached
    (continuation,) = drain(sqs, queue_url)
    assert json.loads(continuation)["organization_id"] == str(big.id)
    assert handler(job_event([continuation]), Remaining(100_000)) == {"batchItemFailures": []}
    assert count(db, big.id) == 4
    assert drain(sqs, queue_url) == []


def test_a_backfill_job_while_the_model_is_down_is_acknowledged_and_not_continued(make_tenant, pg, db, sqs):
    """The model's failure is not the job's: no retry into the DLQ, no continuation looping through
    the outage; the next scheduled fan-out resumes it."""
    from okyaku.embeddings.triggers import BackfillJob
    from okyaku.llm.errors import LLMUnavailable

    tenant = make_tenant("Outage")
    make_companies(tenant, 2)
    queue_url = sqs.create_queue(QueueName=f"embedding-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = Settings(
        database_url=pg.app_url, embedding_jobs_queue_url=queue_url, aws_endpoint_url=sqs.meta.endpoint_url
    )

    class DownEmbedder(HashingEmbedder):
        def embed(self, texts):
            raise LLMUnavailable("the LLM is unavailable: connection refused")

    triggers = EmbeddingTriggers(Runtime(settings, db=db), DownEmbedder())
    handler = function_handler(name="embeddings", on_batch=triggers.on_batch, on_schedule=triggers.on_schedule)
    job = BackfillJob(organization_id=tenant.id).model_dump_json()
    assert handler(job_event([job]), Remaining(100_000)) == {"batchItemFailures": []}
    assert drain(sqs, queue_url) == []
    assert count(db, tenant.id) == 0
