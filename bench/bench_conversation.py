"""Conversation intelligence outside the model: what analysing one activity costs around the LLM call.

Against the scripted OpenAI-compatible server with zero latency (its answer quotes the activity, so
verification does real work), on the embedded Postgres in ``.okyaku/bench-pg``: the raw model call
through the gateway (the baseline), the rules floor on one text, the quote check of one answer, and
whole analyses of fresh activities (load, model call, verification, rules, store with proposals, in
two transactions) one by one and through the sweep. Activities per second outside the model =
1 / (time per activity - model call).

``python -m bench conversation``.
"""

from __future__ import annotations

import json
import re
import statistics
import time
from datetime import UTC, datetime
from typing import Any

from bench._database import bench_organization
from bench._timing import ms as _ms
from bench._timing import stats as _stats
from bench._timing import timed as _timed
from okyaku.config import Settings
from okyaku.conversation.quotes import QuoteFinder
from okyaku.conversation.rules import Perspective, extract_rules
from okyaku.conversation.schema import ConversationAnalysis
from okyaku.conversation.service import ConversationService
from okyaku.conversation.verification import verify_quotes
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import ACTIVITY_SPEC, CONTACT_SPEC, ActivityService, RecordService
from okyaku.crm.schemas import ActivityCreate, ContactCreate, DealCreate, PipelineCreate, StageIn
from okyaku.llm import LLMGateway
from okyaku.runtime import Runtime
from tests.support.conversation_corpus import load_corpus
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer

ACTIVITIES = 60
REPEATS = 100


def _answer_for(text: str) -> dict[str, Any]:
    """An analysis a model could give: items quoting the text's sentences, one invented."""
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s) > 3]
    return {
        "summary": "A sales conversation.",
        "key_points": [{"point": s[:80], "quote": s} for s in sentences[:3]],
        "action_items": [
            {"description": s[:80], "owner": "us", "due_date": "2026-12-04", "quote": s} for s in sentences[-2:]
        ]
        + [{"description": "invented", "owner": "us", "quote": "We promised a free year of support"}],
        "risks": [{"risk": "timing", "quote": sentences[0]}],
        "sentiment": {"score": 0.3, "label": "positive", "quotes": sentences[:1]},
    }


def _responder(request: RecordedRequest) -> Reply:
    match = re.search(r"<<<\n(.*)\n>>>", request.messages[-1]["content"], re.S)
    return Reply.json_object(_answer_for(match.group(1) if match else "Nothing."))


def main() -> None:
    texts = load_corpus()
    with (
        bench_organization("Conversation bench", "bench@conversation.example") as bench,
        ScriptedOpenAIServer() as server,
    ):
        settings = Settings(database_url=bench.local.app_url, ollama_base_url=server.base_url, llm_max_retries=0)
        runtime = Runtime(settings, db=bench.db)
        llm = LLMGateway.from_settings(settings)
        server.responder = _responder
        try:
            rows = _measure(runtime, llm, ConversationService(runtime, llm), bench.org.organization_id, texts)
        finally:
            llm.close()
    print(f"scripted LLM with zero latency; {len(texts)} corpus texts; {ACTIVITIES} activities per whole-analysis row")
    print(f"{'what':<52}{'size':>14}{'median':>12}{'p95':>12}{'ratio':>8}")
    baseline = rows[0][2]
    for what, size, median, p95 in rows:
        print(f"{what:<52}{size:>14}{_ms(median):>12}{_ms(p95):>12}{median / baseline:>7.1f}x")


def _measure(
    runtime: Runtime, llm: LLMGateway, service: ConversationService, organization_id: Any, texts: list[Any]
) -> list[tuple[str, str, float, float]]:
    with runtime.transaction(organization_id) as session:
        pipeline = PipelineService().create(
            session, PipelineCreate(name="Sales", stages=[StageIn(name="Open", probability=0.2)])
        )
        contact = RecordService(CONTACT_SPEC).create(session, ContactCreate(first_name="Bench", last_name="Buyer"))
        deal = DealService().create(
            session, DealCreate(name="Bench deal", amount=1000, pipeline_id=pipeline.id, contact_id=contact.id)
        )

    def new_activities(count: int) -> list[Any]:
        ids = []
        with runtime.transaction(organization_id) as session:
            for i in range(count):
                text = texts[i % len(texts)]
                activity = ActivityService(ACTIVITY_SPEC).create(
                    session,
                    ActivityCreate(
                        type=text.type,  # type: ignore[arg-type]
                        direction=text.direction,
                        subject=text.subject,
                        body=text.body + f"\n(ref {i} {time.time_ns()})",
                        occurred_at=text.occurred_at,
                        contact_id=contact.id,
                        deal_id=deal.id,
                    ),
                )
                ids.append(activity.id)
        return ids

    sample = texts[0]
    messages = [{"role": "system", "content": "bench"}, {"role": "user", "content": f"<<<\n{sample.body}\n>>>"}]

    def model_call() -> None:
        llm.sync.chat_structured(messages, ConversationAnalysis)

    answer = ConversationAnalysis.model_validate(_answer_for(sample.body))
    finder = QuoteFinder(sample.body)
    perspective = Perspective.for_activity(sample.type, sample.direction)
    day = datetime(2026, 11, 18, tzinfo=UTC).date()
    model_call()
    model_s = _timed(model_call, REPEATS)
    rules_s = _timed(lambda: [extract_rules(t.body, anchor=day, perspective=perspective) for t in texts], 20)
    rules_s = [s / len(texts) for s in rules_s]
    verify_s = _timed(lambda: verify_quotes(answer, finder), REPEATS)

    one_by_one: list[float] = []
    for activity_id in new_activities(ACTIVITIES):
        started = time.perf_counter()
        outcome = service.analyse_activity(organization_id, activity_id, trigger="event")
        one_by_one.append(time.perf_counter() - started)
        assert outcome == "analysed", outcome
    redelivery = _timed(lambda: service.analyse_activity(organization_id, activity_id, trigger="event"), REPEATS)

    new_activities(ACTIVITIES)
    started = time.perf_counter()
    report = service.sweep(organization_ids=[organization_id])
    sweep_s = (time.perf_counter() - started) / max(report.analysed, 1)
    assert report.analysed == ACTIVITIES, report

    model_median = statistics.median(model_s)
    outside = [s - model_median for s in one_by_one]
    outside_median = statistics.median(outside)
    print(
        f"activities analysed per second outside the model: {1 / outside_median:.0f} "
        f"(one by one; whole analysis incl. the 0 ms model: {1 / statistics.median(one_by_one):.0f}/s; "
        f"sweep: {1 / sweep_s:.0f}/s incl. model)"
    )
    print(json.dumps({"sweep": report.__dict__}))
    return [
        ("raw model call (gateway, scripted, 0 ms)", f"{REPEATS} calls", *_stats(model_s)),
        ("rules floor, one text", f"{len(texts)} texts", *_stats(rules_s)),
        ("quote check of one answer (9 items)", f"{REPEATS} checks", *_stats(verify_s)),
        ("whole analysis of a new activity (event)", f"{ACTIVITIES} activities", *_stats(one_by_one)),
        ("  of which outside the model", f"{ACTIVITIES} activities", *_stats(outside)),
        ("redelivery of an analysed activity (no-op)", f"{REPEATS} calls", *_stats(redelivery)),
        ("sweep, per activity", f"{ACTIVITIES} activities", sweep_s, sweep_s),
    ]


if __name__ == "__main__":
    main()
