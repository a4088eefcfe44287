"""The agent loop's own cost per step: what a run adds around each model call and tool call
(validation, messages, the execution log written to Postgres step by step).

Against the scripted OpenAI-compatible server with zero latency, on the embedded Postgres in
``.okyaku/bench-pg``: a raw tool execution (the baseline), a raw model call through the gateway,
one execution-log write, and whole data_analyst runs of ``STEPS`` read steps plus a final answer.
Overhead per step = (run time - model calls - tool executions) / model turns.

``python -m bench agents``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid

from bench._database import bench_organization
from bench._timing import ms as _ms
from bench._timing import stats as _stats
from bench._timing import timed as _timed
from okyaku.agents.definitions import AGENTS
from okyaku.agents.dispatch import AgentRunMessage
from okyaku.agents.framework import ExecutionLog, ToolContext
from okyaku.agents.schemas import RunRequest
from okyaku.agents.service import AgentsService
from okyaku.agents.tools import ALL_TOOLS
from okyaku.agents.tools.services import ToolServices
from okyaku.config import Settings
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.schemas import DealCreate, PipelineCreate, StageIn
from okyaku.llm import LLMGateway, system, user
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal
from tests.support.openai_server import Reply, ScriptedOpenAIServer

STEPS = 8  # tool-calling turns per run, then a final answer
RUNS = 15
REPEATS = 200


class _Keep:
    def dispatch(self, message: AgentRunMessage) -> None:
        pass


def main() -> None:
    with bench_organization("Agents bench", "bench@agents.example") as bench, ScriptedOpenAIServer() as server:
        local, db, org = bench.local, bench.db, bench.org
        settings = Settings(
            database_url=local.app_url,
            ollama_base_url=server.base_url,
            llm_max_retries=0,
            ai_agent_max_iterations=STEPS + 2,
        )
        runtime = Runtime(settings, db=db)
        llm = LLMGateway.from_settings(settings)
        service = AgentsService(runtime, llm, dispatcher=_Keep())
        try:
            rows = _measure(server, runtime, llm, service, org.organization_id, org.user_id)
        finally:
            llm.close()
    print(f"scripted LLM with zero latency; runs of {STEPS} get_record steps + a final answer; {RUNS} runs")
    print(f"{'what':<44}{'size':>12}{'median':>12}{'p95':>12}{'ratio':>8}")
    baseline = rows[0][2]
    for what, size, median, p95 in rows:
        print(f"{what:<44}{size:>12}{_ms(median):>12}{_ms(p95):>12}{median / baseline:>7.1f}x")


def _measure(
    server: ScriptedOpenAIServer,
    runtime: Runtime,
    llm: LLMGateway,
    service: AgentsService,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
) -> list[tuple[str, str, float, float]]:
    with runtime.transaction(organization_id) as session:
        PipelineService().create(session, PipelineCreate(name="Sales", stages=[StageIn(name="Open", probability=0.2)]))
        deal = DealService().create(session, DealCreate(name="Benchmark deal", amount=1000))
    get_record = ALL_TOOLS["get_record"]
    arguments = {"entity_type": "deal", "id": str(deal.id)}
    tools = [t.llm_tool() for t in AGENTS["data_analyst"].tools]
    loop = asyncio.new_event_loop()
    context = ToolContext(
        runtime=runtime,
        organization_id=organization_id,
        execution_id=uuid.uuid4(),
        agent="data_analyst",
        task="bench",
        requested_by=None,
        services=ToolServices(runtime),
    )

    def raw_tool() -> None:
        loop.run_until_complete(get_record.execute(context, get_record.parse(arguments)))

    def raw_model_call() -> None:
        server.script(Reply.tool_call("get_record", arguments))
        loop.run_until_complete(llm.chat_with_tools([system("bench"), user("bench")], tools))

    principal = Principal(organization_id=organization_id, user_id=user_id, api_key_id=uuid.uuid4())
    execution = service.start_run(principal, "data_analyst", RunRequest(task="bench"))
    log = ExecutionLog(runtime, organization_id, execution.id)
    step = iter(range(10**6))

    def log_write() -> None:
        log.step(next(step), "tool", service.clock(), tool="get_record", arguments=arguments, result={"ok": True})

    for warm in (raw_tool, raw_model_call):
        warm()
    tool_s = _timed(raw_tool, REPEATS)
    model_s = _timed(raw_model_call, REPEATS)
    log_s = _timed(log_write, REPEATS)

    runs: list[float] = []
    for _ in range(RUNS):
        # a grounded final answer: the run ends completed after its grounding check, as in production
        server.script(*[Reply.tool_call("get_record", arguments)] * STEPS, Reply.text("Benchmark deal: 1,000."))
        started = time.perf_counter()
        queued = service.start_run(principal, "data_analyst", RunRequest(task="bench"))
        outcome = service.run(organization_id, queued.id)
        runs.append(time.perf_counter() - started)
        assert outcome is not None and outcome.status == "completed", outcome
    loop.close()

    tool_median, model_median = statistics.median(tool_s), statistics.median(model_s)
    turns = STEPS + 1
    per_turn = [r / turns for r in runs]
    overhead = [(r - turns * model_median - STEPS * tool_median) / turns for r in runs]
    return [
        ("raw tool execution (get_record)", f"{REPEATS} calls", *_stats(tool_s)),
        ("raw model call (gateway, scripted, 0 ms)", f"{REPEATS} calls", *_stats(model_s)),
        ("one execution-log write", f"{REPEATS} writes", *_stats(log_s)),
        ("whole run, per model turn", f"{RUNS} runs", *_stats(per_turn)),
        ("agent overhead per step (outside model+tool)", f"{RUNS} runs", *_stats(overhead)),
    ]


if __name__ == "__main__":
    main()
