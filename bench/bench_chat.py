"""Chat outside the model: the fallback parser's throughput, and plan -> answer latency (parse or
plan, name lookups, the read-only SQL, the templated answer, storing the turn) for each question
family, on an organization of COMPANIES companies, CONTACTS contacts, DEALS deals, ACTIVITIES
activities in the embedded Postgres (``.okyaku/bench-pg``). The planner path is measured against
the scripted OpenAI-compatible server with zero latency, with the two model calls' own time
(measured alone in the same run) taken out.

The demo organization's rows (``okyaku.local.demo``, the size ``okyaku dev`` seeds) measure the
compositional parser: its time per question with the organization's lexicon at hand, loading that
lexicon, and a parsed question's whole answer (lexicon, plan, read-only SQL, templated answer; the
turn not stored) for the plan's example questions.

``python -m bench chat``.
"""

from __future__ import annotations

import random
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text

from bench._database import bench_organization
from bench._timing import stats as _stats
from bench._timing import timed as _timed
from okyaku.chat.fallback import parse_question
from okyaku.chat.planner import TOOLS
from okyaku.chat.schemas import ChatRequest
from okyaku.chat.service import ChatService
from okyaku.config import Settings
from okyaku.crm.pipelines import PipelineService
from okyaku.crm.schemas import PipelineCreate, StageIn
from okyaku.db import Database
from okyaku.db.models import Activity, Company, Contact, Deal
from okyaku.llm import LLMGateway, system, user
from okyaku.predictions.models import CurrentPrediction
from okyaku.runtime import Runtime
from okyaku.tenancy import Principal
from tests.support.openai_server import Reply, ScriptedOpenAIServer

COMPANIES, CONTACTS, DEALS, ACTIVITIES = 1_000, 5_000, 3_000, 20_000
REPEATS = 30
PARSES = 2_000
QUESTIONS = {
    "deals closing this month": "Which deals are closing this month?",
    "hottest leads": "Who are my hottest leads?",
    "activities with <company>": "Summarise activities with <the busiest company>",
    "pipeline value by stage": "What's the pipeline value by stage?",
    "contacts not talked to in 30 days": "Show me contacts we haven't talked to in 30 days",
    "deals won this quarter + total": "Which deals did we win this quarter and their total?",
    "count of contacts by company": "how many contacts by company",
}


def _seed(runtime: Runtime, organization_id: uuid.UUID, now: datetime) -> None:
    rng = random.Random(7)
    with runtime.transaction(organization_id) as session:
        stages = [
            StageIn(name="Qualification", probability=0.1),
            StageIn(name="Proposal", probability=0.4),
            StageIn(name="Negotiation", probability=0.7),
            StageIn(name="Won", probability=1.0, is_won=True),
            StageIn(name="Lost", probability=0.0, is_lost=True),
        ]
        pipeline = PipelineService().create(session, PipelineCreate(name="Sales", stages=stages))
        stage_ids = [s.id for s in pipeline.stages]
        companies = [
            {"id": uuid.uuid4(), "name": f"Company {i}", "country": rng.choice(["Germany", "France", "US"])}
            for i in range(COMPANIES)
        ]
        session.execute(insert(Company), companies)
        contacts = [
            {
                "id": uuid.uuid4(),
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "email": f"c{i}@bench.example",
                "company_id": rng.choice(companies)["id"],
            }
            for i in range(CONTACTS)
        ]
        session.execute(insert(Contact), contacts)
        today = now.date()
        deals = []
        for i in range(DEALS):
            stage = rng.choice(stage_ids)
            closed = stage in stage_ids[3:]
            deals.append(
                {
                    "id": uuid.uuid4(),
                    "name": f"Deal {i}",
                    "pipeline_id": pipeline.id,
                    "stage_id": stage,
                    "amount": rng.randint(1, 100) * 1000,
                    "company_id": rng.choice(companies)["id"],
                    "expected_close_date": today + timedelta(days=rng.randint(-60, 90)),
                    "closed_at": now - timedelta(days=rng.randint(0, 200)) if closed else None,
                }
            )
        session.execute(insert(Deal), deals)
        activities = [
            {
                "type": rng.choice(["call", "email", "meeting", "note"]),
                "subject": f"Touch {i}",
                "contact_id": (c := rng.choice(contacts))["id"],
                "company_id": c["company_id"],
                "occurred_at": now - timedelta(days=rng.randint(0, 120)),
            }
            for i in range(ACTIVITIES)
        ]
        session.execute(insert(Activity), activities)
        session.execute(
            insert(CurrentPrediction),
            [
                {
                    "target": "lead_score",
                    "entity_id": c["id"],
                    "prediction_id": uuid.uuid4(),
                    "score": rng.random() * 100,
                    "input_hash": "0" * 64,
                    "scored_at": now,
                }
                for c in contacts
            ],
        )


DEMO_QUESTIONS = (
    "Show me all deals closing this month",
    "Find contacts I haven't talked to in 30 days",
    "How many open deals are there",
    "deals owned by {owner}",
    "Which deals are in negotiation?",
    "What is our win rate?",
    "average deal size",
    "deals over 100000",
    "Show contacts at {company}",
    "tasks due today",
    "my overdue tasks",
    "leads created this week",
    "top 5 deals by amount",
    "open deals in {country} worth more than 20k closing next quarter",
    "total value of deals won this year by owner",
)


def _demo_rows(bench: Any, runtime: Runtime, now: datetime) -> list[tuple[str, str, float, float]]:
    """Parser and whole-answer timings on a demo organization (created here, deleted after)."""
    from okyaku.chat.lexicon import load_lexicon
    from okyaku.chat.parser import reserved_words
    from okyaku.local.demo import seed_demo_data
    from okyaku.tenancy import create_organization

    org = create_organization(bench.db, f"Chat demo bench {uuid.uuid4().hex[:6]}", "demo@chat-bench.example")
    rows: list[tuple[str, str, float, float]] = []
    try:
        seed_demo_data(runtime, org.organization_id, org.user_id, now=now)
        owner_db = Database(bench.local.owner_url)
        with owner_db.session() as session:  # as autovacuum would after a bulk load
            session.execute(text("ANALYZE"))
        owner_db.dispose()
        with bench.db.organization_scope(org.organization_id) as session:
            owner = session.execute(
                text(
                    "SELECT u.name FROM users u JOIN deals d ON d.owner_id = u.id "
                    "GROUP BY u.name ORDER BY count(*) DESC, u.name LIMIT 1"
                )
            ).scalar_one()
            company, country = session.execute(
                text(
                    "SELECT c.name, c.country FROM companies c JOIN contacts p ON p.company_id = c.id "
                    "GROUP BY c.name, c.country HAVING count(*) > 1 ORDER BY count(*) DESC, c.name LIMIT 1"
                )
            ).one()
        questions = [q.format(owner=owner, company=company, country=country) for q in DEMO_QUESTIONS]
        principal = Principal(organization_id=org.organization_id, user_id=org.user_id, api_key_id=uuid.uuid4())
        service = ChatService(runtime, None, clock=lambda: now)
        today = now.date()
        reserved = reserved_words()
        lexicons = {}
        with bench.db.organization_scope(org.organization_id) as session:
            for question in questions:
                lexicons[question] = load_lexicon(session, question, reserved=reserved)
            load_s = _timed(lambda: [load_lexicon(session, q, reserved=reserved) for q in questions], 10)
        for question in questions:
            parsed = parse_question(question, today=today, lexicon=lexicons[question], me=org.user_id)
            assert parsed.plan is not None, f"the demo bench question is not parsed: {question}"
        parse_s = _timed(
            lambda: [parse_question(q, today=today, lexicon=lexicons[q], me=org.user_id) for q in questions],
            PARSES // len(questions),
        )
        rows.append(
            (
                "demo: compositional parser, per question",
                f"{len(questions)} questions",
                *_stats([s / len(questions) for s in parse_s]),
            )
        )
        rows.append(("demo: lexicon load, per question", "10 rounds", *_stats([s / len(questions) for s in load_s])))

        def answer_only(question: str) -> None:
            state = service._prepare(principal, ChatRequest(message=question))
            for kind, turn in service._turn(state, streaming=False):
                assert kind != "turn" or (turn.mode == "parser" and turn.plan is not None), question

        whole: list[float] = []
        for question in questions:
            answer_only(question)  # warm
            whole += _timed(lambda q=question: answer_only(q), REPEATS)
        rows.append(("demo: parsed question, whole answer (all)", f"{len(whole)} asks", *_stats(whole)))
    finally:
        owner_db = Database(bench.local.owner_url)
        with owner_db.session() as session:
            session.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": org.organization_id})
        owner_db.dispose()
    return rows


def main() -> None:
    now = datetime.now(UTC)
    rows: list[tuple[str, str, float, float]] = []
    with bench_organization("Chat bench", "bench@chat.example") as bench, ScriptedOpenAIServer() as server:
        settings = Settings(database_url=bench.local.app_url, ollama_base_url=server.base_url, llm_max_retries=0)
        runtime = Runtime(settings, db=bench.db)
        org = bench.org
        _seed(runtime, org.organization_id, now)
        owner = Database(bench.local.owner_url)
        with owner.session() as session:  # as autovacuum would after a bulk load
            session.execute(text("ANALYZE"))
        owner.dispose()
        with bench.db.organization_scope(org.organization_id) as session:  # a company with activities
            busiest = session.execute(
                text(
                    "SELECT c.name FROM companies c JOIN activities a ON a.company_id = c.id "
                    "GROUP BY c.name ORDER BY count(*) DESC, c.name LIMIT 1"
                )
            ).scalar_one()
        questions_by_family = {**QUESTIONS, "activities with <company>": f"Summarise activities with {busiest}"}
        principal = Principal(organization_id=org.organization_id, user_id=org.user_id, api_key_id=uuid.uuid4())

        questions = list(questions_by_family.values())
        today = now.date()
        parse_s = _timed(lambda: [parse_question(q, today=today) for q in questions], PARSES // len(questions))
        per_question = [s / len(questions) for s in parse_s]
        rows.append(("fallback parser, per question", f"{PARSES} parses", *_stats(per_question)))

        fallback = ChatService(runtime, None, clock=lambda: now)

        def answer_only(question: str) -> None:  # plan -> rows -> answer, without storing the turn
            state = fallback._prepare(principal, ChatRequest(message=question))
            for _ in fallback._turn(state, streaming=False):
                pass

        stored: list[float] = []
        for family, question in questions_by_family.items():
            fallback.ask(principal, ChatRequest(message=question))  # warm
            samples = _timed(lambda q=question: answer_only(q), REPEATS)
            rows.append((f"fallback plan->answer: {family}", f"{REPEATS} asks", *_stats(samples)))
            stored += _timed(lambda q=question: fallback.ask(principal, ChatRequest(message=q)), REPEATS // 3)
        rows.append(("fallback ask incl. storing the turn (all)", f"{len(stored)} asks", *_stats(stored)))

        rows += _demo_rows(bench, runtime, now)
        llm = LLMGateway.from_settings(settings)
        try:
            planned = ChatService(runtime, llm, clock=lambda: now)
            plan = parse_question(QUESTIONS["deals closing this month"], today=today).plan
            assert plan is not None
            arguments = plan.model_dump(mode="json", exclude_none=True)

            def model_calls() -> None:
                server.script(Reply.tool_call("query_crm", arguments), Reply.text("Here they are."))
                llm.sync.chat_with_tools([system("bench"), user("bench")], TOOLS)
                llm.sync.chat([system("bench"), user("bench")])

            def planned_ask() -> None:  # plan by tool call -> rows -> phrasing, without storing
                server.script(Reply.tool_call("query_crm", arguments), Reply.text("Here they are."))
                state = planned._prepare(principal, ChatRequest(message="what closes this month?"))
                for _ in planned._turn(state, streaming=False):
                    pass

            model_calls(), planned_ask()
            model_s = _timed(model_calls, REPEATS)
            ask_s = _timed(planned_ask, REPEATS)
            model_median = statistics.median(model_s)
            rows.append(("two scripted model calls alone (0 ms)", f"{REPEATS} pairs", *_stats(model_s)))
            rows.append(("planner plan->answer, deals closing (whole)", f"{REPEATS} asks", *_stats(ask_s)))
            rows.append(
                (
                    "planner plan->answer outside the model",
                    f"{REPEATS} asks",
                    *_stats([s - model_median for s in ask_s]),
                )
            )
        finally:
            llm.close()

    print(
        f"{COMPANIES:,} companies, {CONTACTS:,} contacts, {DEALS:,} deals, {ACTIVITIES:,} activities; "
        "plan->answer rows do not store the turn; the 'incl. storing' row does"
    )
    print(f"{'what':<56}{'size':>14}{'median':>12}{'p95':>12}{'ratio':>8}")
    baseline = rows[0][2]
    for what, size, median, p95 in rows:
        print(f"{what:<56}{size:>14}{median * 1000:>10.3f} ms{p95 * 1000:>9.3f} ms{median / baseline:>7.0f}x")
    print(f"fallback parser throughput: {1 / baseline:,.0f} questions/s")


if __name__ == "__main__":
    main()
