"""Pure pieces of search, indexing and the handler's dispatch."""

from __future__ import annotations

import math
import uuid

import pytest

from okyaku.embeddings.api import parse_types
from okyaku.embeddings.indexes import checked_model, has_iterative_scan, hnsw_index_name, hnsw_index_sql
from okyaku.embeddings.search import keyword_query, make_snippet, reciprocal_rank_fusion
from okyaku.entry import UnsupportedEvent, classify_event
from okyaku.errors import ValidationFailed
from okyaku.rag import estimate_tokens
from tests.support.hashing_embedder import HashingEmbedder


def test_keyword_query_ors_the_words_and_drops_syntax():
    assert keyword_query("Renewal & pricing: (Acme!)") == "renewal | pricing | acme"
    assert keyword_query("it's 'a' | b") == "it"
    assert keyword_query("!!!") == ""
    assert keyword_query("deal deal DEAL") == "deal"


def test_reciprocal_rank_fusion_rewards_agreement():
    a, b, c, d = (("deal", uuid.uuid4()) for _ in range(4))
    scores = reciprocal_rank_fusion([[a, b, c], [c, a, d]], k=60)
    assert scores[a] == pytest.approx(1 / 61 + 1 / 62)
    assert sorted(scores, key=scores.get, reverse=True)[:2] == [a, c]
    assert scores[d] < scores[b] or scores[d] == pytest.approx(1 / 63)


def test_snippets_show_the_lines_that_match():
    content = "Deal: Fleet route optimization\nCompany: Kestrel\nStage: Proposal (open)\nAmount: 90,000 EUR"
    assert make_snippet(content, "kestrel fleet") == "Company: Kestrel"
    assert make_snippet(content, "nothing here") == "Company: Kestrel · Stage: Proposal (open) · Amount: 90,000 EUR"
    body = "Call: Renewal\n" + "filler " * 60 + "the customer wants a discount on licences " + "more " * 60
    snippet = make_snippet(body, "discount", max_chars=80)
    assert "discount" in snippet and snippet.startswith("…") and len(snippet) <= 80


def test_index_names_are_unique_per_model_and_dimension_and_fit_postgres():
    names = {
        hnsw_index_name(m, d) for m in ("nomic-embed-text", "nomic-embed-text:v1.5", "x" * 200) for d in (384, 768)
    }
    assert len(names) == 6
    assert all(len(name) <= 63 for name in names)
    assert hnsw_index_sql("local:all-minilm-l6-v2", 384) == (
        f"CREATE INDEX IF NOT EXISTS {hnsw_index_name('local:all-minilm-l6-v2', 384)} ON embeddings "
        "USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE model = 'local:all-minilm-l6-v2'"
    )


@pytest.mark.parametrize("name", ["", "a'b", "model; DROP TABLE x", "x" * 201, "-leading"])
def test_model_names_that_could_break_sql_are_refused(name):
    with pytest.raises(ValidationFailed):
        checked_model(name)


def test_iterative_scan_needs_pgvector_0_8():
    assert not has_iterative_scan((0, 6, 2))
    assert not has_iterative_scan((0, 7, 4))
    assert has_iterative_scan((0, 8, 0)) and has_iterative_scan((1, 0))


def test_hashing_embedder_is_deterministic_unit_length_and_lexical():
    embedder = HashingEmbedder(dimension=128)
    renewal, renewals, lunch = embedder.embed(["contract renewal", "renewals of contracts", "lunch order"])
    assert embedder.embed(["contract renewal"])[0] == renewal
    assert math.isclose(sum(v * v for v in renewal), 1.0)

    def cosine(x, y):
        return sum(a * b for a, b in zip(x, y, strict=True))

    assert cosine(renewal, renewals) > 0.8 > 0.2 > cosine(renewal, lunch)  # stems match: renewals ~ renewal
    assert embedder.embed([""])[0][0] == 1.0  # still a valid vector


def test_event_shapes_are_told_apart():
    sqs = {"Records": [{"eventSource": "aws:sqs", "body": "{}", "messageId": "1"}]}
    scheduled = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
    http = {"version": "2.0", "rawPath": "/api/v1/ai/search", "requestContext": {"http": {"method": "GET"}}}
    assert classify_event(sqs) == "sqs"
    assert classify_event(scheduled) == "schedule"
    assert classify_event(http) == "http"
    for not_sqs in ({"Records": [{"eventSource": "aws:kinesis"}]}, {"Records": []}):
        with pytest.raises(UnsupportedEvent):
            classify_event(not_sqs)


def test_types_parameter():
    assert parse_types(None) == ["company", "contact", "deal", "activity"]
    assert parse_types(" Deal, contact ,deal") == ["deal", "contact"]
    assert parse_types(" , ,") == parse_types(None)  # was an empty IN () that Postgres refused (a 500)
    with pytest.raises(ValidationFailed) as error:
        parse_types("deal,invoice")
    assert error.value.details[0]["field"] == "types"


def test_token_estimate():
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2


def test_change_events_are_read_plain_or_wrapped_by_a_fan_out():
    import json

    from okyaku.embeddings.indexer import decode_change_event

    event = {
        "event_id": str(uuid.uuid4()),
        "organization_id": str(uuid.uuid4()),
        "entity_type": "deal",
        "entity_id": str(uuid.uuid4()),
        "operation": "updated",
        "changed_fields": ["name"],
        "version": 3,
        "occurred_at": "2026-11-25T15:00:00Z",
    }
    plain = json.dumps(event)
    eventbridge = json.dumps(
        {"version": "0", "detail-type": "okyaku.record-changed", "source": "okyaku", "detail": event}
    )
    sns = json.dumps({"Type": "Notification", "MessageId": "m-1", "Message": plain})
    decoded = [decode_change_event(body) for body in (plain, eventbridge, sns)]
    assert decoded[0] == decoded[1] == decoded[2] and decoded[0].version == 3
    with pytest.raises(ValueError):
        decode_change_event('{"detail-type": "x", "detail": {"not": "an event"}}')
