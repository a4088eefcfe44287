"""The deployed handler (functions/embeddings/app.py) as Lambda and the local runner call it:
a plain event dict and a context of None, with the default embedder selection."""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from okyaku.embeddings.models import Embedding
from tests.conftest import free_port
from tests.integration.test_embeddings_backfill import job_event
from tests.integration.test_embeddings_pipeline import sqs_event

APP = Path(__file__).resolve().parents[2] / "functions" / "embeddings" / "app.py"


@pytest.fixture
def jobs_queue(sqs, monkeypatch):
    url = sqs.create_queue(QueueName=f"embedding-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    monkeypatch.setenv("EMBEDDING_JOBS_QUEUE_URL", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", sqs.meta.endpoint_url)
    return url


@pytest.fixture
def handler_module(pg, monkeypatch):
    """Import the handler module fresh, configured by environment variables as in Lambda."""
    from okyaku.config import get_settings

    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    # Nothing listens there: the embedder selection falls back to the in-process model.
    monkeypatch.setenv("OLLAMA_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    monkeypatch.setenv("OLLAMA_EMBEDDING_MODEL", "nomic-embed-text")
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    get_settings.cache_clear()
    spec = importlib.util.spec_from_file_location("embeddings_function_app", APP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.runtime.db.dispose()
    get_settings.cache_clear()


def http_event(path, query, api_key):
    return {
        "version": "2.0",
        "routeKey": f"GET {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {"authorization": f"Bearer {api_key}", "host": "api.okyaku.example"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "okyaku",
            "domainName": "api.okyaku.example",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "pytest",
            },
            "requestId": "req-1",
            "routeKey": f"GET {path}",
            "stage": "$default",
            "time": "25/Nov/2026:15:00:00 +0000",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": False,
    }


def test_one_handler_serves_queue_schedule_and_http(jobs_queue, sqs, handler_module, tenant, publisher, db):
    # jobs_queue first: its settings must be in place before the handler module is imported.
    tenant.client.post("/api/v1/companies", json={"name": "Aurora Telescopes", "industry": "Optics"})
    contact = tenant.client.post("/api/v1/contacts", json={"first_name": "Vera", "job_title": "Astronomer"}).json()

    response = handler_module.handler(sqs_event(publisher.events), None)
    assert response == {"batchItemFailures": []}
    with db.organization_scope(tenant.id) as session:
        models = set(session.scalars(select(Embedding.model)))
        assert session.scalar(select(func.count()).select_from(Embedding)) == 2
    assert models == {"local:all-minilm-l6-v2"}  # Ollama was unreachable: the local model, consistently

    # A record whose event was lost is picked up by the scheduled backfill: the schedule queues
    # one job per organization (the template's jobs queue), the tenant's job embeds it.
    with db.organization_scope(tenant.id) as session:
        session.execute(Embedding.__table__.delete().where(Embedding.entity_id == contact["id"]))
    queued = handler_module.handler({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}, None)
    assert queued["not_queued"] == [] and queued["queued"] == queued["organizations"]
    jobs = []
    while batch := sqs.receive_message(QueueUrl=jobs_queue, MaxNumberOfMessages=10).get("Messages", []):
        jobs += [m["Body"] for m in batch if json.loads(m["Body"])["organization_id"] == str(tenant.id)]
    (job,) = jobs
    assert handler_module.handler(job_event([job]), None) == {"batchItemFailures": []}
    with db.organization_scope(tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 2

    result = handler_module.handler(
        http_event("/api/v1/ai/search", "q=telescope%20optics&limit=3", tenant.org.api_key), None
    )
    assert result["statusCode"] == 200, result
    body = json.loads(result["body"])
    assert body["model"] == "local:all-minilm-l6-v2"
    assert body["results"][0]["title"] == "Aurora Telescopes"
    assert body["strategy"] == "exact"  # two rows: an exact scan is cheaper than the index


def test_ollama_serves_embeddings_when_it_answers_and_its_failures_are_left_for_the_backfill_not_mixed(
    openai_server, tenant, publisher, db
):
    """The embedder is chosen once: Ollama's model when it answers. If it fails later, the records
    are left for the backfill (the message acknowledged: an outage would otherwise fill the DLQ)
    rather than silently stored with another model's vectors."""
    from okyaku.embeddings.consumer import handle_sqs_event
    from okyaku.embeddings.indexer import EmbeddingIndexer
    from okyaku.embeddings.llm_adapter import GatewayEmbedder, select_embedder
    from tests.support.fixtures import llm_settings_for
    from tests.support.openai_server import Reply

    settings = llm_settings_for(
        openai_server.base_url,
        ollama_embedding_model="nomic-embed-text",
        llm_breaker_reset_s=0.0,  # once Ollama is back, the next call goes through (no waiting out the breaker)
    )
    embedder = select_embedder(settings)
    assert isinstance(embedder, GatewayEmbedder)
    assert (embedder.model, embedder.dimension) == ("nomic-embed-text", 768)

    tenant.client.post("/api/v1/companies", json={"name": "Borealis Cartography"})
    indexer = EmbeddingIndexer(db, embedder)
    assert handle_sqs_event(sqs_event(publisher.events), None, indexer) == {"batchItemFailures": []}
    with db.organization_scope(tenant.id) as session:
        (row,) = session.scalars(select(Embedding))
    assert (row.model, row.dimension) == ("nomic-embed-text", 768)
    assert abs(sum(v * v for v in row.embedding) - 1.0) < 1e-4  # normalised by the gateway

    publisher.events.clear()
    tenant.client.post("/api/v1/companies", json={"name": "Polaris Surveying"})
    openai_server.fault = Reply.error(500)  # Ollama breaks down
    event = sqs_event(publisher.events)
    assert handle_sqs_event(event, None, indexer) == {"batchItemFailures": []}
    with db.organization_scope(tenant.id) as session:
        assert set(session.scalars(select(Embedding.model))) == {"nomic-embed-text"}
        assert session.scalar(select(func.count()).select_from(Embedding)) == 1  # Polaris waits
    stopped = indexer.backfill(organization_ids=[tenant.id])  # still down: it stops and says why
    assert (stopped.complete, stopped.embedded, stopped.embedder_error is not None) == (False, 0, True)

    openai_server.fault = None  # back: the backfill embeds what was left, with the same model
    assert indexer.backfill(organization_ids=[tenant.id]).embedded == 1
    with db.organization_scope(tenant.id) as session:
        assert set(session.scalars(select(Embedding.model))) == {"nomic-embed-text"}
        assert session.scalar(select(func.count()).select_from(Embedding)) == 2
