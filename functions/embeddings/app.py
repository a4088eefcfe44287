"""embeddings: change events -> embeddings (SQS), scheduled backfill (EventBridge), /api/v1/ai/search (HTTP)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.embeddings.api import create_search_app
    from okyaku.embeddings.triggers import EmbeddingTriggers, default_embedder
    from okyaku.entry import function_handler
    from okyaku.runtime import Runtime

    runtime = Runtime()
    embedder = default_embedder(runtime)
    triggers = EmbeddingTriggers(runtime, embedder)
    app = create_search_app(runtime, embedder=embedder)
    handler = function_handler(
        name="embeddings", http=app, on_batch=triggers.on_batch, on_schedule=triggers.on_schedule
    )
