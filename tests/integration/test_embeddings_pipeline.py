"""Change events → embeddings, through the SQS event shape Lambda delivers."""

from __future__ import annotations

import hashlib
import json
import uuid

import pytest
from sqlalchemy import select

from okyaku.embeddings.consumer import handle_sqs_event
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.models import Embedding
from okyaku.events.publishers import sqs_entry
from tests.support.hashing_embedder import HashingEmbedder

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:okyaku-embeddings"


def sqs_event(events, *, bodies=None):
    """The event Lambda's SQS poller hands the function: one record per message sent by SqsPublisher."""
    records = []
    entries = [sqs_entry(i, e) for i, e in enumerate(events)]
    for entry in entries:
        body = entry["MessageBody"]
        records.append(
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": uuid.uuid4().hex,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1764072000000",
                    "SenderId": "AIDAEXAMPLE",
                    "ApproximateFirstReceiveTimestamp": "1764072000001",
                },
                "messageAttributes": {
                    name: {
                        "stringValue": value["StringValue"],
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in entry["MessageAttributes"].items()
                },
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1",
            }
        )
    for body in bodies or []:
        records.append({**records[0], "messageId": str(uuid.uuid4()), "body": body})
    return {"Records": records}


class CountingEmbedder(HashingEmbedder):
    """Fails on texts that contain ``poison``, to show one bad text fails alone."""

    def __init__(self, poison: str | None = None) -> None:
        super().__init__()
        self.poison = poison

    def embed(self, texts):
        if self.poison and any(self.poison in t for t in texts):
            self.calls += 1
            raise RuntimeError("the model cannot embed this text")
        return super().embed(texts)


@pytest.fixture
def embedder():
    return CountingEmbedder()


@pytest.fixture
def indexer(db, embedder):
    return EmbeddingIndexer(db, embedder, batch_size=8)


def rows(db, org_id, **where):
    with db.organization_scope(org_id) as session:
        statement = select(Embedding).filter_by(**where).order_by(Embedding.entity_type, Embedding.entity_id)
        return list(session.scalars(statement))


def seed_records(client, pipeline):
    company = client.post(
        "/api/v1/companies",
        json={"name": "Northwind Traders", "industry": "Logistics", "city": "Lyon", "country": "France"},
    ).json()
    contact = client.post(
        "/api/v1/contacts",
        json={
            "first_name": "Inès",
            "last_name": "Moreau",
            "email": "ines@northwind.example",
            "job_title": "Head of Procurement",
            "company_id": company["id"],
            "phone": "+33 1 23 45 67 89",
        },
    ).json()
    stage = pipeline["stages"][2]
    deal = client.post(
        "/api/v1/deals",
        json={
            "name": "Fleet telematics rollout",
            "pipeline_id": pipeline["id"],
            "stage_id": stage["id"],
            "company_id": company["id"],
            "amount": "84000",
        },
    ).json()
    activity = client.post(
        "/api/v1/activities",
        json={
            "type": "call",
            "subject": "Pricing objections",
            "body": "Inès worried about the per-vehicle price; asked for a volume discount before Q3.",
            "contact_id": contact["id"],
            "deal_id": deal["id"],
        },
    ).json()
    return company, contact, deal, activity


def test_each_write_becomes_an_embedding_row_with_the_text_that_describes_it(
    tenant, pipeline, publisher, db, indexer, embedder
):
    company, contact, deal, activity = seed_records(tenant.client, pipeline)
    response = handle_sqs_event(sqs_event(publisher.events), None, indexer)
    assert response == {"batchItemFailures": []}

    stored = {(r.entity_type, str(r.entity_id)): r for r in rows(db, tenant.id)}
    assert set(stored) == {
        ("company", company["id"]),
        ("contact", contact["id"]),
        ("deal", deal["id"]),
        ("activity", activity["id"]),
    }
    for row in stored.values():
        assert row.model == embedder.model and row.dimension == embedder.dimension
        assert len(row.embedding) == embedder.dimension
        assert row.content_hash == hashlib.sha256(row.content.encode()).hexdigest()
        assert row.organization_id == tenant.id
        for record in (company, contact, deal, activity):
            assert record["id"] not in row.content  # texts carry fields, never ids
    deal_text = stored[("deal", deal["id"])].content
    assert "Fleet telematics rollout" in deal_text
    assert "Northwind Traders" in deal_text  # its company
    assert "Negotiation" in deal_text  # its stage
    assert "volume discount" in stored[("activity", activity["id"])].content  # an activity's body
    contact_text = stored[("contact", contact["id"])].content
    assert "Head of Procurement at Northwind Traders" in contact_text
    assert "+33" not in contact_text  # a phone number is not something to search by meaning


def test_same_event_twice_and_same_text_twice_embed_nothing_new(tenant, pipeline, publisher, db, indexer, embedder):
    seed_records(tenant.client, pipeline)
    event = sqs_event(publisher.events)
    handle_sqs_event(event, None, indexer)
    before = {(r.entity_id, r.content_hash, r.updated_at) for r in rows(db, tenant.id)}
    texts_before = embedder.texts_embedded

    assert handle_sqs_event(event, None, indexer) == {"batchItemFailures": []}  # a duplicate delivery
    assert embedder.texts_embedded == texts_before
    assert {(r.entity_id, r.content_hash, r.updated_at) for r in rows(db, tenant.id)} == before

    # A change to a field the text does not use: a new event, the same text, no new embedding.
    contact = rows(db, tenant.id, entity_type="contact")[0]
    publisher.events.clear()
    response = tenant.client.patch(f"/api/v1/contacts/{contact.entity_id}", json={"phone": "+33 9 99 99 99 99"})
    assert response.status_code == 200
    assert len(publisher.events) == 1
    handle_sqs_event(sqs_event(publisher.events), None, indexer)
    assert embedder.texts_embedded == texts_before
    assert {(r.entity_id, r.content_hash, r.updated_at) for r in rows(db, tenant.id)} == before


def test_changed_text_is_embedded_again_and_a_deleted_record_loses_its_embedding(
    tenant, pipeline, publisher, db, indexer, embedder
):
    _company, _contact, deal, activity = seed_records(tenant.client, pipeline)
    handle_sqs_event(sqs_event(publisher.events), None, indexer)
    old = rows(db, tenant.id, entity_type="deal")[0]

    publisher.events.clear()
    tenant.client.patch(f"/api/v1/deals/{deal['id']}", json={"name": "Fleet telematics expansion"})
    tenant.client.delete(f"/api/v1/activities/{activity['id']}")
    handle_sqs_event(sqs_event(publisher.events), None, indexer)

    new = rows(db, tenant.id, entity_type="deal")[0]
    assert new.content_hash != old.content_hash and "expansion" in new.content
    assert new.source_version == old.source_version + 1
    assert rows(db, tenant.id, entity_type="activity") == []


def test_renaming_a_company_refreshes_the_texts_that_mention_it(tenant, pipeline, publisher, db, indexer):
    company, *_ = seed_records(tenant.client, pipeline)
    handle_sqs_event(sqs_event(publisher.events), None, indexer)
    publisher.events.clear()
    tenant.client.patch(f"/api/v1/companies/{company['id']}", json={"name": "Northwind Logistics"})
    assert [e.entity_type for e in publisher.events] == ["company"]  # one event for the company alone
    handle_sqs_event(sqs_event(publisher.events), None, indexer)
    for entity_type in ("company", "contact", "deal"):
        (row,) = rows(db, tenant.id, entity_type=entity_type)
        assert "Northwind Logistics" in row.content and "Northwind Traders" not in row.content


def test_one_bad_record_among_ten_fails_alone(tenant, publisher, db, indexer):
    for i in range(9):
        tenant.client.post("/api/v1/companies", json={"name": f"Supplier {i}", "industry": "Manufacturing"})
    event = sqs_event(publisher.events, bodies=['{"not": "a change event"'])
    assert len(event["Records"]) == 10
    bad_id = event["Records"][-1]["messageId"]

    response = handle_sqs_event(event, None, indexer)

    assert response == {"batchItemFailures": [{"itemIdentifier": bad_id}]}
    assert len(rows(db, tenant.id, entity_type="company")) == 9


def test_a_text_the_model_rejects_fails_only_its_own_message(tenant, publisher, db):
    embedder = CountingEmbedder(poison="Cursed")
    indexer = EmbeddingIndexer(db, embedder, batch_size=10)  # all ten texts in one model call
    for i in range(10):
        name = "Cursed Holdings" if i == 4 else f"Retailer {i}"
        tenant.client.post("/api/v1/companies", json={"name": name})
    event = sqs_event(publisher.events)
    poisoned = event["Records"][4]["messageId"]

    response = handle_sqs_event(event, None, indexer)

    assert response == {"batchItemFailures": [{"itemIdentifier": poisoned}]}
    assert sorted(r.content.splitlines()[0] for r in rows(db, tenant.id)) == sorted(
        f"Company: Retailer {i}" for i in range(10) if i != 4
    )


def test_every_record_failing_is_reported_rather_than_raised(tenant, publisher, db):
    embedder = CountingEmbedder(poison="Company")  # every text
    tenant.client.post("/api/v1/companies", json={"name": "Alpha"})
    tenant.client.post("/api/v1/companies", json={"name": "Beta"})
    event = sqs_event(publisher.events)
    response = handle_sqs_event(event, None, EmbeddingIndexer(db, embedder))
    assert {f["itemIdentifier"] for f in response["batchItemFailures"]} == {r["messageId"] for r in event["Records"]}
    assert rows(db, tenant.id) == []


def test_an_event_cannot_write_into_another_organization(make_tenant, publisher, db, indexer):
    mine, theirs = make_tenant("Mine"), make_tenant("Theirs")
    company = mine.client.post("/api/v1/companies", json={"name": "Private Co"}).json()
    forged = json.loads(publisher.events[0].model_dump_json())
    forged["organization_id"] = str(theirs.id)  # claims the other organization
    event = sqs_event(publisher.events)
    event["Records"][0]["body"] = json.dumps(forged)
    assert handle_sqs_event(event, None, indexer) == {"batchItemFailures": []}
    assert rows(db, theirs.id) == []  # their RLS scope cannot see my company: nothing to embed
    assert rows(db, mine.id) == []
    assert company["id"]


def test_an_older_text_never_overwrites_a_newer_one(tenant, publisher, db, indexer):
    from okyaku.embeddings.documents import load_documents
    from okyaku.embeddings.store import upsert_embeddings

    company = tenant.client.post("/api/v1/companies", json={"name": "Version One"}).json()
    with db.organization_scope(tenant.id) as session:
        v1 = load_documents(session, "company", [uuid.UUID(company["id"])])[uuid.UUID(company["id"])]
    tenant.client.patch(f"/api/v1/companies/{company['id']}", json={"name": "Version Two"})
    handle_sqs_event(sqs_event(publisher.events[-1:]), None, indexer)
    # A slow consumer that read version 1 writes late:
    with db.organization_scope(tenant.id) as session:
        upsert_embeddings(session, tenant.id, indexer.embedder.model, indexer.embedder.dimension, [v1], [[1.0] * 256])
    (row,) = rows(db, tenant.id)
    assert row.source_version == 2 and "Version Two" in row.content


def test_when_the_batched_write_fails_each_message_is_written_alone(tenant, publisher, db, embedder):
    """The batch is written in one transaction; if that fails, messages are written one by one,
    so a record the database refuses fails only its own message."""

    class RefusesOneRecord(EmbeddingIndexer):
        def write(self, organization_id, works):
            if any(w.document and w.document.title == "Refused Ltd" for w in works):
                raise RuntimeError("the database refused a row")
            return super().write(organization_id, works)

    for name in ("Alpha Ltd", "Refused Ltd", "Gamma Ltd"):
        tenant.client.post("/api/v1/companies", json={"name": name})
    event = sqs_event(publisher.events)

    response = handle_sqs_event(event, None, RefusesOneRecord(db, embedder))

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert sorted(r.content for r in rows(db, tenant.id)) == ["Company: Alpha Ltd", "Company: Gamma Ltd"]
