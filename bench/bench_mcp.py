"""Latency of each MCP tool as a client sees it: the SDK's client over HTTP to the ``mcp`` app
(uvicorn on loopback), on the demo organization (``okyaku dev``'s demo data) in the embedded
Postgres, with the language model unreachable (chat answers from its parser, analysis from its
rules: what the embedded default does without Ollama). Search runs over hashing embeddings.

Baseline: ``ping`` through the same stack (HTTP, API-key check, the SDK's stateless exchange).
``python -m bench mcp`` (``BENCH_MCP_REPEATS``, default 15).
"""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from bench._database import bench_organization
from bench._timing import stats
from okyaku.config import Settings
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.search import SemanticSearch
from okyaku.llm import LLMGateway
from okyaku.local.demo import seed_demo_data
from okyaku.mcp.api import create_mcp_app
from okyaku.mcp.service import McpTools
from okyaku.mcp.settings import McpSettings
from okyaku.runtime import Runtime
from tests.support.hashing_embedder import HashingEmbedder
from tests.support.mcp_client import connect, serve
from tests.support.openai_server import closed_port_url


def _ids(runtime: Runtime, organization_id: Any) -> dict[str, str]:
    from sqlalchemy import select

    from okyaku.db.models import Contact, Deal, PipelineStage

    with runtime.db.organization_scope(organization_id) as session:
        deal = session.scalars(
            select(Deal)
            .join(PipelineStage, PipelineStage.id == Deal.stage_id)
            .where(~PipelineStage.is_won, ~PipelineStage.is_lost)
        ).first()
        lead = session.scalars(
            select(Contact).where(Contact.lifecycle_stage == "lead", Contact.email.is_not(None))
        ).first()
        assert deal is not None and lead is not None
        return {"deal": str(deal.id), "lead": str(lead.id), "company": str(deal.company_id or "")}


def main() -> None:
    repeats = int(os.environ.get("BENCH_MCP_REPEATS", "15"))
    with bench_organization("MCP bench", "admin@mcp-bench.example") as bench:
        settings = Settings(database_url=bench.local.app_url, ollama_base_url=closed_port_url(), llm_max_retries=0)
        runtime = Runtime(settings, db=bench.db, publisher=None)
        summary = seed_demo_data(runtime, bench.org.organization_id, bench.org.user_id)
        embedder = HashingEmbedder()
        EmbeddingIndexer(bench.db, embedder).backfill(organization_ids=[bench.org.organization_id])
        ids = _ids(runtime, bench.org.organization_id)
        tools = McpTools(
            runtime,
            LLMGateway.from_settings(settings),
            settings=McpSettings(rate_limit_per_minute=100_000),
            search=SemanticSearch(embedder),
        )
        calls: list[tuple[str, str, dict[str, Any]]] = [
            ("ping (baseline)", "", {}),
            ("search_records", "search_records", {"query": "pricing concerns about the renewal", "limit": 10}),
            ("get_record deal", "get_record", {"type": "deal", "id": ids["deal"]}),
            ("get_record company", "get_record", {"type": "company", "id": ids["company"]}),
            ("query_crm question", "query_crm", {"question": "What's the pipeline value by stage?"}),
            (
                "query_crm plan",
                "query_crm",
                {
                    "plan": {
                        "entity": "deals",
                        "group_by": [{"field": "stage.name"}],
                        "aggregations": [{"function": "count"}],
                    }
                },
            ),
            ("list_recommendations", "list_recommendations", {"type": "deal", "id": ids["deal"]}),
            ("get_lead_score", "get_lead_score", {"contact_id": ids["lead"]}),
            ("get_deal_forecast", "get_deal_forecast", {"deal_id": ids["deal"]}),
            ("analyze_text (no LLM)", "analyze_text", {"text": "They will decide by Friday; pricing is too high."}),
            (
                "propose_change",
                "propose_change",
                {"type": "deal", "id": ids["deal"], "changes": {"amount": "12345"}, "reasoning": "bench proposal"},
            ),
            ("list_approvals", "list_approvals", {"limit": 20}),
        ]
        results: dict[str, list[float]] = {}
        first: dict[str, float] = {}

        async def measure(url: str) -> None:
            async with connect(url, bench.org.api_key, name="bench") as client:
                for label, tool, arguments in calls:
                    samples = []
                    for attempt in range(repeats + 1):
                        started = time.perf_counter()
                        if tool:
                            result = await client.call_tool(tool, arguments)
                            assert not result.is_error, (label, result.structured_content)
                        else:
                            await client.send_ping()
                        elapsed = time.perf_counter() - started
                        if attempt == 0:
                            first[label] = elapsed  # builds the tool's services (imports, models)
                        else:
                            samples.append(elapsed)
                    results[label] = samples

        with serve(create_mcp_app(tools)) as url:
            anyio.run(measure, url)

    base, _ = stats(results["ping (baseline)"])
    print(
        f"MCP tools over HTTP (SDK client, stateless JSON), demo data: {summary.companies} companies, "
        f"{summary.contacts} contacts, {summary.deals} deals, {summary.activities} activities; LLM unreachable"
    )
    print(f"{'tool':<24}{'repeats':>8}{'first':>10}{'median':>10}{'p95':>10}{'x ping':>8}")
    for label, samples in results.items():
        median, p95 = stats(samples)
        print(
            f"{label:<24}{len(samples):>8}{first[label] * 1000:>8.1f}ms{median * 1000:>8.1f}ms"
            f"{p95 * 1000:>8.1f}ms{median / base:>8.1f}"
        )


if __name__ == "__main__":
    main()
