"""Hybrid semantic search over one organization's embeddings.

Vector similarity (HNSW, or an exact scan when that is cheaper or the index cannot fill the
page) and Postgres full-text search each rank candidates; reciprocal rank fusion combines
them. Row-level security keeps every query inside the caller's organization.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from okyaku.embeddings.documents import activity_title, load_documents, person_name
from okyaku.embeddings.indexes import has_iterative_scan, hnsw_index_name, model_literal, pgvector_version, vector_cast
from okyaku.embeddings.models import EMBEDDABLE_TYPES, TEXT_SEARCH_CONFIG
from okyaku.embeddings.protocol import Embedder, embed_query
from okyaku.errors import DependencyUnavailable, NotFound

logger = logging.getLogger(__name__)

RRF_K = 60  # the constant from Cormack et al.; damps the weight of the very top ranks
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search
_WORD = re.compile(r"\w+", re.UNICODE)


class SearchMode(StrEnum):
    HYBRID = "hybrid"
    VECTOR = "vector"
    KEYWORD = "keyword"


@dataclass(frozen=True)
class SearchHit:
    entity_type: str
    entity_id: uuid.UUID
    title: str
    snippet: str
    score: float
    similarity: float | None = None  # cosine similarity to the query, when vector search found it
    vector_rank: int | None = None
    keyword_rank: int | None = None


@dataclass
class SearchResult:
    hits: list[SearchHit]
    mode: SearchMode
    model: str | None
    degraded: bool = False  # True: the embedder failed, so only keyword search ran
    strategy: str | None = None  # how the vector candidates were found: exact, hnsw, hnsw+exact
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    entity_type: str
    entity_id: uuid.UUID
    value: float  # distance (vector) or rank score (keyword)

    @property
    def key(self) -> tuple[str, uuid.UUID]:
        return (self.entity_type, self.entity_id)


def keyword_query(query: str) -> str:
    """An OR of the query's words for ``to_tsquery``: any word may match, more words rank higher."""
    return " | ".join(dict.fromkeys(w for w in _WORD.findall(query.lower()) if len(w) > 1 and w != "_"))


def reciprocal_rank_fusion(rankings: Sequence[Sequence[tuple[str, uuid.UUID]]], k: int = RRF_K) -> dict[Any, float]:
    scores: dict[Any, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


def make_snippet(content: str, query: str, max_chars: int = 200) -> str:
    """The lines of the record's text that mention the query's words (else its first details)."""
    lines = [line for line in content.splitlines() if line.strip()]
    body = lines[1:] or lines  # the first line repeats the title
    stems = {w[:5] for w in _WORD.findall(query.lower()) if len(w) > 2}

    def matches(line: str) -> int:
        return sum(1 for w in _WORD.findall(line.lower()) if w[:5] in stems)

    chosen = [line for line in body if matches(line)] or body
    snippet = ""
    for line in chosen:
        if len(line) > max_chars:
            line = _window(line, stems, max_chars)
        candidate = f"{snippet} · {line}" if snippet else line
        if len(candidate) > max_chars:
            break
        snippet = candidate
    return snippet or (chosen[0][: max_chars - 1] + "…" if chosen else "")


def _window(line: str, stems: set[str], width: int) -> str:
    lowered = line.lower()
    positions = [m.start() for m in _WORD.finditer(lowered) if m.group()[:5] in stems]
    start = max(0, (positions[0] if positions else 0) - width // 4)
    piece = line[start : start + width - 2]
    return ("…" if start else "") + piece + ("…" if start + width - 2 < len(line) else "")


class _TtlCache:
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._values: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            entry = self._values.get(key)
        if entry is None or time.monotonic() - entry[0] > self.ttl_s:
            return None
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._values[key] = (time.monotonic(), value)


class SemanticSearch:
    """Search one organization's records; create once per process and share."""

    def __init__(
        self,
        embedder: Embedder | None,
        *,
        exact_scan_max_rows: int = 5000,
        min_ef_search: int = 100,  # recall@10 ≈ 0.99 at 100k (bench/bench_embeddings.py); 40 gives ≈ 0.87
        filter_headroom: float = 4.0,
        count_cache_ttl_s: float = 60.0,
        rrf_k: int = RRF_K,
    ) -> None:
        self.embedder = embedder
        self.exact_scan_max_rows = exact_scan_max_rows
        self.min_ef_search = min_ef_search
        self.filter_headroom = filter_headroom
        self.rrf_k = rrf_k
        self._counts = _TtlCache(count_cache_ttl_s)
        self._pgvector: tuple[int, ...] | None = None

    # --- public ---------------------------------------------------------------------------

    def search(
        self,
        session: Session,
        organization_id: uuid.UUID,
        query: str,
        *,
        entity_types: Sequence[str] = EMBEDDABLE_TYPES,
        limit: int = 10,
        mode: SearchMode = SearchMode.HYBRID,
    ) -> SearchResult:
        pool = max(limit * 3, 30)
        result = SearchResult(hits=[], mode=mode, model=self.embedder.model if self.embedder else None)
        vector_hits: list[Candidate] = []
        keyword_hits: list[Candidate] = []
        if mode in (SearchMode.HYBRID, SearchMode.VECTOR):
            try:
                vector = self._query_vector(query)
            except Exception as error:
                if mode is SearchMode.VECTOR:
                    raise DependencyUnavailable("the embedding model is unavailable", details=str(error)) from error
                logger.warning("query embedding failed; keyword search only: %s", error)
                result.degraded = True
                result.notes.append("the embedding model is unavailable: keyword search only")
            else:
                vector_hits, result.strategy = self.vector_candidates(
                    session, organization_id, vector, entity_types=entity_types, k=pool
                )
        if mode in (SearchMode.HYBRID, SearchMode.KEYWORD):
            keyword_hits = self.keyword_candidates(session, query, entity_types=entity_types, k=pool)

        vector_rank = {c.key: i for i, c in enumerate(vector_hits, start=1)}
        keyword_rank = {c.key: i for i, c in enumerate(keyword_hits, start=1)}
        distance = {c.key: c.value for c in vector_hits}
        if mode is SearchMode.VECTOR:
            scores = {c.key: 1.0 - c.value for c in vector_hits}
        elif mode is SearchMode.KEYWORD or not vector_hits:
            scores = {c.key: c.value for c in keyword_hits}
        else:
            scores = reciprocal_rank_fusion([[c.key for c in vector_hits], [c.key for c in keyword_hits]], k=self.rrf_k)
        ranked = sorted(scores, key=lambda key: (-scores[key], key[0], key[1]))
        details = self._details(session, ranked[: limit * 2])
        for key in ranked:
            if key not in details:
                continue  # the record was deleted since it was embedded
            title, content = details[key]
            result.hits.append(
                SearchHit(
                    entity_type=key[0],
                    entity_id=key[1],
                    title=title,
                    snippet=make_snippet(content, query),
                    score=round(scores[key], 6),
                    similarity=round(1.0 - distance[key], 6) if key in distance else None,
                    vector_rank=vector_rank.get(key),
                    keyword_rank=keyword_rank.get(key),
                )
            )
            if len(result.hits) >= limit:
                break
        return result

    def similar(
        self,
        session: Session,
        organization_id: uuid.UUID,
        entity_type: str,
        entity_id: uuid.UUID,
        *,
        entity_types: Sequence[str] = EMBEDDABLE_TYPES,
        limit: int = 10,
    ) -> SearchResult:
        """Records closest in meaning to one record (which is left out)."""
        embedder = self._require_embedder()
        documents = load_documents(session, entity_type, [entity_id])
        if entity_id not in documents:
            raise NotFound(f"{entity_type} {entity_id} not found", details={"id": str(entity_id)})
        vector = self._stored_vector(session, entity_type, entity_id)
        if vector is None:  # not embedded yet: embed its current text now
            vector = embedder.embed([documents[entity_id].content])[0]
        candidates, strategy = self.vector_candidates(
            session,
            organization_id,
            vector,
            entity_types=entity_types,
            k=limit + 1,
            exclude=(entity_type, entity_id),
        )
        ranked = [c for c in candidates if c.key != (entity_type, entity_id)][:limit]
        details = self._details(session, [c.key for c in ranked])
        hits = [
            SearchHit(
                entity_type=c.entity_type,
                entity_id=c.entity_id,
                title=details[c.key][0],
                snippet=make_snippet(details[c.key][1], ""),
                score=round(1.0 - c.value, 6),
                similarity=round(1.0 - c.value, 6),
                vector_rank=rank,
            )
            for rank, c in enumerate(ranked, start=1)
            if c.key in details
        ]
        return SearchResult(hits=hits, mode=SearchMode.VECTOR, model=embedder.model, strategy=strategy)

    # --- vector candidates -------------------------------------------------------------------

    def vector_candidates(
        self,
        session: Session,
        organization_id: uuid.UUID,
        vector: Sequence[float],
        *,
        entity_types: Sequence[str] = EMBEDDABLE_TYPES,
        k: int = 30,
        exclude: tuple[str, uuid.UUID] | None = None,
        strategy: str = "auto",
    ) -> tuple[list[Candidate], str]:
        """The k nearest of the organization's embeddings, and how they were found.

        ``strategy``: auto (choose), exact, or hnsw (the index alone; for benchmarks).
        """
        embedder = self._require_embedder()
        rows = self._row_count(session, organization_id, entity_types)
        if rows == 0:
            return [], "empty"
        wanted = min(k, rows - (1 if exclude else 0))
        if strategy == "exact" or (strategy == "auto" and rows <= self.exact_scan_max_rows):
            return self._vector_query(session, embedder, vector, entity_types, k, exact=True), "exact"
        if has_iterative_scan(self._pgvector_version(session)):
            # 0.8+: the index keeps scanning until enough rows pass the organization filter.
            session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
            ef = min(max(self.min_ef_search, 2 * k), MAX_EF_SEARCH)
        else:
            # 0.6/0.7: the scan stops after ef_search rows, before the organization filter; ask
            # for enough that this organization's share of them fills the page.
            share = rows / max(self._indexed_rows(session, embedder), rows)
            ef = math.ceil(self.filter_headroom * k / share)
            if ef > MAX_EF_SEARCH and strategy == "auto":
                return self._vector_query(session, embedder, vector, entity_types, k, exact=True), "exact"
            ef = min(max(ef, self.min_ef_search, k), MAX_EF_SEARCH)
        session.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef)}"))
        found = self._vector_query(session, embedder, vector, entity_types, k, exact=False)
        if len(found) >= wanted or strategy == "hnsw":
            return found, "hnsw"
        # The filtered index scan came up short: an exact scan always fills the page.
        return self._vector_query(session, embedder, vector, entity_types, k, exact=True), "hnsw+exact"

    def _vector_query(
        self,
        session: Session,
        embedder: Embedder,
        vector: Sequence[float],
        entity_types: Sequence[str],
        k: int,
        *,
        exact: bool,
    ) -> list[Candidate]:
        # The HNSW index is on ``embedding::vector(D)`` for ``model = '<literal>'``: the same cast and
        # literal let the planner use it; the exact scan uses an expression the index does not match.
        cast = vector_cast(embedder.dimension)
        distance = (
            "embedding <=> CAST(:query AS vector)" if exact else f"(embedding::{cast}) <=> CAST(:query AS {cast})"
        )
        sql = (
            f"SELECT entity_type, entity_id, {distance} AS distance FROM embeddings "
            f"WHERE model = {model_literal(embedder.model)} AND entity_type IN :types "
            f"ORDER BY {distance} LIMIT :k"
        )
        if not exact:
            # relaxed_order (0.8) may return rows slightly out of order: sort the page again.
            sql = f"SELECT * FROM ({sql}) AS nearest ORDER BY distance"
        statement = text(sql).bindparams(bindparam("types", expanding=True))
        rows = session.execute(statement, {"query": _vector_text(vector), "types": list(entity_types), "k": k}).all()
        return [Candidate(r.entity_type, r.entity_id, float(r.distance)) for r in rows]

    def _row_count(self, session: Session, organization_id: uuid.UUID, entity_types: Sequence[str]) -> int:
        embedder = self._require_embedder()
        key = (organization_id, embedder.model, tuple(sorted(entity_types)))
        cached = self._counts.get(key)
        if cached is not None:
            return int(cached)
        statement = text("SELECT count(*) FROM embeddings WHERE model = :model AND entity_type IN :types").bindparams(
            bindparam("types", expanding=True)
        )
        count = int(session.execute(statement, {"model": embedder.model, "types": list(entity_types)}).scalar_one())
        self._counts.put(key, count)
        return count

    def _indexed_rows(self, session: Session, embedder: Embedder) -> int:
        """Rows in the model's index, all organizations (the planner's estimate: RLS hides the rest)."""
        name = hnsw_index_name(embedder.model, embedder.dimension)
        estimate = session.execute(
            text(
                "SELECT coalesce(max(CASE WHEN c.relname = :index THEN c.reltuples END), "
                "max(CASE WHEN c.relname = 'embeddings' THEN c.reltuples END)) "
                "FROM pg_class c WHERE c.relname IN (:index, 'embeddings')"
            ),
            {"index": name},
        ).scalar()
        return max(int(estimate or 0), 0)

    def _pgvector_version(self, session: Session) -> tuple[int, ...]:
        if self._pgvector is None:
            self._pgvector = pgvector_version(session)
        return self._pgvector

    # --- keyword candidates ----------------------------------------------------------------

    def keyword_candidates(
        self, session: Session, query: str, *, entity_types: Sequence[str] = EMBEDDABLE_TYPES, k: int = 30
    ) -> list[Candidate]:
        terms = keyword_query(query)
        if not terms:
            return []
        # Any model's row will do: the text is the same, so take each record's best.
        statement = text(
            f"""
            WITH q AS (SELECT to_tsquery('{TEXT_SEARCH_CONFIG}', :terms) AS query),
            matches AS (
                SELECT DISTINCT ON (e.entity_type, e.entity_id)
                       e.entity_type, e.entity_id, ts_rank(e.search_vector, q.query, 1) AS rank
                FROM embeddings e, q
                WHERE e.search_vector @@ q.query AND e.entity_type IN :types
                ORDER BY e.entity_type, e.entity_id, rank DESC
            )
            SELECT entity_type, entity_id, rank FROM matches ORDER BY rank DESC, entity_type, entity_id LIMIT :k
            """
        ).bindparams(bindparam("types", expanding=True))
        rows = session.execute(statement, {"terms": terms, "types": list(entity_types), "k": k}).all()
        return [Candidate(r.entity_type, r.entity_id, float(r.rank)) for r in rows]

    # --- details -----------------------------------------------------------------------------

    def _details(self, session: Session, keys: Sequence[tuple[str, uuid.UUID]]) -> dict[Any, tuple[str, str]]:
        """Title (from the record itself, so deleted records drop out) and embedded text per hit."""
        if not keys:
            return {}
        titles = record_titles(session, keys)
        statement = text(
            "SELECT DISTINCT ON (entity_type, entity_id) entity_type, entity_id, content FROM embeddings "
            "WHERE entity_id IN :ids ORDER BY entity_type, entity_id, updated_at DESC"
        ).bindparams(bindparam("ids", expanding=True))
        contents = {
            (r.entity_type, r.entity_id): r.content
            for r in session.execute(statement, {"ids": [key[1] for key in keys]})
        }
        return {key: (titles[key], contents.get(key, "")) for key in keys if key in titles}

    def _stored_vector(self, session: Session, entity_type: str, entity_id: uuid.UUID) -> list[float] | None:
        embedder = self._require_embedder()
        value = session.execute(
            text(
                "SELECT embedding::text FROM embeddings WHERE model = :model AND entity_type = :t AND entity_id = :id"
            ),
            {"model": embedder.model, "t": entity_type, "id": entity_id},
        ).scalar()
        if value is None:
            return None
        return [float(x) for x in str(value).strip("[]").split(",")]

    def _query_vector(self, query: str) -> list[float]:
        return embed_query(self._require_embedder(), query)

    def _require_embedder(self) -> Embedder:
        if self.embedder is None:
            raise DependencyUnavailable("no embedding model is configured", code="embedder_unavailable")
        return self.embedder


def _vector_text(vector: Sequence[float]) -> str:
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


_TITLE_SQL = {
    "company": "SELECT id, name AS a, NULL AS b, NULL AS c, NULL::timestamptz AS d FROM companies WHERE id IN :ids",
    "contact": "SELECT id, first_name AS a, last_name AS b, email AS c, NULL::timestamptz AS d FROM contacts "
    "WHERE id IN :ids",
    "deal": "SELECT id, name AS a, NULL AS b, NULL AS c, NULL::timestamptz AS d FROM deals WHERE id IN :ids",
    "activity": "SELECT id, type AS a, subject AS b, NULL AS c, occurred_at AS d FROM activities WHERE id IN :ids",
}


def record_titles(session: Session, keys: Sequence[tuple[str, uuid.UUID]]) -> dict[tuple[str, uuid.UUID], str]:
    """A human title per record that exists in this organization."""
    by_type: dict[str, list[uuid.UUID]] = {}
    for entity_type, entity_id in keys:
        by_type.setdefault(entity_type, []).append(entity_id)
    titles: dict[tuple[str, uuid.UUID], str] = {}
    for entity_type, ids in by_type.items():
        statement = text(_TITLE_SQL[entity_type]).bindparams(bindparam("ids", expanding=True))
        for row in session.execute(statement, {"ids": ids}):
            if entity_type == "contact":
                title = person_name(row.a, row.b, row.c)
            elif entity_type == "activity":
                title = activity_title(row.a, row.b, row.d)
            else:
                title = row.a
            titles[(entity_type, row.id)] = title
    return titles
