"""``okyaku ai eval``: how well chat answers an organization's everyday questions, measured on its
own data.

Questions of every family are generated from the organization's records (a stage, an owner, a
company, a country and an amount threshold are picked from the data), each in several phrasings.
The expected answer of each is computed here from the records read with plain ORM queries —
never through the chat code (no plan, no compiler) — and chat's response is judged against it:
right, wrong (it answered, and the data does not say so), or refused (it said it cannot, or
asked back). Latency is reported per path (parser / llm).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.db.models import Activity, Company, Contact, Deal, Pipeline, PipelineStage, Task, User

Verdict = Literal["right", "wrong", "refused"]
# Names that are also the parser's own words ("Open" as a stage) are not picked as a question's name.
_WORDS = frozenset(
    (
        "open",
        "won",
        "lost",
        "closed",
        "new",
        "done",
        "overdue",
        "lead",
        "leads",
        "deal",
        "deals",
        "contact",
        "contacts",
        "company",
        "companies",
        "task",
        "tasks",
        "stage",
        "pipeline",
        "owner",
    )
)


# --- the organization's records, read plainly ----------------------------------------------------


@dataclass(frozen=True)
class DealRow:
    id: str
    name: str
    amount: float | None
    currency: str
    status: str  # open | won | lost, from the stage's flags
    stage: str
    pipeline: str
    owner_id: str | None
    company_id: str | None
    expected_close: date | None
    closed_on: date | None
    created_on: date


@dataclass
class Facts:
    today: date
    deals: list[DealRow]
    contacts: list[tuple[str, str, str | None, str, date]]  # id, name, company id, lifecycle stage, created
    companies: dict[str, tuple[str, str | None]]  # id -> (name, country)
    activities: list[tuple[str, str, date, str | None]]  # id, type, day, contact id
    tasks: list[tuple[str, str, date | None, str | None]]  # id, status, due day, assignee id
    users: dict[str, str]  # id -> name
    pipelines: list[str]


def _day(moment: datetime | None, zone: ZoneInfo) -> date | None:
    return None if moment is None else moment.astimezone(zone).date()


def read_facts(session: Session, today: date, zone: ZoneInfo) -> Facts:
    """The records the expected answers are computed from (``session`` is scoped to the organization)."""
    stages = {s.id: s for s in session.scalars(select(PipelineStage))}
    pipelines = {p.id: p.name for p in session.scalars(select(Pipeline))}
    deals = []
    for d in session.scalars(select(Deal)).unique():
        stage = stages[d.stage_id]
        deals.append(
            DealRow(
                str(d.id),
                d.name,
                float(d.amount) if d.amount is not None else None,
                d.currency,
                "won" if stage.is_won else "lost" if stage.is_lost else "open",
                stage.name,
                pipelines[d.pipeline_id],
                str(d.owner_id) if d.owner_id else None,
                str(d.company_id) if d.company_id else None,
                d.expected_close_date,
                _day(d.closed_at, zone),
                _day(d.created_at, zone) or today,
            )
        )
    contacts = [
        (
            str(c.id),
            " ".join(p for p in (c.first_name, c.last_name) if p) or (c.email or ""),
            str(c.company_id) if c.company_id else None,
            c.lifecycle_stage,
            _day(c.created_at, zone) or today,
        )
        for c in session.scalars(select(Contact))
    ]
    companies = {str(c.id): (c.name, c.country) for c in session.scalars(select(Company))}
    activities = [
        (str(a.id), a.type, _day(a.occurred_at, zone) or today, str(a.contact_id) if a.contact_id else None)
        for a in session.scalars(select(Activity))
    ]
    tasks = [
        (str(t.id), t.status, _day(t.due_date, zone), str(t.assignee_id) if t.assignee_id else None)
        for t in session.scalars(select(Task))
    ]
    users = {str(u.id): u.name for u in session.scalars(select(User).where(User.deactivated_at.is_(None)))}
    return Facts(today, deals, contacts, companies, activities, tasks, users, sorted(set(pipelines.values())))


# --- expected answers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    kind: Literal["records", "count", "amount", "groups", "win_rate", "action"]
    entity_type: str = ""
    ids: frozenset[str] = frozenset()
    number: float = 0.0
    by_currency: tuple[tuple[str, float], ...] = ()  # amounts when deals use several currencies
    groups: tuple[tuple[str, float], ...] = ()
    won: int = 0
    lost: int = 0
    top: bool = False  # the first N records of an order: exactly these rows


@dataclass(frozen=True)
class Case:
    family: str
    questions: tuple[str, ...]  # a conversation; the last question is judged
    expected: Expected


def _records(entity_type: str, ids: Iterable[str]) -> Expected:
    return Expected("records", entity_type, frozenset(ids))


def _count(n: int) -> Expected:
    return Expected("count", number=float(n))


def _amount(deals: list[DealRow], function: Literal["sum", "avg"], mixed: bool) -> Expected:
    per: dict[str, list[float]] = defaultdict(list)
    for d in deals:
        if d.amount is not None:
            per[d.currency if mixed else ""].append(d.amount)
    if function == "sum":
        values = {k: sum(v) for k, v in per.items()}
    else:
        values = {k: sum(v) / len(v) for k, v in per.items() if v}
    if not mixed:
        return Expected("amount", number=values.get("", 0.0))
    return Expected("amount", by_currency=tuple(sorted(values.items())))


def _month_start(day: date, shift: int = 0) -> date:
    index = day.year * 12 + day.month - 1 + shift
    return date(index // 12, index % 12 + 1, 1)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _within(day: date | None, start: date, end: date) -> bool:
    return day is not None and start <= day < end


def _pick(counter: Counter[str], avoid: Callable[[str], bool] = lambda _: False) -> str | None:
    for value, _ in counter.most_common():
        if value and not avoid(value):
            return value
    return None


def _money(amount: float) -> str:
    return f"{int(amount):,}"


def generate_cases(facts: Facts, me: str | None) -> list[Case]:
    """Questions of every family, with their expected answers, from ``facts``."""
    today = facts.today
    cases: list[Case] = []
    mixed = len({d.currency for d in facts.deals}) > 1

    def add(family: str, questions: Iterable[str], expected: Expected) -> None:
        cases.extend(Case(family, (q,), expected) for q in questions)

    deals = facts.deals
    open_deals = [d for d in deals if d.status == "open"]
    contact_ids = [c[0] for c in facts.contacts]
    add(
        "count",
        ["how many deals do we have", "number of deals", "how many opportunities are there"],
        _count(len(deals)),
    )
    add(
        "count",
        ["how many contacts do we have", "count of contacts", "total number of contacts"],
        _count(len(contact_ids)),
    )
    add("count", ["how many companies are there", "number of accounts"], _count(len(facts.companies)))
    add("count", ["how many tasks do we have", "count the tasks"], _count(len(facts.tasks)))
    add(
        "open deals",
        [
            "How many open deals are there",
            "how many deals are open",
            "number of open deals",
            "how many open opportunities do we have",
            "count of open deals",
            "how many deals are still open?",
            "open deal count",
        ],
        _count(len(open_deals)),
    )
    month, next_month = _month_start(today), _month_start(today, 1)
    add(
        "deals closing this month",
        [
            "Show me all deals closing this month",
            "which deals are closing this month?",
            "deals expected to close this month",
            "list the opportunities closing this month",
            "what deals close this month",
            "which opportunities will close this month?",
            "deals with an expected close date this month",
        ],
        _records("deal", (d.id for d in open_deals if _within(d.expected_close, month, next_month))),
    )
    stage = _pick(
        Counter(d.stage for d in open_deals),
        lambda s: s.lower() in _WORDS or len({d.stage for d in deals if d.stage.lower() == s.lower()}) > 1,
    )
    if stage:
        in_stage = [d.id for d in deals if d.stage.lower() == stage.lower()]
        add(
            "deals in a stage",
            [
                f"Which deals are in {stage.lower()}?",
                f"deals in {stage}",
                f"show me the deals in {stage}",
                f"list {stage} deals",
                f"deals in the {stage} stage",
                f"what deals do we have in {stage}?",
                f"deals at the {stage} stage",
            ],
            _records("deal", in_stage),
        )
        add(
            "deals in a stage",
            [f"how many deals are in {stage}", f"number of deals in {stage.lower()}"],
            _count(len(in_stage)),
        )
    names = Counter(facts.users.get(d.owner_id or "", "") for d in deals)
    first_names = Counter(n.split()[0].lower() for n in facts.users.values() if n)
    owner = _pick(names, lambda n: not n or Counter(facts.users.values())[n] > 1)
    if owner:
        owned = [d.id for d in deals if facts.users.get(d.owner_id or "") == owner]
        questions = [f"deals owned by {owner}", f"{owner}'s deals", f"show deals assigned to {owner}"]
        first = owner.split()[0]
        if first_names[first.lower()] == 1 and len(owner.split()) > 1:
            questions.append(f"deals owned by {first}")
        add("deals by owner", questions, _records("deal", owned))
    won = [d for d in deals if d.status == "won"]
    lost = [d for d in deals if d.status == "lost"]
    add(
        "win rate",
        [
            "What is our win rate?",
            "win rate",
            "what's our close rate",
            "show me our win rate",
            "what percentage of deals do we win?",
            "how often do we win deals?",
        ],
        Expected("win_rate", won=len(won), lost=len(lost)),
    )
    year = date(today.year, 1, 1)
    next_year = date(today.year + 1, 1, 1)
    add(
        "win rate",
        ["win rate this year", "what is our win rate this year"],
        Expected(
            "win_rate",
            won=sum(_within(d.closed_on, year, next_year) for d in won),
            lost=sum(_within(d.closed_on, year, next_year) for d in lost),
        ),
    )
    add(
        "average deal size",
        [
            "average deal size",
            "what is the average deal value",
            "average amount of deals",
            "mean deal amount",
            "what's the typical deal size?",
            "how big is an average deal?",
        ],
        _amount(deals, "avg", mixed),
    )
    amounts = sorted(d.amount for d in deals if d.amount is not None)
    if amounts:
        middle = amounts[len(amounts) // 2]
        magnitude = 10 ** max(len(str(int(middle))) - 2, 0)
        threshold = max(int(middle // magnitude) * magnitude, 1)
        above = [d.id for d in deals if d.amount is not None and d.amount > threshold]
        short = f"{threshold // 1000}k" if threshold % 1000 == 0 and threshold >= 1000 else str(threshold)
        add(
            "deals over an amount",
            [
                f"deals over {threshold}",
                f"deals worth more than {short}",
                f"show me deals above {_money(threshold)}",
                f"opportunities with an amount greater than {threshold}",
            ],
            _records("deal", above),
        )
        add(
            "deals over an amount",
            [f"how many deals are over {short}"],
            _count(len(above)),
        )
    company_names = Counter(name.lower() for name, _ in facts.companies.values())
    contact_names = {c[1].lower() for c in facts.contacts}
    by_company = Counter(c[2] for c in facts.contacts if c[2])
    company_id = _pick(
        Counter({k: v for k, v in by_company.items() if k}),
        lambda cid: (
            company_names[facts.companies[cid][0].lower()] > 1 or facts.companies[cid][0].lower() in contact_names
        ),
    )
    if company_id:
        company = facts.companies[company_id][0]
        at = [c[0] for c in facts.contacts if c[2] == company_id]
        add(
            "contacts at a company",
            [
                f"Show contacts at {company}",
                f"contacts at {company}",
                f"who are our contacts at {company}",
                f"people at {company}",
                f"list the contacts from {company}",
                f"who works at {company}?",
                f"{company} contacts",
            ],
            _records("contact", at),
        )
        add("contacts at a company", [f"how many contacts at {company}"], _count(len(at)))
    countries = Counter(country for _, country in facts.companies.values() if country)
    country = _pick(countries)
    if country:
        in_country = {cid for cid, (_, c) in facts.companies.items() if c == country}
        add(
            "records in a country",
            [f"contacts in {country}", f"show me contacts from {country}"],
            _records("contact", (c[0] for c in facts.contacts if c[2] in in_country)),
        )
        add(
            "records in a country",
            [f"how many contacts are in {country}"],
            _count(sum(1 for c in facts.contacts if c[2] in in_country)),
        )
        add("records in a country", [f"companies in {country}"], _records("company", in_country))
        add(
            "records in a country",
            [f"open deals in {country}"],
            _records("deal", (d.id for d in open_deals if d.company_id in in_country)),
        )
    open_tasks = [t for t in facts.tasks if t[1] in ("open", "in_progress")]
    add(
        "tasks due today",
        [
            "tasks due today",
            "which tasks are due today",
            "show me tasks due today",
            "what tasks are due today",
            "what's due today?",
            "today's tasks",
        ],
        _records("task", (t[0] for t in open_tasks if t[2] == today)),
    )
    if me is not None:
        add(
            "my overdue tasks",
            [
                "my overdue tasks",
                "show my overdue tasks",
                "overdue tasks assigned to me",
                "what overdue tasks do I have",
            ],
            _records("task", (t[0] for t in open_tasks if t[3] == me and t[2] is not None and t[2] < today)),
        )
    monday = today - timedelta(days=today.weekday())
    leads = [c for c in facts.contacts if c[3] == "lead" and _within(c[4], monday, monday + timedelta(days=7))]
    add(
        "leads created this week",
        ["leads created this week", "show leads created this week", "which leads were added this week"],
        _records("contact", (c[0] for c in leads)),
    )
    add("leads created this week", ["how many leads were created this week"], _count(len(leads)))
    ranked = sorted((d for d in deals if d.amount is not None), key=lambda d: d.amount or 0, reverse=True)
    if len(ranked) > 5 and ranked[4].amount != ranked[5].amount:
        add(
            "top deals",
            ["top 5 deals by amount", "the 5 biggest deals", "5 largest deals", "top five deals by value"],
            Expected("records", "deal", frozenset(d.id for d in ranked[:5]), top=True),
        )
    since = today - timedelta(days=29)
    talked = {a[3] for a in facts.activities if a[3] and a[2] >= since}
    add(
        "contacts not talked to",
        [
            "Find contacts I haven't talked to in 30 days",
            "contacts we haven't talked to in 30 days",
            "contacts with no activity in the last 30 days",
            "show contacts not contacted in 30 days",
            "who haven't we spoken to in the last 30 days?",
            "contacts we have not reached out to in a month",
        ],
        _records("contact", (c for c in contact_ids if c not in talked)),
    )
    quarter = _quarter_start(today)
    next_quarter = _month_start(quarter, 3)
    add(
        "deals won or lost",
        ["deals won this quarter", "which deals did we win this quarter", "won deals this quarter"],
        _records("deal", (d.id for d in won if _within(d.closed_on, quarter, next_quarter))),
    )
    add(
        "deals won or lost",
        ["deals lost this year", "lost deals this year"],
        _records("deal", (d.id for d in lost if _within(d.closed_on, year, next_year))),
    )
    add(
        "amount won",
        ["total value of deals won this year", "how much did we win this year", "total amount of won deals this year"],
        _amount([d for d in won if _within(d.closed_on, year, next_year)], "sum", mixed),
    )
    add(
        "pipeline value",
        ["What's the pipeline value?", "how much is the open pipeline worth", "total value of open deals"],
        _amount(open_deals, "sum", mixed),
    )
    by_stage = Counter(d.stage for d in deals)
    add(
        "deals by stage",
        [
            "count of deals by stage",
            "how many deals per stage",
            "deals by stage",
            "number of deals in each stage",
            "break down deals by stage",
            "how are deals distributed across stages?",
        ],
        Expected("groups", groups=tuple(sorted((k, float(v)) for k, v in by_stage.items()))),
    )
    last_week = monday - timedelta(days=7)
    for kind, word in (("call", "calls"), ("meeting", "meetings")):
        add(
            "activities in a period",
            [f"how many {word} last week", f"number of {word} last week"],
            _count(sum(1 for a in facts.activities if a[1] == kind and last_week <= a[2] < monday)),
        )
    add(
        "activities in a period",
        ["emails in the last 30 days"],
        _records("activity", (a[0] for a in facts.activities if a[1] == "email" and a[2] >= since)),
    )
    if len(facts.pipelines) > 1:
        pipeline = _pick(Counter(d.pipeline for d in deals), lambda p: p.lower() in _WORDS)
        if pipeline:
            inside = [d.id for d in deals if d.pipeline == pipeline]
            add(
                "deals in a pipeline",
                [f"deals in the {pipeline} pipeline", f"show {pipeline} pipeline deals"],
                _records("deal", inside),
            )
            add("deals in a pipeline", [f"how many deals are in the {pipeline} pipeline"], _count(len(inside)))
    closing = [d for d in open_deals if _within(d.expected_close, month, next_month)]
    cases.append(Case("follow-ups", ("deals closing this month", "how many of them"), _count(len(closing))))
    created_last_month = [d for d in deals if _within(d.created_on, _month_start(today, -1), month)]
    cases.append(
        Case(
            "follow-ups",
            ("how many deals were created this month", "and last month?"),
            _count(len(created_last_month)),
        )
    )
    if stage and owner:
        both = [d.id for d in deals if d.stage.lower() == stage.lower() and facts.users.get(d.owner_id or "") == owner]
        cases.append(
            Case(
                "follow-ups",
                (f"which deals are in {stage}", f"only the ones owned by {owner}"),
                _records("deal", both),
            )
        )
    cases.append(
        Case("follow-ups", ("open deals", "sort them by amount"), _records("deal", (d.id for d in open_deals)))
    )
    first_names_of_contacts = Counter(c[1].split()[0] for c in facts.contacts if c[1])
    person = _pick(first_names_of_contacts, lambda n: n.lower() in _WORDS or not n[:1].isupper())
    if person:
        add("create a task", [f"create a task to call {person} next Tuesday"], Expected("action"))
    return cases


# --- judging a response --------------------------------------------------------------------------


def _numbers(row: list[Any]) -> list[float]:
    return [float(v) for v in row if isinstance(v, (int, float, Decimal)) and not isinstance(v, bool)]


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= max(0.011, abs(b) * 1e-6)


def judge(expected: Expected, response: dict[str, Any]) -> tuple[Verdict, str]:
    """Whether a chat response (as JSON) gives the expected answer."""
    if expected.kind == "action":
        if response.get("actions"):
            return "right", "proposed"
        if "which one" in str(response.get("answer", "")).lower():
            return "right", "asked which one"
        return ("wrong", "answered with data") if response.get("plan") else ("refused", "no action")
    if response.get("plan") is None:
        return "refused", str(response.get("answer", ""))[:80]
    data = response.get("data") or {}
    rows: list[list[Any]] = data.get("rows") or []
    columns: list[str] = data.get("columns") or []
    total = data.get("total")
    if expected.kind == "records":
        cited = {c["entity_id"] for c in response.get("citations", []) if c["entity_type"] == expected.entity_type}
        if total is None:
            return "wrong", "not a listing"
        if expected.top:
            shown = {str(row_id) for row_id in cited}
            ok = shown == expected.ids and len(rows) == len(expected.ids)
            return ("right", "") if ok else ("wrong", f"{len(rows)} rows, not the expected first {len(expected.ids)}")
        if total != len(expected.ids):
            return "wrong", f"{total} records, expected {len(expected.ids)}"
        complete = len(rows) >= total
        if (complete and cited != expected.ids) or not cited <= expected.ids:
            return "wrong", "other records"
        return "right", ""
    if expected.kind == "count":
        if total is not None:
            return ("right", "") if total == expected.number else ("wrong", f"{total} listed")
        if len(rows) == 1 and _numbers(rows[0]) and _close(_numbers(rows[0])[0], expected.number):
            return "right", ""
        return "wrong", f"rows {rows[:3]}"
    if expected.kind == "amount":
        if expected.by_currency:
            got: dict[str, float] = {}
            for row in rows:
                codes = [v for v in row if isinstance(v, str) and len(v) == 3 and v.isupper()]
                numbers = _numbers(row)
                if len(codes) == 1 and numbers:
                    got[codes[0]] = numbers[0]
            want = dict(expected.by_currency)
            ok = set(got) == set(want) and all(_close(got[k], want[k]) for k in want)
            return ("right", "") if ok else ("wrong", f"{got} vs {want}")
        if len(rows) == 1 and _numbers(rows[0]) and _close(_numbers(rows[0])[0], expected.number):
            return "right", ""
        if not rows and expected.number == 0:
            return "right", ""
        totals = data.get("totals") or {}
        if len(totals) == 1 and _close(float(next(iter(totals.values())) or 0), expected.number):
            return "right", ""
        return "wrong", f"rows {rows[:3]}, expected {expected.number}"
    if expected.kind == "groups":
        grouped: dict[str, float] = defaultdict(float)
        for row in rows:
            if row and len(_numbers(row)) >= 1:
                grouped[str(row[0])] += _numbers(row)[0]
        ok = dict(grouped) == dict(expected.groups)
        return ("right", "") if ok else ("wrong", f"{dict(grouped)} vs {dict(expected.groups)}")
    # win rate: counts of won and lost deals per status
    tally: dict[str, float] = {}
    if "status" in columns:
        at = columns.index("status")
        for row in rows:
            numbers = _numbers(row)
            if numbers:
                tally[str(row[at])] = numbers[0]
    ok = (
        tally.get("won", 0) == expected.won
        and tally.get("lost", 0) == expected.lost
        and (expected.won + expected.lost) > 0
    )
    if expected.won + expected.lost == 0:
        ok = not rows
    return ("right", "") if ok else ("wrong", f"{tally} vs won {expected.won}, lost {expected.lost}")


# --- running -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    verdict: Verdict
    planner: str | None
    seconds: float
    answer: str
    detail: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    model: str = ""

    def families(self) -> dict[str, Counter[str]]:
        out: dict[str, Counter[str]] = {}
        for outcome in self.outcomes:
            out.setdefault(outcome.case.family, Counter())[outcome.verdict] += 1
        return out

    def totals(self) -> Counter[str]:
        return Counter(o.verdict for o in self.outcomes)

    def latency(self) -> dict[str, tuple[int, float, float]]:
        """Per path (parser, llm, none): how many, p50 and p95 seconds."""
        by: dict[str, list[float]] = defaultdict(list)
        for outcome in self.outcomes:
            by[outcome.planner or "none"].append(outcome.seconds)
        out = {}
        for path, samples in sorted(by.items()):
            ordered = sorted(samples)
            p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
            out[path] = (len(ordered), statistics.median(ordered), p95)
        return out

    def as_dict(self) -> dict[str, Any]:
        totals = self.totals()
        return {
            "model": self.model,
            "totals": dict(totals),
            "families": {name: dict(counts) for name, counts in self.families().items()},
            "latency_ms": {
                path: {"n": n, "p50": round(p50 * 1000, 2), "p95": round(p95 * 1000, 2)}
                for path, (n, p50, p95) in self.latency().items()
            },
            "questions": [
                {
                    "family": o.case.family,
                    "question": " → ".join(o.case.questions),
                    "verdict": o.verdict,
                    "planner": o.planner,
                    "ms": round(o.seconds * 1000, 2),
                    "detail": o.detail,
                }
                for o in self.outcomes
            ],
        }

    def table(self) -> str:
        lines = [f"{'family':<28}{'right':>7}{'wrong':>7}{'refused':>9}"]
        for name, counts in self.families().items():
            lines.append(f"{name:<28}{counts['right']:>7}{counts['wrong']:>7}{counts['refused']:>9}")
        totals = self.totals()
        lines.append(f"{'all':<28}{totals['right']:>7}{totals['wrong']:>7}{totals['refused']:>9}")
        lines.append("")
        lines.append(f"{'path':<10}{'questions':>10}{'p50':>12}{'p95':>12}")
        for path, (n, p50, p95) in self.latency().items():
            lines.append(f"{path:<10}{n:>10}{p50 * 1000:>9.1f} ms{p95 * 1000:>9.1f} ms")
        wrong = [o for o in self.outcomes if o.verdict == "wrong"]
        if wrong:
            lines.append("")
            lines.append("wrong answers:")
            lines += [f"- {' → '.join(o.case.questions)}: {o.detail}" for o in wrong]
        return "\n".join(lines)


Ask = Callable[[str, uuid.UUID | None], dict[str, Any]]


def run_cases(cases: list[Case], ask: Ask, *, model: str = "") -> Report:
    """Ask each case's questions (a conversation for follow-ups) and judge the last answer.
    ``ask(question, conversation_id)`` returns the chat response as JSON."""
    report = Report(model=model)
    for case in cases:
        conversation: uuid.UUID | None = None
        response: dict[str, Any] = {}
        seconds = 0.0
        for question in case.questions:
            started = time.perf_counter()
            response = ask(question, conversation)
            seconds = time.perf_counter() - started
            conversation = uuid.UUID(str(response["conversation_id"]))
        verdict, detail = judge(case.expected, response)
        report.outcomes.append(
            Outcome(case, verdict, response.get("planner"), seconds, str(response.get("answer", "")), detail)
        )
    return report


__all__ = ["Case", "Expected", "Facts", "Report", "generate_cases", "judge", "read_facts", "run_cases"]
