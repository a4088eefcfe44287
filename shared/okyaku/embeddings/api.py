"""``/api/v1/ai/search``: hybrid semantic search and "similar to this record"."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, Field

from okyaku.embeddings.indexes import has_iterative_scan, pgvector_version
from okyaku.embeddings.models import EMBEDDABLE_TYPES
from okyaku.embeddings.protocol import Embedder
from okyaku.embeddings.search import SearchMode, SearchResult, SemanticSearch
from okyaku.embeddings.store import count_embeddings
from okyaku.errors import ValidationFailed, field_error
from okyaku.features import feature_enabled, require_feature
from okyaku.http import PrincipalDep, RuntimeDep, create_app
from okyaku.runtime import Runtime


class SearchHitOut(BaseModel):
    entity_type: str = Field(description="company, contact, deal or activity")
    entity_id: uuid.UUID
    title: str
    snippet: str = Field(description="The parts of the record's text that match the query")
    score: float = Field(description="Hybrid: reciprocal rank fusion score; vector: cosine similarity")
    similarity: float | None = Field(default=None, description="Cosine similarity to the query, if a vector match")
    vector_rank: int | None = None
    keyword_rank: int | None = None


class SearchResponse(BaseModel):
    query: str | None = None
    mode: SearchMode
    model: str | None = Field(description="The embedding model the vectors came from")
    degraded: bool = Field(description="True when the embedding model was unavailable and only keywords were used")
    strategy: str | None = Field(default=None, description="How nearest neighbours were found: exact, hnsw")
    notes: list[str] = []
    results: list[SearchHitOut]


class SearchStatus(BaseModel):
    enabled: bool
    model: str
    dimension: int
    embedded: dict[str, int]
    pgvector_version: str
    iterative_scan: bool


def _response(result: SearchResult, query: str | None) -> SearchResponse:
    return SearchResponse(
        query=query,
        mode=result.mode,
        model=result.model,
        degraded=result.degraded,
        strategy=result.strategy,
        notes=result.notes,
        results=[SearchHitOut.model_validate(hit, from_attributes=True) for hit in result.hits],
    )


def parse_types(raw: str | None) -> list[str]:
    if raw is None or not raw.strip():
        return list(EMBEDDABLE_TYPES)
    types = list(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    unknown = [t for t in types if t not in EMBEDDABLE_TYPES]
    if unknown:
        raise ValidationFailed(
            "unknown entity types",
            details=[field_error("types", f"{t!r} is not one of {', '.join(EMBEDDABLE_TYPES)}") for t in unknown],
        )
    return types or list(EMBEDDABLE_TYPES)  # only commas: no filter, as when it is left out


def _require_enabled(runtime: Runtime) -> None:
    require_feature(runtime.settings, "rag")


def _search(request: Request) -> SemanticSearch:
    search: SemanticSearch = request.app.state.search
    return search


TypesQuery = Annotated[
    str | None, Query(description="Comma-separated: company,contact,deal,activity (default: all)", max_length=200)
]
LimitQuery = Annotated[int, Query(ge=1, le=50)]


def add_search_routes(app: FastAPI) -> None:
    @app.get("/api/v1/ai/search", response_model=SearchResponse, tags=["search"])
    def search_records(
        request: Request,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for, in any words")],
        types: TypesQuery = None,
        limit: LimitQuery = 10,
        mode: SearchMode = SearchMode.HYBRID,
    ) -> SearchResponse:
        """Organization-scoped hybrid search: vector similarity fused with full-text match."""
        _require_enabled(runtime)
        entity_types = parse_types(types)
        with runtime.db.organization_scope(principal.organization_id) as session:
            result = _search(request).search(
                session, principal.organization_id, q.strip(), entity_types=entity_types, limit=limit, mode=mode
            )
        return _response(result, q)

    @app.get("/api/v1/ai/search/similar/{entity_type}/{entity_id}", response_model=SearchResponse, tags=["search"])
    def similar_records(
        request: Request,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        entity_type: Annotated[str, Path(description="company, contact, deal or activity")],
        entity_id: uuid.UUID,
        types: TypesQuery = None,
        limit: LimitQuery = 10,
    ) -> SearchResponse:
        """The records closest in meaning to this one."""
        _require_enabled(runtime)
        if entity_type not in EMBEDDABLE_TYPES:
            raise ValidationFailed(
                "unknown entity type",
                details=[field_error("entity_type", f"must be one of {', '.join(EMBEDDABLE_TYPES)}")],
            )
        entity_types = parse_types(types)
        with runtime.db.organization_scope(principal.organization_id) as session:
            result = _search(request).similar(
                session, principal.organization_id, entity_type, entity_id, entity_types=entity_types, limit=limit
            )
        return _response(result, None)

    @app.get("/api/v1/ai/search/status", response_model=SearchStatus, tags=["search"])
    def search_status(request: Request, runtime: RuntimeDep, principal: PrincipalDep) -> SearchStatus:
        """Which model serves search and how many of the organization's records it covers."""
        embedder = _search(request).embedder
        assert embedder is not None
        with runtime.db.organization_scope(principal.organization_id) as session:
            version = pgvector_version(session)
            embedded = {t: count_embeddings(session, embedder.model, [t]) for t in EMBEDDABLE_TYPES}
        return SearchStatus(
            enabled=feature_enabled(runtime.settings, "rag"),
            model=embedder.model,
            dimension=embedder.dimension,
            embedded=embedded,
            pgvector_version=".".join(str(part) for part in version),
            iterative_scan=has_iterative_scan(version),
        )


def create_search_app(runtime: Runtime | None = None, *, embedder: Embedder | None = None) -> FastAPI:
    app = create_app("Okyaku semantic search", runtime, description="Hybrid semantic search over CRM records")
    app.state.search = SemanticSearch(embedder)
    add_search_routes(app)
    return app
