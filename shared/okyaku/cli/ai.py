"""``okyaku ai health`` and ``okyaku ai embed``: check the LLM setup from a terminal."""

from __future__ import annotations

import argparse
import json
from typing import Any

from okyaku.config import get_settings


def register(subparsers: Any) -> None:
    ai = subparsers.add_parser("ai", help="check the LLM (Ollama) and the embedder")
    ai_sub = ai.add_subparsers(dest="ai_command", required=True)
    health = ai_sub.add_parser("health", help="print what /api/v1/ai/health would report (without the database)")
    health.set_defaults(func=run_health)
    embed = ai_sub.add_parser("embed", help="embed texts and print model, dimension and cosine similarities")
    embed.add_argument("texts", nargs="+")
    embed.set_defaults(func=run_embed)


def run_health(args: argparse.Namespace) -> int:
    from okyaku.llm import LLMGateway
    from okyaku.llm.health import check_ai_health

    gateway = LLMGateway.from_settings(get_settings())
    try:
        print(check_ai_health(gateway).model_dump_json(indent=2))
    finally:
        gateway.close()
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from okyaku.llm import LLMGateway

    gateway = LLMGateway.from_settings(get_settings())
    try:
        result = gateway.sync.embed(args.texts)
    finally:
        gateway.close()
    first = result.vectors[0]
    similarities = [round(sum(a * b for a, b in zip(first, v, strict=True)), 4) for v in result.vectors]
    summary = {"model": result.model, "dimension": result.dimension, "degraded": result.degraded}
    print(json.dumps({**summary, "cosine_to_first": dict(zip(args.texts, similarities, strict=True))}, indent=2))
    return 0
