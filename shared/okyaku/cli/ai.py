"""``okyaku ai check``: what the model server can and cannot do (the first command to run);
``okyaku ai health`` and ``okyaku ai embed``: check the LLM setup from a terminal;
``okyaku ai ask "question"``: chat with the CRM, printing the answer and its table."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from okyaku.cli.local_db import add_data_dir_argument, database_url, demo_api_key
from okyaku.config import get_settings
from okyaku.errors import BadRequest


def register(subparsers: Any) -> None:
    ai = subparsers.add_parser("ai", help="check the LLM (Ollama) and the embedder")
    ai_sub = ai.add_subparsers(dest="ai_command", required=True)
    check = ai_sub.add_parser(
        "check", help="check the model server: models, embeddings, tool calls, JSON schema, context, speed"
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=run_check)
    health = ai_sub.add_parser("health", help="print what /api/v1/ai/health would report (without the database)")
    health.set_defaults(func=run_health)
    embed = ai_sub.add_parser("embed", help="embed texts and print model, dimension and cosine similarities")
    embed.add_argument("texts", nargs="+")
    embed.set_defaults(func=run_embed)
    ask = ai_sub.add_parser("ask", help="ask a question about the CRM; prints the answer and the table behind it")
    ask.add_argument("question")
    ask.add_argument("--org-key", metavar="KEY", help="an API key of the organization (default: the demo's)")
    ask.add_argument("--conversation", metavar="ID", type=uuid.UUID, help="continue this conversation")
    ask.add_argument("--json", action="store_true", help="print the whole response as JSON")
    add_data_dir_argument(ask)
    ask.set_defaults(func=run_ask)
    register_eval(ai_sub)


def run_check(args: argparse.Namespace) -> int:
    """Exit status 1 when a feature would not work."""
    from okyaku.llm import LLMConfig
    from okyaku.llm.probe import format_report, run_checks

    report = run_checks(LLMConfig.from_settings(get_settings()))
    if args.json:
        print(json.dumps({**report.model_dump(mode="json"), "ok": report.ok}, indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1


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


def run_ask(args: argparse.Namespace) -> int:
    from okyaku.chat.schemas import ChatRequest
    from okyaku.chat.service import ChatService
    from okyaku.llm import LLMGateway
    from okyaku.runtime import Runtime
    from okyaku.tenancy import authenticate

    database_url(args.data_dir)
    key = args.org_key or demo_api_key(args.data_dir)
    if not key:
        raise BadRequest("give --org-key (or run `okyaku dev` once, which saves the demo organization's key)")
    runtime = Runtime(get_settings())
    gateway = LLMGateway.from_settings(runtime.settings)
    try:
        principal = authenticate(runtime.db, f"Bearer {key}")
        response = ChatService(runtime, gateway).ask(
            principal, ChatRequest(message=args.question, conversation_id=args.conversation)
        )
    finally:
        gateway.close()
        runtime.db.dispose()
    if args.json:
        print(response.model_dump_json(indent=2))
        return 0
    print(response.answer)
    if response.data.columns and response.data.rows:
        print()
        print(format_table(response.data.columns, response.data.rows))
        if response.data.total is not None and response.data.total > len(response.data.rows):
            print(f"({len(response.data.rows)} of {response.data.total} rows)")
    for action in response.actions:
        print(f"pending approval: {action.summary} (action {action.pending_action_id})")
    for note in response.notes:
        print(f"note: {note}")
    by = {"parser": " (answered by the built-in parser)", "llm": " (planned by the language model)"}
    degraded = " (degraded: the language model is unavailable)" if response.degraded else ""
    print(f"conversation {response.conversation_id}{by.get(response.planner or '', '')}{degraded}")
    return 0


def format_table(columns: list[str], rows: list[list[Any]], max_width: int = 40) -> str:
    from okyaku.chat.answer import format_value

    cells = [[format_value(v)[:max_width] for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join([line, rule, *body])


# --- okyaku ai eval ------------------------------------------------------------------------------


def register_eval(ai_sub: Any) -> None:
    evaluate = ai_sub.add_parser(
        "eval",
        help="ask chat generated questions of every family about the organization's own data and report "
        "right / wrong / refused per family and latency per path",
    )
    evaluate.add_argument("--org-key", metavar="KEY", help="an API key of the organization (default: the demo's)")
    evaluate.add_argument("--model", help="the Ollama chat model to use (default: OLLAMA_MODEL)")
    evaluate.add_argument("--no-llm", action="store_true", help="the built-in parser alone (no model calls)")
    evaluate.add_argument("--family", action="append", help="only these families (repeatable)")
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    add_data_dir_argument(evaluate)
    evaluate.set_defaults(func=run_eval)


def run_eval(args: argparse.Namespace) -> int:
    from zoneinfo import ZoneInfo

    from okyaku.chat.evaluation import generate_cases, read_facts, run_cases
    from okyaku.chat.schemas import ChatRequest
    from okyaku.chat.service import ChatService, utc_now
    from okyaku.llm import LLMGateway
    from okyaku.runtime import Runtime
    from okyaku.tenancy import authenticate

    database_url(args.data_dir)
    key = args.org_key or demo_api_key(args.data_dir)
    if not key:
        raise BadRequest("give --org-key (or run `okyaku dev` once, which saves the demo organization's key)")
    settings = get_settings()
    if args.model:
        settings = settings.model_copy(update={"ollama_model": args.model})
    runtime = Runtime(settings)
    gateway = None if args.no_llm else LLMGateway.from_settings(settings)
    try:
        principal = authenticate(runtime.db, f"Bearer {key}")
        zone = ZoneInfo(settings.ai_chat_timezone)
        with runtime.db.organization_scope(principal.organization_id) as session:
            facts = read_facts(session, utc_now().astimezone(zone).date(), zone)
        cases = generate_cases(facts, str(principal.user_id) if principal.user_id else None)
        if args.family:
            cases = [c for c in cases if c.family in args.family]
        service = ChatService(runtime, gateway)

        def ask(question: str, conversation: uuid.UUID | None) -> dict[str, Any]:
            request = ChatRequest(message=question, conversation_id=conversation)
            return service.ask(principal, request).model_dump(mode="json")

        report = run_cases(cases, ask, model="" if args.no_llm else settings.ollama_model)
    finally:
        if gateway is not None:
            gateway.close()
        runtime.db.dispose()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"model: {report.model or '(none: the built-in parser alone)'}; {len(report.outcomes)} questions")
        print(report.table())
    return 0
