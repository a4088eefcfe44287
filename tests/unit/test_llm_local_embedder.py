"""The in-process MiniLM embedder gives real, sensible embeddings."""

import math

import pytest

from okyaku.llm import LOCAL_MODEL_NAME, get_local_embedder


@pytest.fixture(scope="module")
def embedder():
    return get_local_embedder()


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_neighbours_are_semantic(embedder):
    query, near, far = embedder.embed(["enterprise software renewal", "renewing the SaaS contract", "lunch order"])
    assert cosine(query, near) > cosine(query, far) + 0.2


def test_vectors_are_unit_length_with_the_model_dimension(embedder):
    vectors = embedder.embed(["a", "a much longer sentence about pipelines, quotas and forecasts"])
    assert embedder.name == LOCAL_MODEL_NAME
    assert [len(v) for v in vectors] == [384, 384]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-5) for v in vectors)


def test_batching_and_padding_do_not_change_a_vector(embedder):
    alone = embedder.embed(["call the customer about the renewal"])[0]
    texts = ["x " * 200, "call the customer about the renewal", "hi"]
    in_batch = embedder.embed(texts)[1]
    assert cosine(alone, in_batch) > 0.9999
    embedder_small_batches = type(embedder)(batch_size=1)
    assert cosine(embedder_small_batches.embed(texts)[0], embedder.embed(texts)[0]) > 0.9999


def test_order_is_kept_and_empty_input_is_fine(embedder):
    texts = ["zebra", "a long text about quarterly revenue targets", "meeting"]
    together = embedder.embed(texts)
    separately = [embedder.embed([t])[0] for t in texts]
    assert all(cosine(a, b) > 0.9999 for a, b in zip(together, separately, strict=True))
    assert embedder.embed([]) == []
