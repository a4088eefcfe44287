"""The RAG context builder: relevant records, their related facts, a token budget, citations."""

from __future__ import annotations

import re
import uuid

import pytest

from okyaku.embeddings.consumer import handle_sqs_event
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.search import SemanticSearch
from okyaku.errors import NotFound
from okyaku.rag import ContextBuilder, EntityRef, estimate_tokens
from tests.integration.test_embeddings_pipeline import sqs_event
from tests.integration.test_search import seed_labelled_crm
from tests.support.hashing_embedder import HashingEmbedder


@pytest.fixture(scope="module")
def local_embedder():
    from okyaku.embeddings.llm_adapter import LocalModelEmbedder

    return LocalModelEmbedder()


@pytest.fixture(scope="module")
def labelled(pg, db, local_embedder):
    return seed_labelled_crm(pg, db, local_embedder)


@pytest.fixture
def crm(labelled):
    return {key: EntityRef(t, uuid.UUID(i)) for key, (t, i) in labelled.keys.items()}


@pytest.fixture
def tenant(labelled):
    return labelled  # the organization that holds the labelled dataset


def build(db, tenant, embedder, question, **kwargs):
    builder = ContextBuilder(SemanticSearch(embedder))
    with db.organization_scope(tenant.id) as session:
        return builder.build(session, tenant.id, question, **kwargs)


def assert_citations_consistent(context):
    markers = {int(m) for m in re.findall(r"\[(\d+)\]", context.text)}
    assert markers == {c.ref for c in context.citations}  # every marker resolves, no citation unused
    for citation in context.citations:
        assert f"{citation.title} [{citation.ref}]" in context.text


def test_a_question_brings_the_records_that_answer_it_with_their_facts(db, tenant, crm, local_embedder):
    context = build(db, tenant, local_embedder, "Why is the bank pushing back on our price?", token_budget=2000)

    assert crm["ac_pricing"] in context.records[:3]
    assert_citations_consistent(context)
    cited = {(c.entity_type, c.entity_id) for c in context.citations}
    # The activity's related facts: who said it, which deal, which company.
    for key in ("ct_dana", "dl_quillon", "co_quillon"):
        assert (crm[key].entity_type, crm[key].entity_id) in cited, key
    assert "too expensive" in context.text
    assert context.token_estimate == estimate_tokens(context.text) <= 2000


def test_a_focus_contact_comes_first_with_company_open_deals_and_recent_activities(db, tenant, crm, local_embedder):
    context = build(db, tenant, local_embedder, "what is happening with her?", focus=crm["ct_dana"])

    assert context.records[0] == crm["ct_dana"]
    first_block = context.text.split("\n\n")[1]
    assert first_block.startswith("Focus: Contact Dana Whitfield [1] — Chief Financial Officer")
    assert re.search(r"Company: Quillon Bank \[\d+\]", first_block)
    assert re.search(r"Open deal: Core banking analytics license \[\d+\] — stage Negotiation, 250,000 USD", first_block)
    assert re.search(r"Recent call \(\d{4}-\d\d-\d\d\): Pushback on the quote \[\d+\]", first_block)
    assert context.citation(1).entity_id == crm["ct_dana"].entity_id


def test_closed_deals_are_not_listed_as_open(db, tenant, crm, local_embedder):
    context = build(db, tenant, local_embedder, "solar installer", focus=crm["co_brightwave"], token_budget=3000)
    first_block = context.text.split("\n\n")[1]
    assert "Open deal" not in first_block  # its only deal was lost
    assert "Contact: Emily Carter" in first_block
    deal_context = build(db, tenant, local_embedder, "", focus=crm["dl_brightwave"])
    assert "lost, stage Closed Lost" in deal_context.text and "Lost reason: Budget frozen" in deal_context.text


def test_the_token_budget_is_kept_and_cuts_are_reported(db, tenant, crm, local_embedder):
    roomy = build(db, tenant, local_embedder, "contracts and legal review", token_budget=4000)
    tight = build(db, tenant, local_embedder, "contracts and legal review", token_budget=150)

    assert tight.token_estimate <= 150 < roomy.token_estimate <= 4000
    assert tight.truncated is True
    assert len(tight.records) < len(roomy.records)
    assert tight.records == roomy.records[: len(tight.records)]  # the most relevant survive
    assert_citations_consistent(tight)
    assert_citations_consistent(roomy)


def test_a_focus_record_of_another_organization_is_not_found(make_tenant, db, crm, local_embedder):
    other = make_tenant("Other")
    with pytest.raises(NotFound):
        build(db, other, local_embedder, "tell me about it", focus=crm["ct_dana"])


def test_without_the_embedding_model_the_context_comes_from_keywords(db, make_tenant, publisher):
    class DeadEmbedder(HashingEmbedder):
        def embed(self, texts):
            raise ConnectionError("model server down")

    tenant = make_tenant("Glacier")
    tenant.client.post("/api/v1/companies", json={"name": "Glacier Water Co", "industry": "Beverages"})
    handle_sqs_event(sqs_event(publisher.events), None, EmbeddingIndexer(db, HashingEmbedder()))
    context = build(db, tenant, DeadEmbedder(), "glacier water")
    assert context.degraded is True
    assert "Company Glacier Water Co [1] — Beverages" in context.text
