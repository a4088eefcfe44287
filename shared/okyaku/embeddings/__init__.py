"""Embeddings of CRM records: kept current from change events, backfilled, searched (hybrid).

Expensive pieces (the model, Powertools, FastAPI routes) load in the modules that need them.
"""

from okyaku.embeddings.documents import EntityDocument, content_hash
from okyaku.embeddings.models import EMBEDDABLE_TYPES, Embedding
from okyaku.embeddings.protocol import Embedder

__all__ = ["EMBEDDABLE_TYPES", "Embedder", "Embedding", "EntityDocument", "content_hash"]
