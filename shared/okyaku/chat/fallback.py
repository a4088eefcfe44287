"""The deterministic parser: the common questions → the same typed plan, without the LLM.

Each family is a whole-question pattern: a question is answered only when all of it is
understood (no leftover words that might change its meaning). Anything else gets
:data:`CANNOT` — never a guess. Names (a company, "only those in Germany") are not resolved
here: the parser says which records or fields might hold them (:class:`Lookup`) and the service
looks them up in the caller's organization, asking back when more than one fits.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from okyaku.chat import parser
from okyaku.chat import vocabulary as v
from okyaku.chat.catalogue import CATALOGUE, resolve_field
from okyaku.chat.lexicon import Lexicon
from okyaku.chat.periods import describe_period, number, parse_period, span_days
from okyaku.chat.plan import Aggregation, DateRange, Filter, GroupBy, OrderBy, QueryPlan, RelativeDate

CANNOT = "I can't answer that without the language model."


@dataclass(frozen=True)
class Lookup:
    """A name to find in the organization's data. Each target is a field path on the plan's
    entity whose value may equal ``value``; ``record_of`` targets match the related record's
    label and filter on its id (``account_id`` ← a company's name)."""

    value: str
    targets: tuple[str, ...] = ()
    record_targets: tuple[tuple[str, str], ...] = ()  # (catalogue entity, plan field to filter by id)


@dataclass(frozen=True)
class TaskRequest:
    title: str
    due: RelativeDate | DateRange | None
    due_phrase: str | None
    person: str | None  # a contact's name as written


@dataclass
class Parsed:
    outcome: Literal["plan", "task", "cannot"]
    plan: QueryPlan | None = None
    family: str = ""
    subject: str = ""  # what the answer is about, e.g. "open deals closing this month"
    lookups: list[Lookup] = field(default_factory=list)
    task: TaskRequest | None = None
    message: str = CANNOT


def normalise(question: str) -> str:
    text = question.replace("\u2019", "'").replace("\u2018", "'").strip().lower()
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"^(please |can you |could you |would you |hey |ok |okay )+", "", text)
    text = re.sub(r"[?.!]+$", "", text).strip()
    text = re.sub(r"\s*,?\s*please$", "", text)
    return text


def _entity(word: str) -> str | None:
    for entity, words in v.ENTITY_WORDS.items():
        if word in words:
            return entity
    return None


def field_for(entity: str, phrase: str) -> str | None:
    """A field of ``entity`` that ``phrase`` names exactly (its name, or a listed synonym)."""
    phrase = phrase.strip().removeprefix("the ").removeprefix("their ").removeprefix("its ")
    words = v.FIELD_WORDS.get(entity, {})
    if phrase in words:
        return words[phrase]
    candidate = phrase.replace(" ", "_")
    spec = CATALOGUE[entity]
    if candidate in spec.fields and candidate != "id":
        return candidate
    if phrase.endswith("s") and phrase[:-1] in words:
        return words[phrase[:-1]]
    return None


def _period_or_none(phrase: str | None, today: date) -> tuple[RelativeDate | DateRange | None, bool]:
    """The period, and whether the phrase was understood (a missing phrase is understood)."""
    if not phrase:
        return None, True
    period = parse_period(phrase, today)
    return period, period is not None


# --- the families --------------------------------------------------------------------------------


def _closing(text: str, today: date) -> Parsed | None:
    match = v.CLOSING.fullmatch(text)
    if not match:
        return None
    period, ok = _period_or_none(match.group("period"), today)
    if not ok or period is None:
        return Parsed("cannot")
    plan = QueryPlan(
        entity="deals",
        filters=[
            Filter(field="status", op="eq", value="open"),
            Filter(field="expected_close_date", op="within", value=period),
        ],
        fields=["name", "company.name", "stage.name", "amount", "expected_close_date"],
        totals=[Aggregation(function="sum", field="amount", alias="total_amount")],
        order_by=[OrderBy(field="expected_close_date"), OrderBy(field="amount", direction="desc")],
        limit=50,
    )
    return Parsed("plan", plan, "deals_closing", f"open deals closing {describe_period(match.group('period'))}")


def _won_lost(text: str, today: date) -> Parsed | None:
    match = v.WON_LOST.fullmatch(text) or v.WON_LOST_2.fullmatch(text)
    if not match:
        return None
    outcome = "won" if match.group("outcome") in ("won", "win", "closed won") else "lost"
    period, ok = _period_or_none(match.group("period"), today)
    if not ok:
        return Parsed("cannot")
    filters = [Filter(field="status", op="eq", value=outcome)]
    subject = f"deals {outcome}"
    if period is not None:
        filters.append(Filter(field="closed_at", op="within", value=period))
        subject += f" {describe_period(match.group('period') or '')}"
    plan = QueryPlan(
        entity="deals",
        filters=filters,
        fields=["name", "company.name", "amount", "closed_at", *(["lost_reason"] if outcome == "lost" else [])],
        totals=[Aggregation(function="sum", field="amount", alias="total_amount")],
        order_by=[OrderBy(field="closed_at", direction="desc")],
        limit=50,
    )
    return Parsed("plan", plan, f"deals_{outcome}", subject)


def _hottest(text: str) -> Parsed | None:
    match = v.HOTTEST.fullmatch(text)
    if not match:
        return None
    raw = match.group("n1") or match.group("n2")
    limit = number(raw) if raw else 10
    plan = QueryPlan(
        entity="contacts",
        filters=[Filter(field="lead_score", op="not_null")],
        fields=["name", "company.name", "lead_score", "lifecycle_stage"],
        order_by=[OrderBy(field="lead_score", direction="desc")],
        limit=limit,
    )
    return Parsed("plan", plan, "hottest_leads", "leads by current lead score")


_ACTIVITY_TYPES = {"calls": "call", "meetings": "meeting", "emails": "email", "notes": "note"}


def _activities(text: str, original: str, context_company: bool) -> Parsed | None:
    match = v.ACTIVITIES.fullmatch(text)
    if not match:
        return None
    kind = match.group("kind")
    filters: list[Filter] = []
    if kind in _ACTIVITY_TYPES:
        filters.append(Filter(field="type", op="eq", value=_ACTIVITY_TYPES[kind]))
    plan = QueryPlan(
        entity="activities",
        filters=filters,
        fields=["occurred_at", "type", "subject", "contact.name"],
        totals=[
            Aggregation(function="min", field="occurred_at", alias="first_at"),
            Aggregation(function="max", field="occurred_at", alias="latest_at"),
        ],
        order_by=[OrderBy(field="occurred_at", direction="desc")],
        limit=10,
    )
    name = match.group("name")
    label = kind if kind in _ACTIVITY_TYPES else "activities"
    if name is None:
        if not context_company:
            return Parsed("cannot", message='Which company? Ask, for example, "summarise activities with Acme".')
        return Parsed("plan", plan, "activities_with", label, lookups=[Lookup("@context")])
    start = text.rfind(name)
    written = original.strip().rstrip("?.!")[-(len(text) - start) :] if start >= 0 else name
    written = re.sub(r"^(the|our) ", "", written.strip(), flags=re.IGNORECASE)
    lookup = Lookup(written, record_targets=(("companies", "account_id"), ("contacts", "contact.id")))
    return Parsed("plan", plan, "activities_with", label, lookups=[lookup])


def _pipeline(text: str) -> Parsed | None:
    match = v.PIPELINE.fullmatch(text)
    if not match or not (
        text.startswith(("what", "show", "give", "the", "our", "my", "total", "open", "pipeline", "value"))
    ):
        return None
    group = match.group("group")
    aggregations = [
        Aggregation(function="sum", field="amount", alias="value"),
        Aggregation(function="count", alias="deals"),
    ]
    group_by = [GroupBy(field=v.FIELD_WORDS["deals"][group])] if group else []
    plan = QueryPlan(
        entity="deals",
        filters=[Filter(field="status", op="eq", value="open")],
        aggregations=aggregations,
        group_by=group_by,
        order_by=[OrderBy(field="value", direction="desc")] if group else [],
    )
    return Parsed("plan", plan, "pipeline_value", f"open pipeline value{' by ' + group if group else ''}")


def _not_talked(text: str, today: date) -> Parsed | None:
    match = v.NOT_TALKED.fullmatch(text)
    if not match:
        return None
    if match.group("entity") in ("leads", "customers"):
        return None  # lifecycle stages: the compositional parser filters by them
    entity = "companies" if match.group("entity") in ("companies", "accounts") else "contacts"
    days = span_days(number(match.group("n")), match.group("unit"), today)
    fields = (
        ["name", "email", "company.name", "last_activity_at"]
        if entity == "contacts"
        else ["name", "country", "last_activity_at"]
    )
    plan = QueryPlan(
        entity=entity,
        filters=[
            Filter(
                field="last_activity_at",
                op="lt",
                value=RelativeDate(relative="last_n_days", n=days),
                include_null=True,
            )
        ],
        fields=fields,
        order_by=[OrderBy(field="last_activity_at", direction="asc")],
        limit=50,
    )
    return Parsed("plan", plan, "not_contacted", f"{entity} with no activity in the last {days} days")


def _count_by(text: str, today: date) -> Parsed | None:
    match = v.COUNT_BY.fullmatch(text)
    if not match:
        return None
    words = match.group("entity")
    qualifier: Filter | None = None
    for status in ("open", "won", "lost", "lead", "leads", "customer", "customers"):
        if words == status:
            return None  # statuses and lifecycle stages: the compositional parser filters by them
    entity = _entity(words)
    if entity is None:
        return Parsed("cannot")
    group_phrase = match.group("group")
    period, ok = _period_or_none(match.group("period"), today)
    if not ok:
        return Parsed("cannot")
    filters = [qualifier] if qualifier else []
    if period is not None:
        filters.append(Filter(field="created_at", op="within", value=period))
    if group_phrase is None:
        plan = QueryPlan(entity=entity, filters=filters, aggregations=[Aggregation(function="count", alias="count")])
        return Parsed("plan", plan, "count", entity)
    date_part = None
    part = re.fullmatch(r"(day|week|month|quarter|year)(?: created)?", group_phrase.strip())
    if part:
        field_path: str | None = "created_at"
        date_part = part.group(1)
    else:
        field_path = field_for(entity, group_phrase)
    if field_path is None:
        return Parsed("cannot")
    plan = QueryPlan(
        entity=entity,
        filters=filters,
        aggregations=[Aggregation(function="count", alias="count")],
        group_by=[GroupBy(field=field_path, date_part=date_part)],
        order_by=[OrderBy(field="count", direction="desc")] if not date_part else [],
    )
    if date_part:
        plan.order_by = [OrderBy(field=plan.group_by[0].name)]
    return Parsed("plan", plan, "count_by", f"{entity} by {group_phrase.strip()}")


def _task(text: str, original: str, today: date) -> Parsed | None:
    match = v.TASK.fullmatch(text)
    if not match:
        return None
    what = match.group("what").strip()
    due: RelativeDate | DateRange | None = None
    due_phrase: str | None = None
    when = v.TASK_WHEN.fullmatch(what)
    if when:
        what, due_phrase = when.group("what").strip(), when.group("when").strip()
        if when.group("n"):
            days = span_days(number(when.group("n")), when.group("unit"), today)
            due = DateRange(start=date.fromordinal(today.toordinal() + days).isoformat())
        elif re.fullmatch(r"(?:on |by )\d{4}-\d\d-\d\d", due_phrase):
            due = DateRange(start=due_phrase.split()[-1])
        else:
            due = parse_period(due_phrase, today)
        if due is None:
            return Parsed("cannot")
    offset = original.lower().find(what[:20]) if what else -1
    written = original[offset : offset + len(what)] if offset >= 0 else what
    person = v.PERSON_VERB.search(written)
    title = written[:1].upper() + written[1:]
    return Parsed(
        "task",
        family="create_task",
        subject=title,
        task=TaskRequest(title=title, due=due, due_phrase=due_phrase, person=person.group("name") if person else None),
    )


# --- refinements of the previous plan ------------------------------------------------------------


def _refine(text: str, previous: QueryPlan) -> Parsed | None:
    sort = v.SORT.fullmatch(text)
    if sort:
        if previous.is_aggregate:
            names = {g.name: g.field for g in previous.group_by} | {a.name: a.name for a in previous.aggregations}
            wanted = sort.group("field").strip().replace(" ", "_")
            target = wanted if wanted in names else None
        else:
            target = field_for(previous.entity, sort.group("field"))
        if target is None:
            return Parsed("cannot")
        kind = "number" if previous.is_aggregate else resolve_field(CATALOGUE[previous.entity], target).spec.kind
        direction = sort.group("dir")
        if direction in v.DIRECTION_DESC:
            order = "desc"
        elif direction in v.DIRECTION_ASC:
            order = "asc"
        else:  # numbers and dates: biggest/newest first; names: A to Z
            order = "desc" if kind in ("number", "date", "datetime") else "asc"
        fields = previous.fields
        if not previous.is_aggregate and fields and target not in fields:
            fields = [*fields, target]
        plan = previous.model_copy(update={"order_by": [OrderBy(field=target, direction=order)], "fields": fields})
        return Parsed("plan", plan, "refine_sort", f"sorted by {sort.group('field').strip()}")
    only = v.ONLY_IN.fullmatch(text)
    if only:
        value = only.group("value").strip()
        candidates = v.IN_FIELDS.get(previous.entity, ())
        if not candidates:
            return Parsed("cannot")
        return Parsed(
            "plan", previous, "refine_filter", f"only those in {value}", lookups=[Lookup(value, targets=candidates)]
        )
    top = v.TOP_N.fullmatch(text)
    if top and not previous.is_aggregate:
        plan = previous.model_copy(update={"limit": number(top.group("n"))})
        return Parsed("plan", plan, "refine_limit", f"the first {number(top.group('n'))}")
    return None


def _currency_safe(parsed: Parsed, lexicon: Lexicon | None) -> Parsed:
    """Amounts in several currencies are never added up: a family's sum of amounts is split by
    currency, and a listing's total is left out."""
    plan = parsed.plan
    if plan is None or lexicon is None or not lexicon.mixed_currencies:
        return parsed
    sums_amount = any(a.field == "amount" and a.function in ("sum", "avg") for a in plan.aggregations)
    if sums_amount and not any(g.field == "currency" for g in plan.group_by):
        plan = plan.model_copy(update={"group_by": [*plan.group_by, GroupBy(field="currency")]})
    if any(a.field == "amount" for a in plan.totals):
        plan = plan.model_copy(update={"totals": [a for a in plan.totals if a.field != "amount"]})
    if plan.entity == "deals" and "amount" in plan.fields and "currency" not in plan.fields:
        fields = list(plan.fields)
        fields.insert(fields.index("amount") + 1, "currency")
        plan = plan.model_copy(update={"fields": fields})
    parsed.plan = plan
    return parsed


def parse_question(
    question: str,
    *,
    today: date,
    previous: QueryPlan | None = None,
    context_company: bool = False,
    lexicon: Lexicon | None = None,
    me: uuid.UUID | None = None,
) -> Parsed:
    """The plan (or task request) a question asks for, or ``cannot``: first the whole-question
    families (their answers are worded for them), then the compositional parser
    (:mod:`okyaku.chat.parser`) with the organization's ``lexicon`` and the caller (``me``)."""
    return _currency_safe(_parse(question, today, previous, context_company, lexicon, me), lexicon)


def _parse(
    question: str,
    today: date,
    previous: QueryPlan | None,
    context_company: bool,
    lexicon: Lexicon | None,
    me: uuid.UUID | None,
) -> Parsed:
    text = normalise(question)
    if not text:
        return Parsed("cannot", message="Ask a question about your CRM data.")
    if previous is not None:
        refined = _refine(text, previous)
        if refined is not None:
            return refined
    attempts: tuple[Callable[[], Parsed | None], ...] = (
        lambda: _task(text, question.strip().rstrip("?.!"), today),
        lambda: _closing(text, today),
        lambda: _won_lost(text, today),
        lambda: _hottest(text),
        lambda: _activities(text, question, context_company),
        lambda: _not_talked(text, today),
        lambda: _pipeline(text),
        lambda: _count_by(text, today),
    )
    asked_back: Parsed | None = None
    for attempt in attempts:
        parsed = attempt()
        if parsed is not None and parsed.outcome != "cannot":
            return parsed
        if parsed is not None and parsed.message != CANNOT:
            asked_back = parsed  # "show recent activities": which company? unless the parser reads it whole
            break
    try:
        reading = parser.parse(question, today=today, lexicon=lexicon, me=me, previous=previous)
    except parser.Ambiguous as ambiguous:
        return Parsed("cannot", family="clarify", message=ambiguous.message)
    if reading is None:
        return asked_back or Parsed("cannot")
    return Parsed("plan", reading.plan, reading.family, reading.subject)


__all__ = ["CANNOT", "Lookup", "Parsed", "TaskRequest", "parse_question"]
