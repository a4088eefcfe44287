"""What the model says, checked before a user sees it. A weak model (or a strong one on a bad day)
invents names, numbers and plans; everything here is a pure check against the question and the
rows the database returned, so chat shows model text only when the data backs it.

- :func:`on_topic_words`: whether a question speaks the CRM's language at all (off-topic questions
  are refused before any model call; record names are checked by the service against the data).
- :func:`is_clarifying_question`: model text without a tool call may reach the user only as a
  short question back that makes no claim.
- :func:`plan_problems`: a model's plan must be about what the question names (its entity, and
  every free-text filter value written in the question or the conversation).
- :func:`phrasing_problems`: the model's wording of an answer may use only the numbers and names of
  the data, and must state the headline (the aggregate, or the records) it is about.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from okyaku.chat.answer import PROSE_NUMBER, format_value, ungrounded_numbers
from okyaku.chat.catalogue import CATALOGUE, PlanInvalid, resolve_field
from okyaku.chat.execute import DataTable
from okyaku.chat.plan import DateRange, QueryPlan, RelativeDate
from okyaku.chat.vocabulary import ENTITY_WORDS

_WORD = re.compile(r"[a-z0-9][a-z0-9'&.-]*")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z0-9&'.-]*")

# Words that put a question in the CRM's domain (stems; matched at a word's start).
_CRM_STEMS = (
    "deal",
    "opportunit",
    "pipeline",
    "stage",
    "contact",
    "lead",
    "compan",
    "account",
    "customer",
    "client",
    "prospect",
    "people",
    "person",
    "activit",
    "call",
    "meeting",
    "email",
    "e-mail",
    "mail",
    "note",
    "task",
    "to-do",
    "todo",
    "won",
    "win",
    "lost",
    "lose",
    "loss",
    "revenue",
    "amount",
    "sale",
    "sold",
    "sell",
    "quota",
    "forecast",
    "score",
    "churn",
    "owner",
    "owned",
    "own",
    "assign",
    "due",
    "overdue",
    "close",
    "closing",
    "open",
    "follow",
    "talk",
    "spoke",
    "spoken",
    "contacted",
    "reach",
    "emailed",
    "called",
    "met",
    "industr",
    "countr",
    "lifecycle",
    "status",
    "renewal",
    "proposal",
    "negotiat",
    "qualif",
    "crm",
    "record",
    "interaction",
    "touchpoint",
    "employee",
    "job",
    "title",
    "size",
    "value",
    "worth",
    "remind",
    "draft",
    "schedule",
    "engag",
    "hottest",
    "hot",
    "cold",
    "stalled",
    "stuck",
    "recommend",
    "anomal",
    "insight",
    "summar",
    "team",
    "rep",
)
_QUESTION_START = re.compile(
    r"^(which|what|who|whom|whose|when|where|how|do|does|did|is|are|was|were|can|could|should|would|will|shall)\b",
    re.IGNORECASE,
)
# Capitalised words that name nothing: sentence starters and the CRM's own words.
_COMMON_WORDS = """a an the this that these those there here it its they their them we our us you your
    i my me he she his her
    in on at for with of to from by and or but so as if then than not no none yes all some any each every both
    either neither only also just still already currently overall total totally altogether together in-total
    is are was were be been has have had do does did will would can could should may might must shall
    what which who whom whose when where why how
    today yesterday tomorrow now week month quarter year day days weeks months quarters years
    january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday
    based according sorry unfortunately however note please
    deal deals contact contacts company companies activity activities task tasks lead leads account accounts
    opportunity opportunities pipeline pipelines stage stages owner owners amount amounts
    open won lost closed closing overdue done due
    q1 q2 q3 q4 ok okay"""
_COMMON = frozenset(_COMMON_WORDS.split())


_ACTION_INTENT = re.compile(
    r"\b(create|add|make|set up|schedule|remind|draft|write|send|compose|book|plan|log|email|e-mail)\b", re.IGNORECASE
)


def asks_for_action(question: str) -> bool:
    """Whether the user asked for something to be created (a task, an e-mail): only then may a
    model's create_task / draft_email call become a proposal."""
    return bool(_ACTION_INTENT.search(question))


_SMALL_NUMBERS = """zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen
    sixteen seventeen eighteen nineteen twenty"""
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_NUMBER_WORDS = {word: value for value, word in enumerate(_SMALL_NUMBERS.split())} | _TENS | {"hundred": 100}


def words_of(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def on_topic_words(question: str) -> bool:
    """Whether the question uses the CRM's vocabulary (entity, field, outcome or activity words)."""
    return any(word.startswith(_CRM_STEMS) for word in words_of(question))


def name_terms(question: str) -> list[str]:
    """Words of the question that could be part of a record's name (for the on-topic check)."""
    return sorted(w.strip(".'") for w in words_of(question) if len(w) >= 3 and w not in _COMMON)


def is_clarifying_question(text: str, question: str) -> bool:
    """Model text that may be shown without a tool call: one short question back, no numbers,
    no names the user did not write."""
    text = text.strip()
    if not text or len(text) > 200 or not text.endswith("?") or any(ch.isdigit() for ch in text):
        return False
    if text.count("?") != 1 or re.search(r"[.!]\s", text) or not _QUESTION_START.match(text):
        return False
    return not unknown_names(text, words_of(question))


def unknown_names(text: str, allowed: set[str]) -> list[str]:
    """Capitalised words of ``text`` that are neither common words nor in ``allowed``."""
    out = []
    for match in _CAPITALISED.finditer(text):
        word = match.group().strip(".'").lower()
        if word and word not in _COMMON and word not in allowed and word not in _NUMBER_WORDS and not word.isdigit():
            out.append(match.group().strip(".'"))
    return out


def _plan_values(plan: QueryPlan) -> Iterable[tuple[str, Any]]:
    for f in plan.filters:
        values = f.value if isinstance(f.value, list) else [f.value]
        for value in values:
            yield f.field, value


def _enum_values(entity: str, field: str) -> tuple[str, ...]:
    try:
        return tuple(v.lower() for v in resolve_field(CATALOGUE[entity], field).spec.values)
    except PlanInvalid:  # an unknown field is the catalogue's to report
        return ()


def mentioned_entities(question: str) -> set[str]:
    words = words_of(question)
    return {entity for entity, names in ENTITY_WORDS.items() if words & set(names)}


def plan_problems(plan: QueryPlan, question: str, context: str = "") -> list[str]:
    """Why a model's plan is not about the question: another entity than the one it names, or a
    filter value the user never wrote (a model filling in "Germany" on its own)."""
    problems: list[str] = []
    named = mentioned_entities(question)
    if named and plan.entity not in named and plan.entity != "pipeline_stages":
        problems.append(f"the question is about {', '.join(sorted(named))}, the plan reads {plan.entity}")
    written = f"{question}\n{context}".lower()
    for field, value in _plan_values(plan):
        if value is None or isinstance(value, bool | int | float | RelativeDate | DateRange):
            continue  # numbers and dates are shown in the answer's reading of the plan
        text = str(value).strip().lower()
        if not text or text in _enum_values(plan.entity, field):
            continue
        if text not in written:
            problems.append(f"the filter {field} = {value!r} is not in the question")
    if plan.search is not None and not (words_of(plan.search.query) & words_of(written)):
        problems.append("the search words are not in the question")
    return problems


def _data_words(data: DataTable) -> set[str]:
    words: set[str] = set()
    for row in data.rows:
        for cell in row:
            if isinstance(cell, str):
                words |= words_of(cell)
    for column in data.columns:
        words |= words_of(column.replace(".", " ").replace("_", " "))
    for key in data.totals:
        words |= words_of(key.replace("_", " "))
    return words


def _mentions(answer: str, value: Any) -> bool:
    """Whether ``answer`` states ``value`` (a number in any usual rounding, or a text)."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, int | float):
        stated = {float(m.replace(",", "")) for m in PROSE_NUMBER.findall(answer)}
        return any(s == value or s == round(value) or s == round(value, 1) or s == round(value, 2) for s in stated)
    return str(value).lower() in answer.lower()


def phrasing_problems(answer: str, plan: QueryPlan, data: DataTable, question: str) -> list[str]:
    """What is wrong with the model's wording of an answer to ``plan`` over ``data``."""
    problems: list[str] = []
    # Counts written as words are numbers too ("Three deals" when two matched).
    spelled = " ".join(str(_NUMBER_WORDS[w]) for w in words_of(answer) if w in _NUMBER_WORDS)
    numbers = ungrounded_numbers(f"{answer} {spelled}", data, question)
    if numbers:
        problems.append("numbers that are not in the data (" + ", ".join(numbers[:5]) + ")")
    names = unknown_names(answer, _data_words(data) | words_of(question) | words_of(plan.entity))
    if names:
        problems.append("names that are not in the data (" + ", ".join(dict.fromkeys(names[:5])) + ")")
    if plan.is_aggregate and not plan.group_by and data.rows:
        unstated = [v for v in data.rows[0] if isinstance(v, int | float) and not _mentions(answer, v)]
        if unstated:
            problems.append("it leaves out the figures the question asked for")
    elif not plan.is_aggregate and data.rows:
        labels = [row[0] for row in data.rows[:10] if isinstance(row[0], str)]
        count = data.total if data.total is not None else len(data.rows)
        if labels and not any(_mentions(answer, label) for label in labels) and not _mentions(answer, count):
            problems.append("it names none of the records found")
    return problems


def describe_plan(plan: QueryPlan) -> str:
    """The plan in words, so a reader can see how the question was read."""
    parts = [plan.entity.replace("_", " ")]
    for f in plan.filters:
        name = f.field.replace("_", " ").replace(".", " ")
        value = f.value
        if isinstance(value, RelativeDate):
            shown = value.relative.replace("_", " ").replace(" n ", f" {value.n} ")
            if value.weekday:
                shown += f" {value.weekday}"
        elif isinstance(value, DateRange):
            shown = f"{value.start or '…'} to {value.end or '…'}"
        elif isinstance(value, list):
            shown = ", ".join(format_value(v) for v in value)
        else:
            shown = format_value(value)
        ops = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "within": "within"}
        if f.op in ("is_null", "not_null"):
            parts.append(f"{name} {'empty' if f.op == 'is_null' else 'set'}")
        else:
            parts.append(f"{name} {ops.get(f.op, f.op.replace('_', ' '))} {shown}")
    if plan.aggregations:
        parts.append(
            "; ".join(f"{a.function}{' of ' + a.field.replace('_', ' ') if a.field else ''}" for a in plan.aggregations)
        )
    if plan.group_by:
        parts.append("by " + ", ".join(g.field.replace("_", " ").replace(".", " ") for g in plan.group_by))
    if plan.search is not None:
        parts.append(f'matching "{plan.search.query}"')
    return ", ".join(parts)


__all__ = [
    "asks_for_action",
    "describe_plan",
    "is_clarifying_question",
    "mentioned_entities",
    "name_terms",
    "on_topic_words",
    "phrasing_problems",
    "plan_problems",
    "unknown_names",
    "words_of",
]
