"""The compositional parser: a question → the typed :class:`QueryPlan`, built from parts.

A question is read left to right as a sequence of parts — an entity ("deals", "calls"), a measure
("how many", "average deal size", "win rate", "top 5"), filters (a named value of the
organization's :class:`~okyaku.chat.lexicon.Lexicon`, a status word, a comparison, a negation),
periods on a date field, group-bys, an order — and then the parts are resolved against the
entity. Every word must belong to a part or be on the filler list: one word the parser cannot
place and it does not answer (the LLM planner may). It never guesses: a name that fits several
records asks back, a part that does not fit the entity refuses.

Pure: no database. The lexicon is loaded by the service (:func:`okyaku.chat.lexicon.load_lexicon`).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from okyaku.chat.catalogue import CATALOGUE, PlanInvalid, resolve_field
from okyaku.chat.dates import resolve_relative
from okyaku.chat.lexicon import Lexicon, Named
from okyaku.chat.periods import NUMBER, POINT, UNIT, YEAR, number, parse_period, span_days
from okyaku.chat.plan import Aggregation, DateRange, Filter, GroupBy, OrderBy, QueryPlan, RelativeDate

# --- the vocabulary ------------------------------------------------------------------------------

# Entity words → (entity, filters they imply, whether the word is singular).
_ENTITY_WORDS: dict[str, tuple[str, tuple[tuple[str, str, Any], ...]]] = {
    "deals": ("deals", ()),
    "opportunities": ("deals", ()),
    "opps": ("deals", ()),
    "contacts": ("contacts", ()),
    "people": ("contacts", ()),
    "persons": ("contacts", ()),
    "leads": ("contacts", (("lifecycle_stage", "eq", "lead"),)),
    "customers": ("contacts", (("lifecycle_stage", "eq", "customer"),)),
    "mqls": ("contacts", (("lifecycle_stage", "eq", "mql"),)),
    "marketing qualified leads": ("contacts", (("lifecycle_stage", "eq", "mql"),)),
    "sqls": ("contacts", (("lifecycle_stage", "eq", "sql"),)),
    "sales qualified leads": ("contacts", (("lifecycle_stage", "eq", "sql"),)),
    "subscribers": ("contacts", (("lifecycle_stage", "eq", "subscriber"),)),
    "evangelists": ("contacts", (("lifecycle_stage", "eq", "evangelist"),)),
    "churned contacts": ("contacts", (("lifecycle_stage", "eq", "churned"),)),
    "churned customers": ("contacts", (("lifecycle_stage", "eq", "churned"),)),
    "companies": ("companies", ()),
    "accounts": ("companies", ()),
    "organisations": ("companies", ()),
    "organizations": ("companies", ()),
    "activities": ("activities", ()),
    "interactions": ("activities", ()),
    "touchpoints": ("activities", ()),
    "calls": ("activities", (("type", "eq", "call"),)),
    "phone calls": ("activities", (("type", "eq", "call"),)),
    "meetings": ("activities", (("type", "eq", "meeting"),)),
    "emails": ("activities", (("type", "eq", "email"),)),
    "e-mails": ("activities", (("type", "eq", "email"),)),
    "notes": ("activities", (("type", "eq", "note"),)),
    "tasks": ("tasks", ()),
    "to-dos": ("tasks", ()),
    "todos": ("tasks", ()),
}
_SINGULARS = {
    "deal": "deals",
    "opportunity": "opportunities",
    "opp": "opps",
    "contact": "contacts",
    "person": "persons",
    "lead": "leads",
    "customer": "customers",
    "mql": "mqls",
    "sql": "sqls",
    "subscriber": "subscribers",
    "company": "companies",
    "account": "accounts",
    "organisation": "organisations",
    "organization": "organizations",
    "activity": "activities",
    "interaction": "interactions",
    "call": "calls",
    "phone call": "phone calls",
    "meeting": "meetings",
    "email": "emails",
    "e-mail": "e-mails",
    "note": "notes",
    "task": "tasks",
    "to-do": "to-dos",
    "todo": "todos",
}


def _numeric(entity: str, path: str) -> bool:
    try:
        return resolve_field(CATALOGUE[entity], path).spec.kind == "number"
    except PlanInvalid:
        return False


# Field words per entity, for measures, comparisons, group-bys and sorting.
_FIELDS: dict[str, dict[str, str]] = {
    "deals": {
        "amount": "amount",
        "amounts": "amount",
        "value": "amount",
        "values": "amount",
        "size": "amount",
        "deal size": "amount",
        "deal value": "amount",
        "deal amount": "amount",
        "worth": "amount",
        "revenue": "amount",
        "stage": "stage.name",
        "pipeline": "pipeline.name",
        "company": "company.name",
        "account": "company.name",
        "owner": "owner.name",
        "rep": "owner.name",
        "sales rep": "owner.name",
        "salesperson": "owner.name",
        "contact": "contact.name",
        "country": "company.country",
        "industry": "company.industry",
        "city": "company.city",
        "currency": "currency",
        "status": "status",
        "probability": "stage.probability",
        "close date": "expected_close_date",
        "closing date": "expected_close_date",
        "expected close date": "expected_close_date",
        "created date": "created_at",
        "creation date": "created_at",
        "name": "name",
    },
    "contacts": {
        "company": "company.name",
        "account": "company.name",
        "owner": "owner.name",
        "lifecycle stage": "lifecycle_stage",
        "lifecycle": "lifecycle_stage",
        "stage": "lifecycle_stage",
        "lead status": "lead_status",
        "status": "lead_status",
        "source": "source",
        "lead source": "source",
        "score": "lead_score",
        "lead score": "lead_score",
        "job title": "job_title",
        "title": "job_title",
        "country": "company.country",
        "industry": "company.industry",
        "city": "company.city",
        "name": "name",
        "email": "email",
        "phone": "phone",
        "created date": "created_at",
    },
    "companies": {
        "industry": "industry",
        "country": "country",
        "city": "city",
        "owner": "owner.name",
        "revenue": "annual_revenue",
        "annual revenue": "annual_revenue",
        "employees": "employee_count",
        "employee count": "employee_count",
        "headcount": "employee_count",
        "number of employees": "employee_count",
        "name": "name",
        "domain": "domain",
        "created date": "created_at",
    },
    "activities": {
        "type": "type",
        "owner": "owner.name",
        "company": "company.name",
        "contact": "contact.name",
        "deal": "deal.name",
        "direction": "direction",
        "duration": "duration_minutes",
        "date": "occurred_at",
    },
    "tasks": {
        "status": "status",
        "priority": "priority",
        "assignee": "assignee.name",
        "owner": "assignee.name",
        "company": "company.name",
        "contact": "contact.name",
        "deal": "deal.name",
        "due date": "due_date",
        "title": "title",
    },
}
_FIELD_WORDS = sorted({w for words in _FIELDS.values() for w in words}, key=len, reverse=True)
_FIELD = "(?:" + "|".join(re.escape(w) for w in _FIELD_WORDS) + ")"
_NUMERIC_WORDS = sorted(
    {w for e, words in _FIELDS.items() for w, path in words.items() if _numeric(e, path)}, key=len, reverse=True
)
_NUMERIC = "(?:" + "|".join(re.escape(w) for w in _NUMERIC_WORDS) + ")"
# The numeric field a bare number or "total"/"average" means, per entity.
_DEFAULT_NUMBER = {"deals": "amount"}
# The date field a period without a date word means, per entity (activities happen; tasks fall due).
_DEFAULT_DATE = {"activities": "occurred_at", "tasks": "due_date"}
_RECENCY_DATE = {"activities": "occurred_at"}

# Date words → field per entity.
_DATE_HINTS: dict[str, dict[str, str]] = {
    "created": {e: "created_at" for e in ("companies", "contacts", "deals", "activities", "tasks")},
    "closing": {"deals": "expected_close_date"},
    "closed": {"deals": "closed_at"},
    "due": {"tasks": "due_date"},
    "completed": {"tasks": "completed_at"},
    "occurred": {"activities": "occurred_at"},
    "updated": {e: "updated_at" for e in ("companies", "contacts", "deals")},
    "last activity": {e: "last_activity_at" for e in ("companies", "contacts", "deals")},
}
_HINT_PHRASES = {
    "created": "created|added|new|entered|signed up|joined|opened|first created",
    "closing": "closing|close|closes|expected to close|due to close|set to close|scheduled to close|will close|"
    "should close|are going to close|is going to close|are likely to close|"
    "projected to close|with a close date|with an expected close date|expected close date|close date|closing date",
    "closed": "closed|close date was|won|lost|signed",
    "due": "due|due date|due dates",
    "completed": "completed|finished|done|ticked off",
    "occurred": "occurred|happened|logged|held|had|made|make|log|took place|recorded|sent|received|scheduled|"
    "planned|booked",
    "updated": "updated|modified|changed|edited",
    "last activity": "last contacted|last touched|last active|last activity",
}

# Fields a "without X" / "with X" phrase may name, per entity.
_PRESENCE: dict[str, dict[str, str]] = {
    "deals": {
        "amount": "amount",
        "value": "amount",
        "close date": "expected_close_date",
        "expected close date": "expected_close_date",
        "closing date": "expected_close_date",
        "owner": "owner.id",
        "company": "company.id",
        "account": "company.id",
        "contact": "contact.id",
        "lost reason": "lost_reason",
    },
    "contacts": {
        "email": "email",
        "email address": "email",
        "phone": "phone",
        "phone number": "phone",
        "company": "company.id",
        "account": "company.id",
        "owner": "owner.id",
        "job title": "job_title",
        "title": "job_title",
        "lead score": "lead_score",
        "score": "lead_score",
    },
    "companies": {
        "owner": "owner.id",
        "industry": "industry",
        "country": "country",
        "domain": "domain",
        "website": "domain",
        "city": "city",
        "revenue": "annual_revenue",
        "annual revenue": "annual_revenue",
    },
    "activities": {"contact": "contact.id", "company": "company.id", "deal": "deal.id", "owner": "owner.id"},
    "tasks": {
        "due date": "due_date",
        "assignee": "assignee.id",
        "owner": "assignee.id",
        "contact": "contact.id",
        "company": "company.id",
        "deal": "deal.id",
    },
}
_DATE_PRESENCE_HINTS = {"expected_close_date": "closing", "due_date": "due"}
_PRESENCE_WORDS = sorted({w for words in _PRESENCE.values() for w in words}, key=len, reverse=True)
_PRESENCE_FIELD = "(?:" + "|".join(re.escape(w) for w in _PRESENCE_WORDS) + ")"

# Where a named value applies, per entity: the kind of name → the field a filter compares.
_NAMED_FIELDS: dict[str, dict[str, str]] = {
    "companies": {"company": "id", "owner": "owner.id", "country": "country", "industry": "industry", "city": "city"},
    "contacts": {
        "contact": "id",
        "company": "company.id",
        "owner": "owner.id",
        "country": "company.country",
        "industry": "company.industry",
        "city": "company.city",
    },
    "deals": {
        "company": "company.id",
        "contact": "contact.id",
        "owner": "owner.id",
        "stage": "stage.name",
        "pipeline": "pipeline.name",
        "country": "company.country",
        "industry": "company.industry",
        "city": "company.city",
    },
    "activities": {"company": "account_id", "contact": "contact.id", "owner": "owner.id"},
    "tasks": {"company": "company.id", "contact": "contact.id", "owner": "assignee.id"},
}
# The name column shown beside a filter on a related record's id.
_SHOWN_FOR = {
    "company.id": "company.name",
    "contact.id": "contact.name",
    "owner.id": "owner.name",
    "assignee.id": "assignee.name",
}
_OWNER_FIELD = {"tasks": "assignee.id"}
_OWNER_CONNECTORS = ("owned by", "assigned to", "belonging to", "handled by", "managed by", "run by", "by", "owner")
_LAST_ACTIVITY_ENTITIES = ("companies", "contacts", "deals")

# Words that carry no meaning for the plan (checked last: every other reading wins).
_FILLERS = (
    "show me|show|list|list out|give me|get me|get|find me|find|display|pull up|tell me|i want to see|i'd like to see|"
    "i need|can i see|let me see|let me know|see|fetch|bring up|look up|what|which|who|whose|where|are|is|were|was|be|"
    "there|do|does|did|have|has|had|we|us|our|the|a|an|all|any|every|each|of|that|those|these|them|they|ones|one|"
    "currently|right now|now|at the moment|at present|so far|still|yet|in|at|for|from|with|on|to|about|some|"
    "please|just|only|exactly|in total|overall|altogether|in the crm|in our crm|in the system|records|entries|"
    "the list of|a list of|list of|it|its|their|there are|the ones|here|total number|whole|entire|current|"
    "ones that|as of now|we've|we're|we'd|break down|breakdown of|a breakdown of"
)
_LEADING = r"(?:and|also|then|now|ok|okay|so|what about|how about|and what about|same for|same but|what of)"
_MONEY = (
    r"(?P<cur>[$€£])?\s?(?P<num>\d+(?:[,.]\d{3})*(?:\.\d+)?|\d+(?:\.\d+)?)\s?(?P<mult>k|m|mm|bn|b|thousand|million|billion)?"
    r"(?:\s?(?P<code>usd|eur|gbp|dollars|euros|pounds|bucks))?"
)
_CURRENCY_OF = {"$": "USD", "€": "EUR", "£": "GBP", "usd": "USD", "eur": "EUR", "gbp": "GBP"}
_CURRENCY_OF |= {"dollars": "USD", "bucks": "USD", "euros": "EUR", "pounds": "GBP"}
_MULTIPLIER = {"k": 1e3, "thousand": 1e3, "m": 1e6, "mm": 1e6, "million": 1e6, "b": 1e9, "bn": 1e9, "billion": 1e9}
_COMPARE_OPS = {
    "gt": "over|above|more than|greater than|bigger than|larger than|higher than|exceeding|in excess of|>",
    "gte": "at least|no less than|minimum of|min|>=|or more",
    "lt": "under|below|less than|smaller than|lower than|<",
    "lte": "at most|no more than|up to|maximum of|max|<=|or less",
}


@dataclass
class Piece:
    kind: str
    text: str
    value: Any = None
    op: str = ""
    word: str = ""
    n: int | None = None
    negated: bool = False
    named: tuple[Named, ...] = ()
    currency: str | None = None
    singular: bool = False


Recogniser = tuple["re.Pattern[str]", Callable[["re.Match[str]", date], list[Piece]]]


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(r"(?:" + pattern + r")(?=\s|$)")


def _money(match: re.Match[str], prefix: str = "") -> tuple[float, str | None]:
    raw = match.group(prefix + "num")
    if re.fullmatch(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?", raw):
        raw = raw.replace(",", "")
    elif re.fullmatch(r"\d{1,3}(?:\.\d{3})+", raw):  # 100.000 written the European way
        raw = raw.replace(".", "")
    amount = float(raw) * _MULTIPLIER.get(match.group(prefix + "mult") or "", 1.0)
    symbol = match.group(prefix + "cur") or match.group(prefix + "code")
    return amount, _CURRENCY_OF.get(symbol) if symbol else None


def _money_re(prefix: str) -> str:
    return re.sub(r"\?P<(\w+)>", lambda m: f"?P<{prefix}{m.group(1)}>", _MONEY)


def _status(word: str) -> str:
    word = word.replace("-", " ")
    for status, words in _STATUS_WORDS.items():
        if word in words.split("|"):
            return status
    raise AssertionError(word)


_STATUS_WORDS = {
    "won": "won|closed won|win|successful|winning|we won",
    "lost": "lost|closed lost|lose|losing|we lost",
    "closed": "closed|finished deals",
    "open": "open|active|pending|outstanding|ongoing|in flight|live|incomplete|unfinished|not done|not completed|"
    "to do|remaining|uncompleted|not closed|still open",
    "in_progress": "in progress|started|in-progress",
    "overdue": "overdue|past due|late|missed|behind schedule",
    "done": "done|completed|complete|finished|closed out|ticked off",
    "cancelled": "cancelled|canceled",
}
_PRIORITIES = "high|low|normal|medium|urgent"


def _recognisers() -> list[Recogniser]:
    out: list[Recogniser] = []

    def add(pattern: str, build: Callable[[re.Match[str], date], list[Piece]]) -> None:
        out.append((_re(pattern), build))

    # negations that mean "no activity in N days" (before the words they contain)
    talk = (
        r"talked to|spoken to|spoken with|talked with|contacted|touched|reached out to|heard from|engaged with|"
        r"been in touch with|interacted with|called|emailed|met|met with|followed up with"
    )
    add(
        r"(?:that |who |which )?(?:(?:i|we|you|anyone|nobody|no one) )?(?:have |has |had )?"
        r"(?:not|haven't|hasn't|havent|hasnt|have not|has not|did not|didn't|had not|hadn't)(?: been| yet| we| i)?"
        r" (?:" + talk + r")(?: (?:in|for|during|over|within))?(?: the)?(?: (?:last|past))? (?P<n>" + NUMBER + r")"
        r" (?P<unit>" + UNIT + r")",
        lambda m, t: [Piece("inactive", m.group(0), n=span_days(number(m.group("n")), m.group("unit"), t))],
    )
    add(
        r"(?:with |that have |who have |having )?(?:no|without(?: any)?|zero) (?:activity|activities|contact|"
        r"touchpoints?|interactions?|touches|engagement|calls or meetings)(?: (?:in|for|during|over|within))?(?: the)?"
        r"(?: (?:last|past))? (?P<n>" + NUMBER + r") (?P<unit>" + UNIT + r")",
        lambda m, t: [Piece("inactive", m.group(0), n=span_days(number(m.group("n")), m.group("unit"), t))],
    )
    add(
        r"(?:that |who |which )?(?:(?:we|i) )?(?:have |has |had )?(?:never(?: been)? (?:" + talk + r")|"
        r"(?:with |that have |who have )?(?:no|without(?: any)?) (?:activity|activities|interactions?|touchpoints?)"
        r"(?: at all| ever| yet)?)",
        lambda m, t: [Piece("never", m.group(0))],
    )
    # the rate of winning
    add(
        r"win rate|win-rate|winrate|win ratio|win percentage|win %|close rate|closing rate|success rate|"
        r"percentage of deals (?:we )?won|hit rate|"
        r"(?:the )?(?:percentage|share|proportion|ratio) of (?:deals|opportunities) "
        r"(?:that )?(?:do |did )?(?:we )?(?:win|won)",
        lambda m, t: [Piece("measure", m.group(0), value="win_rate")],
    )
    add(
        r"(?:the )?(?:pipeline value|pipeline total|value of (?:the |our )?pipeline|total pipeline|open pipeline|"
        r"pipeline amount|size of (?:the |our )?pipeline)",
        lambda m, t: [Piece("status", m.group(0), value="open"), Piece("measure", "", value="sum"), _entity("deals")],
    )
    # measures
    add(
        r"how many|number of|the number of|count(?: of| the| all)*|total number of|what's the count of|tally of|"
        r"total count of|count up",
        lambda m, t: [Piece("measure", m.group(0), value="count")],
    )
    add(
        r"(?:the )?(?P<fn>total|sum|combined|average|avg|mean|typical|maximum|max|minimum|min|largest|biggest|"
        r"smallest|highest|lowest) (?:(?P<status>won|lost|open|closed) )?(?P<entity>deal|opportunity) "
        r"(?P<field>size|value|amount|worth)",
        lambda m, t: [
            Piece("measure", m.group(0), value=_function(m.group("fn")), word="amount"),
            *([Piece("status", m.group("status"), value=_status(m.group("status")))] if m.group("status") else []),
            *(
                [Piece("hint", "", word="closed", op="implied")]
                if m.group("status") in ("won", "lost", "closed")
                else []
            ),
            _entity("deals", m.group("entity")),
        ],
    )
    add(
        r"(?:the )?(?P<fn>total|sum|combined|aggregate|average|avg|mean|typical|median|maximum|max|minimum|min|"
        r"highest|lowest|largest|biggest|smallest)(?: of)?(?: the| all| our)? (?P<field>" + _NUMERIC + r")(?: of)?",
        lambda m, t: [Piece("measure", m.group(0), value=_function(m.group("fn")), word=m.group("field"))],
    )
    add(
        r"(?:the )?(?P<fn>average|avg|mean|typical|total|sum|combined)(?: of)?",
        lambda m, t: [Piece("measure", m.group(0), value=_function(m.group("fn")))],
    )
    add(
        r"how much (?:revenue|money|value)(?: is| are| were| was| do| did| have)?",
        lambda m, t: [Piece("measure", m.group(0), value="sum", word="amount")],
    )
    add(
        r"how much(?: is| are| were| was| do| did)?(?: (?:worth|in|total))?|what(?:'s| is| are) (?:it|they) worth|"
        r"(?:are |is )?worth(?: in total)?|total value(?: of)?|value of|total amount(?: of)?|amount of|sum of",
        lambda m, t: [Piece("measure", m.group(0), value="sum")],
    )
    add(
        r"(?:the )?(?P<fn>top|best|biggest|largest|highest|bottom|smallest|lowest|worst)(?: (?P<n>" + NUMBER + r"))?",
        lambda m, t: [
            Piece(
                "top",
                m.group(0),
                op="asc" if m.group("fn") in ("bottom", "smallest", "lowest", "worst") else "desc",
                word=m.group("fn"),
                n=number(m.group("n")) if m.group("n") else None,
            )
        ],
    )
    add(
        r"(?P<n>" + NUMBER + r") (?P<fn>biggest|largest|highest|top|smallest|lowest|latest|newest|most recent|oldest)",
        lambda m, t: [
            Piece(
                "recent" if m.group("fn") in ("latest", "newest", "most recent", "oldest") else "top",
                m.group(0),
                op="asc" if m.group("fn") in ("smallest", "lowest", "oldest") else "desc",
                word=m.group("fn"),
                n=number(m.group("n")),
            )
        ],
    )
    add(
        r"(?:the )?(?P<fn>latest|newest|most recent|recent|last|oldest|earliest)(?: (?P<n>" + NUMBER + r"))?",
        lambda m, t: [
            Piece(
                "recent",
                m.group(0),
                op="asc" if m.group("fn") in ("oldest", "earliest") else "desc",
                word=m.group("fn"),
                n=number(m.group("n")) if m.group("n") else None,
            )
        ],
    )
    # group-bys and sorting
    parts = r"(?P<part>day|week|month|quarter|year)"
    add(
        r"(?:by|per|for each|for every|in each|grouped by|group by|broken down by|break down by|split by|across|"
        r"by each|each) (?:(?P<field>" + _FIELD + r")|" + parts + r")(?: and (?:by )?(?P<field2>" + _FIELD + r"))?",
        lambda m, t: [
            Piece("group", m.group(0), word=m.group("field") or "", value=m.group("part")),
            *([Piece("group", "", word=m.group("field2"))] if m.group("field2") else []),
        ],
    )
    add(
        r"(?:who |that |which )?(?:works|work|working|worked|is employed|are employed|employed) (?:at|for)",
        lambda m, t: [_entity("contacts", "contacts"), Piece("connector", "at")],
    )
    add(
        r"(?P<part>daily|weekly|monthly|quarterly|yearly|annually)",
        lambda m, t: [
            Piece(
                "group",
                m.group(0),
                value={"daily": "day", "weekly": "week", "monthly": "month", "quarterly": "quarter"}.get(
                    m.group("part"), "year"
                ),
            )
        ],
    )
    add(
        r"(?:(?:and )?(?:sorted|sort(?: them| it| those| these| the results| the list)?|ordered|order(?: them)?|"
        r"ranked|rank(?: them)?) by|by) (?P<field>" + _FIELD + r")(?: (?P<dir>ascending|descending|asc|desc|"
        r"highest first|lowest first|biggest first|smallest first|largest first|newest first|oldest first|"
        r"most recent first|high to low|low to high))?",
        lambda m, t: [Piece("order", m.group(0), word=m.group("field"), op=_direction(m.group("dir")))],
    )
    # comparisons
    ops = "|".join(f"(?P<{op}>{words})" for op, words in _COMPARE_OPS.items() if op in ("gt", "gte", "lt", "lte"))
    add(
        r"(?:(?:with |that have |having |of |whose )?(?:an? )?(?P<field>" + _NUMERIC + r") )?"
        r"(?:(?:is|are|was|were|that is|that are|which are) )?(?:(?:of|valued at|worth|greater) )?(?:"
        + ops.replace("|or more", "").replace("|or less", "")
        + r") "
        + _MONEY
        + r"(?: (?P<field2>"
        + _NUMERIC
        + r"))?",
        lambda m, t: [_compare(m)],
    )
    add(
        r"(?:(?:with |that have |having )?(?:an? )?(?P<field>"
        + _NUMERIC
        + r") )?(?:between|from) "
        + _money_re("a")
        + r" (?:and|to|-) "
        + _money_re("b"),
        lambda m, t: _between(m),
    )
    add(
        r"(?:worth |of |valued at )?" + _MONEY + r" (?P<dir>or more|or above|or over|and up|and above|plus|or less|"
        r"or below|or under|and below|and under)",
        lambda m, t: [_open_compare(m)],
    )
    # presence of a value
    add(
        r"(?:with no|without(?: an?| any)?|missing(?: an?)?|that have no|who have no|which have no|having no|"
        r"lacking(?: an?)?|with an empty|with empty|no) (?P<field>" + _PRESENCE_FIELD + r")(?: set)?",
        lambda m, t: [Piece("presence", m.group(0), word=m.group("field"), op="is_null")],
    )
    add(
        r"(?:with|that have|who have|which have|having)(?: an?)? (?P<field>" + _PRESENCE_FIELD + r")(?: set)?",
        lambda m, t: [Piece("presence", m.group(0), word=m.group("field"), op="not_null")],
    )
    add(
        r"unassigned|not assigned|ownerless|without anyone assigned",
        lambda m, t: [Piece("presence", m.group(0), word="owner", op="is_null")],
    )
    # the caller
    add(
        r"my|mine|i own|do i own|do i have|i have|assigned to me|owned by me|that i own|i'm working on|"
        r"i am working on|for me|on my plate|of mine|i'm responsible for|i am responsible for|i'm on|i handle",
        lambda m, t: [Piece("me", m.group(0))],
    )
    # statuses, priorities, direction
    for status, words in _STATUS_WORDS.items():
        add(
            r"(?:(?:that |which |who )?(?:are |were |is )?(?P<neg>not |non-|non |never been )?)(?:" + words + r")",
            _status_builder(status),
        )
    add(
        r"(?P<p>" + _PRIORITIES + r")[- ]priority|priority (?P<p2>" + _PRIORITIES + r")|urgent|important",
        lambda m, t: [Piece("priority", m.group(0), value=_priority(m.group("p") or m.group("p2") or "high"))],
    )
    add(r"inbound|outbound|incoming|outgoing", lambda m, t: [Piece("direction", m.group(0), value=_direction_of(m))])
    # dates
    for hint, words in _HINT_PHRASES.items():
        add(
            r"(?:that |which |who )?(?:were |was |are |is |got |have been |has been )?(?:" + words + r")",
            _hint_builder(hint),
        )
    add(
        r"(?:(?:in|during|over|within|for|from|on|of|by|since) )?(?:the )?" + _PERIOD,
        lambda m, t: [_period(m, t)],
    )
    # entity words (after the phrases above that contain them)
    entity_words = sorted([*_ENTITY_WORDS, *_SINGULARS], key=len, reverse=True)
    add(
        "(?P<entity>" + "|".join(re.escape(w) for w in entity_words) + r")",
        lambda m, t: [
            _entity(_ENTITY_WORDS[_SINGULARS.get(m.group("entity"), m.group("entity"))][0], m.group("entity"))
        ],
    )
    add(
        r"pipeline",
        lambda m, t: [Piece("status", m.group(0), value="open"), _entity("deals")],
    )
    # negation of the next named value, and lists of names
    add(
        r"not|not in|not at|not from|except(?: for)?|excluding|other than|apart from|besides|but not|outside(?: of)?",
        lambda m, t: [Piece("not", m.group(0))],
    )
    add(r"or|and|&|as well as|plus", lambda m, t: [Piece("conj", m.group(0))])
    add(
        r"owned by|assigned to|belonging to|handled by|managed by|run by|by|whose owner is|with owner|owner",
        lambda m, t: [Piece("connector", m.group(0), word="owner")],
    )
    add(
        r"(?:in|at|from|for|with|of|on|under|involving|about|regarding|related to|linked to|in the)(?: the)?",
        lambda m, t: [Piece("connector", m.group(0))],
    )
    add(_FILLERS, lambda m, t: [Piece("filler", m.group(0))])
    return out


_PERIOD = (
    r"(?P<period>today|yesterday|tomorrow|"
    r"(?:this|last|next|current|previous|past|the past|the last|the next|the current|the previous) "
    r"(?:week|month|quarter|year)|"
    r"(?:(?:the )?(?:last|past|next|coming)) " + NUMBER + r" " + UNIT + r"|"
    r"q[1-4](?: (?:of )?" + YEAR + r")?|"
    r"(?:the )?(?:first|second|third|fourth|1st|2nd|3rd|4th) quarter(?: (?:of )?" + YEAR + r")?|"
    r"year to date|ytd|so far this year|this year so far|month to date|mtd|so far this month|this month so far|"
    + NUMBER
    + r" (?:days?|weeks?) ago|"
    r"(?:since|after|before|until|till|up to) (?:" + POINT + r"|(?:this|last|next) (?:week|month|quarter|year)|"
    r"yesterday|today|tomorrow)|"
    r"(?:between|from) "
    + POINT
    + r" (?:and|to|until|through) "
    + POINT
    + r"|"
    + POINT
    + r"|"
    + YEAR
    + r"|(?:this |next |last |on )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday))"
)


def _status_builder(status: str) -> Callable[[re.Match[str], date], list[Piece]]:
    def build(match: re.Match[str], today: date) -> list[Piece]:
        pieces = [Piece("status", match.group(0), value=status, negated=bool(match.group("neg")))]
        if status in ("won", "lost", "closed"):  # "won this month": closed this month
            pieces.append(Piece("hint", "", word="closed", op="implied"))
        if status == "done":
            pieces.append(Piece("hint", "", word="completed", op="implied"))
        return pieces

    return build


def _hint_builder(hint: str) -> Callable[[re.Match[str], date], list[Piece]]:
    return lambda match, today: [Piece("hint", match.group(0), word=hint)]


def _function(word: str) -> str:
    return {
        "total": "sum",
        "sum": "sum",
        "combined": "sum",
        "aggregate": "sum",
        "average": "avg",
        "avg": "avg",
        "mean": "avg",
        "typical": "avg",
        "median": "median",  # not in the plan's functions: refused at resolution
        "maximum": "max",
        "max": "max",
        "highest": "max",
        "largest": "max",
        "biggest": "max",
        "minimum": "min",
        "min": "min",
        "lowest": "min",
        "smallest": "min",
    }[word]


def _direction(word: str | None) -> str:
    if word is None:
        return ""
    if word in ("ascending", "asc", "lowest first", "smallest first", "oldest first", "low to high"):
        return "asc"
    return "desc"


def _direction_of(match: re.Match[str]) -> str:
    return "inbound" if match.group(0) in ("inbound", "incoming") else "outbound"


def _priority(word: str) -> str:
    return {"urgent": "high", "medium": "normal"}.get(word, word)


def _entity(entity: str, word: str = "") -> Piece:
    singular = word in _SINGULARS
    plural = _SINGULARS.get(word, word) or entity
    return Piece("entity", word, value=entity, word=plural, singular=singular)


def _compare(match: re.Match[str]) -> Piece:
    op = next(o for o in ("gt", "gte", "lt", "lte") if match.group(o))
    amount, currency = _money(match)
    word = match.group("field") or match.group("field2") or ""
    if match.group("field") and match.group("field2"):
        word = "?"  # two fields for one number: refuse
    return Piece("compare", match.group(0), value=amount, op=op, word=word, currency=currency)


def _open_compare(match: re.Match[str]) -> Piece:
    amount, currency = _money(match)
    op = "gte" if match.group("dir") in ("or more", "or above", "or over", "and up", "and above", "plus") else "lte"
    return Piece("compare", match.group(0), value=amount, op=op, currency=currency)


def _between(match: re.Match[str]) -> list[Piece]:
    low, low_currency = _money(match, "a")
    high, high_currency = _money(match, "b")
    currency = low_currency or high_currency
    word = match.group("field") or ""
    if high < low:
        return [Piece("unknown", match.group(0))]
    return [
        Piece("compare", match.group(0), value=low, op="gte", word=word, currency=currency),
        Piece("compare", "", value=high, op="lte", word=word, currency=currency),
    ]


def _period(match: re.Match[str], today: date) -> Piece:
    phrase = match.group("period")
    value = parse_period(phrase, today)
    text = match.group(0)
    if value is None:
        return Piece("unknown", text)
    if text.startswith("by ") and not phrase.startswith(("since", "after", "before", "until", "till", "up to")):
        # "due by Friday": on or before it, overdue included
        end = resolve_relative(value, today).end if isinstance(value, RelativeDate) else None
        if isinstance(value, DateRange):
            end = date.fromisoformat(value.end) if value.end else None
        if end is None:
            return Piece("unknown", text)
        value = DateRange(end=end.isoformat())
    return Piece("period", text, value=value)


_RECOGNISERS: list[Recogniser] | None = None
_BY_WORD: dict[str, list[Recogniser]] = {}
_ALPHA = re.compile(r"[a-z]+")


def recognisers() -> list[Recogniser]:
    global _RECOGNISERS
    if _RECOGNISERS is None:
        _RECOGNISERS = _recognisers()
    return _RECOGNISERS


def recognisers_for(text: str, position: int) -> list[Recogniser]:
    """The recognisers that may match at ``position``: a match starts with a literal word of the
    recogniser's pattern (no pattern has a letter class), so only patterns whose text holds the
    word's first run of letters are tried. Cached per word; a word not starting with a letter
    (a number, "$5k") tries them all."""
    letters = _ALPHA.match(text, position)
    if letters is None:
        return recognisers()
    word = letters.group()
    found = _BY_WORD.get(word)
    if found is None:
        found = [r for r in recognisers() if word in set(_ALPHA.findall(r[0].pattern))]
        if len(_BY_WORD) < 10_000:
            _BY_WORD[word] = found
    return found


# --- reading the question ------------------------------------------------------------------------


def normalise(question: str) -> str:
    text = question.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.strip().lower()
    text = re.sub(r"(?<=\w)'s\b", "", text)  # possessives: "Anna's deals" → "anna deals"
    text = re.sub(r"(?<!\d),|,(?!\d{3})", " ", text)
    text = re.sub(r"[?!;:\"()]+", " ", text)
    text = re.sub(r"\.(?!\d)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def read(text: str, today: date, lexicon: Lexicon | None) -> list[Piece] | None:
    """The parts of ``text``, or None when some word belongs to none."""
    pieces: list[Piece] = []
    position = 0
    leading = re.compile(_LEADING + r"(?=\s|$)")
    match = leading.match(text)
    if match:
        position = match.end()
    while position < len(text):
        if text[position] == " ":
            position += 1
            continue
        best: tuple[int, list[Piece]] | None = None
        for pattern, build in recognisers_for(text, position):
            found = pattern.match(text, position)
            if found and found.end() > position and (best is None or found.end() > best[0]):
                best = (found.end(), build(found, today))
        named = _named_at(text, position, lexicon)
        if named is not None and (best is None or named[0] > best[0] or (named[0] == best[0] and _is_filler(best[1]))):
            best = named
        if best is None:
            return None
        end, found_pieces = best
        if any(p.kind == "unknown" for p in found_pieces):
            return None
        pieces += found_pieces
        position = end
    return pieces


def _is_filler(pieces: list[Piece]) -> bool:
    return all(p.kind in ("filler", "connector") for p in pieces)


def _named_at(text: str, position: int, lexicon: Lexicon | None) -> tuple[int, list[Piece]] | None:
    if lexicon is None or not lexicon.names:
        return None
    words = text[position:].split(" ")
    for count in range(min(len(words), 6), 0, -1):
        phrase = " ".join(words[:count])
        found = lexicon.lookup(phrase)
        if found:
            return position + len(phrase), [Piece("named", phrase, named=found)]
    return None


# --- resolving the parts -------------------------------------------------------------------------


class Unplaced(Exception):
    """A part that does not fit the question's entity: the parser does not answer."""


class Ambiguous(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Reading:
    """What the parser understood: the plan, how to word its answer, and what it asks back."""

    plan: QueryPlan
    family: str
    subject: str


@dataclass
class _Build:
    entity: str
    filters: list[Filter] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)
    measure: str = "list"
    measure_field: str | None = None
    group: list[GroupBy] = field(default_factory=list)
    order: list[OrderBy] = field(default_factory=list)
    limit: int | None = None
    subject: list[str] = field(default_factory=list)


def _field(entity: str, word: str) -> str:
    path = _FIELDS.get(entity, {}).get(word)
    if path is None:
        raise Unplaced(word)
    return path


def _kind(entity: str, path: str) -> str:
    try:
        return resolve_field(CATALOGUE[entity], path).spec.kind
    except PlanInvalid as error:
        raise Unplaced(path) from error


def _status_filters(entity: str, status: str, negated: bool) -> list[Filter]:
    today = RelativeDate(relative="today")
    if entity == "deals":
        if status in ("open", "won", "lost"):
            return [Filter(field="status", op="ne" if negated else "eq", value=status)]
        if status == "closed":
            return [Filter(field="status", op="not_in" if negated else "in", value=["won", "lost"])]
        if status == "overdue" and not negated:
            return [Filter(field="status", value="open"), Filter(field="expected_close_date", op="lt", value=today)]
    if entity == "tasks":
        if status == "open":
            return [Filter(field="status", op="not_in" if negated else "in", value=["open", "in_progress"])]
        if status in ("done", "cancelled", "in_progress"):
            return [Filter(field="status", op="ne" if negated else "eq", value=status)]
        if status == "closed":
            return [Filter(field="status", op="not_in" if negated else "in", value=["done", "cancelled"])]
        if status == "overdue" and not negated:
            return [
                Filter(field="status", op="in", value=["open", "in_progress"]),
                Filter(field="due_date", op="lt", value=today),
            ]
    raise Unplaced(status)


def _named_filter(entity: str, piece: Piece, connector: str, negated: bool) -> tuple[Filter, str]:
    fields = _NAMED_FIELDS.get(entity, {})
    options = [n for n in piece.named if n.kind in fields]
    if connector == "owner":
        options = [n for n in options if n.kind == "owner"]
    if any(n.exact for n in options):
        options = [n for n in options if n.exact]
    distinct = {(n.kind, n.value): n for n in options}
    if not distinct:
        raise Unplaced(piece.text)
    if len(distinct) > 1:
        labels = sorted({f"{n.label} ({_KIND_WORDS[n.kind]})" for n in distinct.values()})
        kinds = {n.kind for n in distinct.values()}
        if len(kinds) == 1:
            labels = sorted({n.label for n in distinct.values()})
        if len(labels) == 1:  # one name, several records of the same kind (two companies called Acme)
            raise Ambiguous(
                f'More than one {_KIND_WORDS[options[0].kind]} is called "{labels[0]}"; which one do you mean?'
            )
        raise Ambiguous(f"Which one do you mean: {', '.join(labels[:5])}{' (and more)' if len(labels) > 5 else ''}?")
    named = next(iter(distinct.values()))
    path = fields[named.kind]
    op = "ne" if negated else "eq"
    return Filter(field=path, op=op, value=named.value, include_null=negated), named.label


_KIND_WORDS = {
    "company": "company",
    "contact": "contact",
    "owner": "owner",
    "stage": "stage",
    "pipeline": "pipeline",
    "country": "country",
    "industry": "industry",
    "city": "city",
}


def _date_field(entity: str, hint: str | None) -> str:
    found = _DEFAULT_DATE.get(entity) if hint is None else _DATE_HINTS[hint].get(entity)
    if found is None:
        raise Unplaced(hint or "period")
    return found


def _number_field(entity: str, word: str) -> str:
    if word == "?":
        raise Unplaced(word)
    path = _FIELDS.get(entity, {}).get(word) if word else _DEFAULT_NUMBER.get(entity)
    if path is None or _kind(entity, path) != "number":
        raise Unplaced(word or "number")
    return path


def _inferred_entity(pieces: list[Piece]) -> str | None:
    """The entity a question without an entity word can only be about: deals, for a win rate,
    "won"/"lost", or a stage or pipeline name."""
    if any(p.kind == "measure" and p.value == "win_rate" for p in pieces):
        return "deals"
    if any(p.kind == "status" and p.value in ("won", "lost") for p in pieces):
        return "deals"
    if any(p.kind == "hint" and p.word == "due" and p.op != "implied" for p in pieces):
        return "tasks"  # "what's due today": only tasks fall due
    if any(p.kind == "named" and all(n.kind in ("stage", "pipeline") for n in p.named) for p in pieces):
        return "deals"
    return None


_FOLLOW_UP = re.compile(
    r"^(?:and|also|then|now|what about|how about|only|just|same)\b|\b(?:them|those|these|they|ones)\b"
    r"|^(?:how many|which|what|who) are\b"
)


def compose(
    pieces: list[Piece],
    *,
    lexicon: Lexicon | None,
    me: uuid.UUID | None,
    previous: QueryPlan | None,
    follow_up: bool = False,
) -> Reading | None:
    """The plan the parts make, or None when they make none (or raises :class:`Ambiguous`)."""
    entities = {p.value for p in pieces if p.kind == "entity"}
    if len(entities) > 1:
        return None
    meaningful = [p for p in pieces if p.kind not in ("filler", "connector", "hint")]
    if not meaningful:
        return None
    inferred = _inferred_entity(pieces)
    base: QueryPlan | None = None
    if entities:
        entity = next(iter(entities))
        words = [p for p in pieces if p.kind == "entity" and p.text]
        narrowing = words and all(_ENTITY_WORDS[p.word][1] for p in words)
        if follow_up and previous is not None and previous.entity == entity and narrowing:
            base = previous  # "how many of them are customers": of those
    elif previous is not None and (inferred is None or follow_up):
        entity, base = previous.entity, previous
    elif inferred is not None:
        entity = inferred
    else:
        return None
    if entity not in _FIELDS:
        return None
    try:
        return _compose(entity, pieces, lexicon=lexicon, me=me, base=base)
    except Unplaced:
        return None


def _compose(
    entity: str, pieces: list[Piece], *, lexicon: Lexicon | None, me: uuid.UUID | None, base: QueryPlan | None
) -> Reading:
    build = _Build(entity)
    hint: str | None = None
    implied_hint: str | None = None
    status_given = False
    connector = ""
    negate = False
    last_named: tuple[str, int] | None = None  # (field, index in filters) for "X or Y"
    pending_conj = False
    singular = False
    top: Piece | None = None
    order_piece: Piece | None = None
    periods: list[tuple[Piece, str | None]] = []
    entity_word = ""
    past_tense = False
    mine = False
    for piece in pieces:
        kind = piece.kind
        if kind == "filler" and piece.text in ("did", "have", "has", "had"):
            past_tense = True  # "did we close": closed, or won? not ours to pick
        if kind == "hint" and piece.word == "closing" and past_tense and piece.text.endswith("close"):
            raise Unplaced("did close")
        if pending_conj and kind not in ("named", "filler", "connector", "not"):
            raise Unplaced("conj")
        if kind == "filler":
            continue
        if kind == "connector":
            if piece.word == "owner" and any(p.kind == "hint" and p.word == "created" for p in pieces):
                raise Unplaced("created by")  # the creator is not the owner
            connector = piece.word
            if piece.text != "of":
                build.subject.append(piece.text)
            continue
        if kind == "not":
            negate = True
            build.subject.append(piece.text)
            continue
        if negate and kind not in ("named", "status"):
            raise Unplaced("not")
        if kind == "entity":
            entity_word = piece.word
            singular = singular or piece.singular
            for path, op, value in _ENTITY_WORDS[piece.word][1]:
                build.filters.append(Filter(field=path, op=op, value=value))
            if piece.text:
                build.subject.append(piece.word)
        elif kind == "status":
            build.filters += _status_filters(entity, piece.value, piece.negated)
            status_given = True
            if piece.text:
                build.subject.append(piece.text.strip())
        elif kind == "priority":
            if entity != "tasks":
                raise Unplaced("priority")
            build.filters.append(Filter(field="priority", value=piece.value))
            build.subject.append(piece.text)
        elif kind == "direction":
            if entity != "activities":
                raise Unplaced("direction")
            build.filters.append(Filter(field="direction", value=piece.value))
            build.subject.append(piece.text)
        elif kind == "named":
            made, label = _named_filter(entity, piece, connector, negate)
            if pending_conj:
                assert last_named is not None
                field_path, at = last_named
                if made.field != field_path or negate:
                    raise Unplaced("conj")
                earlier = build.filters[at]
                values = earlier.value if isinstance(earlier.value, list) else [earlier.value]
                build.filters[at] = earlier.model_copy(update={"op": "in", "value": [*values, made.value]})
                pending_conj = False
            else:
                build.filters.append(made)
                last_named = (made.field, len(build.filters) - 1)
            if made.field in _SHOWN_FOR:
                build.shown.append(_SHOWN_FOR[made.field])
            build.subject.append(label)
            negate = False
            connector = ""
            continue
        elif kind == "conj":
            if last_named is None or pending_conj:
                raise Unplaced("conj")
            pending_conj = True
            build.subject.append(piece.text)
            continue
        elif kind == "me":
            if me is None:
                raise Unplaced("me")
            build.filters.append(Filter(field=_OWNER_FIELD.get(entity, "owner.id"), value=str(me)))
            mine = True
        elif kind == "inactive" or kind == "never":
            if entity not in _LAST_ACTIVITY_ENTITIES:
                raise Unplaced(kind)
            if kind == "never":
                build.filters.append(Filter(field="last_activity_at", op="is_null"))
            else:
                build.filters.append(
                    Filter(
                        field="last_activity_at",
                        op="lt",
                        value=RelativeDate(relative="last_n_days", n=piece.n),
                        include_null=True,
                    )
                )
            build.shown.append("last_activity_at")
            build.subject.append(f"with no activity in the last {piece.n} days" if kind == "inactive" else piece.text)
        elif kind == "presence":
            present = _PRESENCE.get(entity, {}).get(piece.word)
            if present is None:
                raise Unplaced(piece.word)
            path = present
            if piece.op == "not_null" and path in _DATE_PRESENCE_HINTS:
                hint = _DATE_PRESENCE_HINTS[path]  # "with a close date this month"
            build.filters.append(Filter(field=path, op=piece.op))
            build.subject.append(piece.text)
        elif kind == "compare":
            path = _number_field(entity, piece.word)
            build.filters.append(Filter(field=path, op=piece.op, value=piece.value))
            if piece.currency is not None:
                build.filters.append(_currency_filter(entity, piece.currency, lexicon))
            build.shown.append(path)
            if piece.text:
                build.subject.append(piece.text)
        elif kind == "hint":
            if piece.op == "implied":
                implied_hint = implied_hint or piece.word
            else:
                hint = piece.word
                build.subject.append(
                    re.sub(r"^(?:that |which |who )?(?:were |was |are |is |got |have been |has been )?", "", piece.text)
                )
        elif kind == "period":
            periods.append((piece, hint))
            build.subject.append(piece.text)
            hint = None
        elif kind == "measure":
            if piece.value == "win_rate":
                implied_hint = "closed"  # "win rate this year": deals closed this year
            if piece.value == "median":
                raise Unplaced("median")
            if build.measure != "list" and not (build.measure == piece.value and not piece.word):
                raise Unplaced("two measures")
            build.measure = piece.value
            if piece.word:
                build.measure_field = piece.word
        elif kind == "top" or kind == "recent":
            if top is not None:
                raise Unplaced("two tops")
            top = piece
        elif kind == "order":
            order_piece = piece
        elif kind == "group":
            if piece.word and piece.text.startswith("by ") and _kind(entity, _field(entity, piece.word)) == "number":
                order_piece = Piece("order", piece.text, word=piece.word)  # "by amount" sorts
                continue
            grouped = _group_by(entity, piece)
            if grouped.date_part and (hint or implied_hint):  # "won per month": by the month closed
                grouped = GroupBy(field=_date_field(entity, hint or implied_hint), date_part=grouped.date_part)
            build.group.append(grouped)
            build.subject.append(piece.text)
        else:
            raise Unplaced(kind)
        connector = ""
    if pending_conj or negate:
        raise Unplaced("dangling")
    if hint == "created" and not periods:  # "new deals": new since when?
        raise Unplaced("new")
    # periods
    for piece, period_hint in periods:
        chosen = period_hint or implied_hint
        if chosen is None and base is not None:
            chosen_field = _previous_date_field(base) or _date_field(entity, None)
        else:
            chosen_field = _date_field(entity, chosen)
        build.filters.append(Filter(field=chosen_field, op="within", value=piece.value))
        build.shown.append(chosen_field)
        if chosen == "closing" and not status_given and entity == "deals":
            build.filters.append(Filter(field="status", value="open"))
            build.subject.insert(0, "open")
        if chosen == "due" and not status_given and entity == "tasks":
            build.filters.append(Filter(field="status", op="in", value=["open", "in_progress"]))
            build.subject.insert(0, "open")
    if hint == "due" and not periods:
        raise Unplaced("due when?")
    if not any(p.kind == "entity" and p.text for p in pieces) and base is None:  # "what's due today"
        build.subject.insert(1 if build.subject[:1] == ["open"] else 0, entity)
    subject = " ".join(s for s in build.subject if s).strip() or entity
    subject = re.sub(r"\b(?:(?:that|which|who) )?(?:are|is|were|was) ", "", subject)  # "deals are overdue"
    if mine:
        subject += " assigned to you" if entity == "tasks" else " owned by you"
    if base is not None:
        return _follow_up(base, build, top, order_piece, subject, lexicon)
    return _finish(build, top, order_piece, singular, entity_word, subject, lexicon)


def _currency_filter(entity: str, currency: str, lexicon: Lexicon | None) -> Filter:
    if entity != "deals" or lexicon is None:
        raise Unplaced("currency")
    if currency not in lexicon.currencies:
        raise Unplaced("currency")  # "$5,000" where no deal is in dollars: not ours to convert
    return Filter(field="currency", value=currency)


def _group_by(entity: str, piece: Piece) -> GroupBy:
    if piece.value:
        return GroupBy(field=_DEFAULT_DATE.get(entity, "created_at"), date_part=piece.value)
    path = _field(entity, piece.word)
    if _kind(entity, path) in ("number", "text"):
        raise Unplaced(piece.word)
    if _kind(entity, path) in ("date", "datetime"):
        return GroupBy(field=path, date_part="month")
    return GroupBy(field=path)


def _previous_date_field(plan: QueryPlan) -> str | None:
    fields = {f.field for f in plan.filters if f.op == "within"}
    return next(iter(fields)) if len(fields) == 1 else None


def _order(entity: str, piece: Piece) -> OrderBy:
    path = _field(entity, piece.word)
    kind = _kind(entity, path)
    if kind == "text":
        raise Unplaced(piece.word)
    direction = piece.op or ("desc" if kind in ("number", "date", "datetime") else "asc")
    return OrderBy(field=path, direction=direction)


_AMOUNT_TOTAL = Aggregation(function="sum", field="amount", alias="total_amount")


def _finish(
    build: _Build,
    top: Piece | None,
    order_piece: Piece | None,
    singular: bool,
    entity_word: str,
    subject: str,
    lexicon: Lexicon | None,
) -> Reading:
    entity = build.entity
    mixed = lexicon is None or lexicon.mixed_currencies
    if (
        order_piece is not None
        and _kind(entity, _field(entity, order_piece.word))
        not in (
            "number",
            "date",
            "datetime",
        )
        and top is None
        and build.measure == "list"
        and order_piece.text.startswith("by ")
    ):
        # "deals by stage" is a breakdown, not a sort
        build.group.append(_group_by(entity, Piece("group", order_piece.text, word=order_piece.word)))
        order_piece = None
    if build.measure == "win_rate":
        if entity != "deals" or top or order_piece or any(g.field in ("stage.name", "status") for g in build.group):
            raise Unplaced("win rate")  # (a stage is won or lost as a whole: no rate per stage)
        build.filters.append(Filter(field="status", op="in", value=["won", "lost"]))
        plan = QueryPlan(
            entity="deals",
            filters=build.filters,
            aggregations=[Aggregation(function="count", alias="deals")],
            group_by=[*build.group, GroupBy(field="status")],
        )
        return Reading(plan, "win_rate", _strip_measure(subject))
    if build.measure in ("count", "sum", "avg", "min", "max") or build.group:
        if top is not None and not build.group:
            raise Unplaced("top with a measure")
        function = build.measure if build.measure != "list" else "count"
        aggregations = [Aggregation(function="count", alias="count")]
        currency_group: list[GroupBy] = []
        if function != "count":
            path = _number_field(entity, build.measure_field or "")
            alias = {"sum": "total", "avg": "average", "min": "minimum", "max": "maximum"}[function]
            alias = f"{alias}_{path.replace('.', '_')}"
            aggregations = [
                Aggregation(function=function, field=path, alias=alias),
                Aggregation(function="count", alias="count"),
            ]
            if path == "amount" and mixed:
                currency_group = [GroupBy(field="currency")]
        elif build.measure_field:
            raise Unplaced("count of a field")
        groups = [*build.group, *currency_group]
        order: list[OrderBy] = []
        limit: int | None = None
        if top is not None:  # "top 5 owners by deal value"
            if top.kind != "top" or len(build.group) != 1 or currency_group:
                raise Unplaced("top groups")
            order = [OrderBy(field=aggregations[0].name, direction=top.op)]
            limit = top.n or 10
        elif build.group and not any(g.date_part for g in build.group):
            order = [OrderBy(field=aggregations[0].name, direction="desc")]
        elif build.group:
            order = [OrderBy(field=g.name) for g in build.group]
        plan = QueryPlan(
            entity=entity,
            filters=build.filters,
            aggregations=aggregations,
            group_by=groups,
            order_by=order,
            limit=limit,
        )
        family = "count" if function == "count" and not groups else f"measure_{function}"
        return Reading(plan, family, _strip_measure(subject))
    # a listing
    if build.measure_field:
        raise Unplaced("field without a measure")
    order = []
    limit = None
    if top is not None:
        if top.kind == "recent":
            path = _RECENCY_DATE.get(entity, "created_at")
            order = [OrderBy(field=path, direction=top.op)]
            build.shown.append(path)
        else:
            if order_piece is not None:
                ordered = _order(entity, order_piece)
                if _kind(entity, ordered.field) not in ("number", "date", "datetime"):
                    raise Unplaced("top by a name")
                order = [OrderBy(field=ordered.field, direction=top.op)]
            else:
                default = _DEFAULT_NUMBER.get(entity)
                if default is None:
                    raise Unplaced("top by what")
                order = [OrderBy(field=default, direction=top.op)]
            build.shown.append(order[0].field)
        limit = top.n or (1 if singular else 10)
        order_piece = None
    elif order_piece is not None:
        order = [_order(entity, order_piece)]
        build.shown.append(order[0].field)
    fields = list(CATALOGUE[entity].default_fields)
    for path in build.shown:
        if path not in fields and _kind(entity, path) != "uuid":
            fields.append(path)
    if entity == "deals" and any(f.field == "status" and f.value == "lost" for f in build.filters):
        fields.append("lost_reason")
    if entity == "deals" and mixed and "amount" in fields:
        fields.insert(fields.index("amount") + 1, "currency")  # amounts in several currencies: say which
    totals = [_AMOUNT_TOTAL] if entity == "deals" and not mixed and top is None else []
    if not order:
        order = _default_order(entity, build.filters)
    plan = QueryPlan(
        entity=entity, filters=build.filters, fields=fields, totals=totals, order_by=order, limit=limit or 50
    )
    return Reading(plan, "list_top" if top is not None else "list", subject)


def _default_order(entity: str, filters: list[Filter]) -> list[OrderBy]:
    dated = [f.field for f in filters if f.op == "within"]
    if dated:
        return [OrderBy(field=dated[0])]
    if any(f.field == "last_activity_at" for f in filters):
        return [OrderBy(field="last_activity_at")]
    if entity == "deals":
        return [OrderBy(field="amount", direction="desc")]
    if entity == "activities":
        return [OrderBy(field="occurred_at", direction="desc")]
    if entity == "tasks":
        return [OrderBy(field="due_date")]
    return [OrderBy(field="name")]


def _strip_measure(subject: str) -> str:
    return subject.strip() or "records"


def _family_of(plan: QueryPlan) -> str:
    """How a previous aggregate plan is worded: a win rate, a count, or a measure."""
    if not plan.is_aggregate:
        return "follow_up"
    closed = any(f.field == "status" and f.op == "in" and f.value == ["won", "lost"] for f in plan.filters)
    if closed and plan.group_by and plan.group_by[-1].field == "status" and plan.aggregations[0].function == "count":
        return "win_rate"
    first = plan.aggregations[0]
    if first.function == "count":
        return "count" if not plan.group_by else "measure_count"
    return f"measure_{first.function}"


def _follow_up_subject(entity: str, subject: str) -> str:
    """ "matching deals (last month)": the previous question's records, changed as the follow-up says."""
    changed = subject.strip()
    return f"matching {entity}" + (f" ({changed})" if changed and changed != entity else "")


def _follow_up(
    base: QueryPlan, build: _Build, top: Piece | None, order_piece: Piece | None, subject: str, lexicon: Lexicon | None
) -> Reading:
    """The previous plan changed by what the follow-up says: a filter on a field the previous plan
    filtered replaces that filter; a new measure, group or order replaces the previous one."""
    changed = {f.field for f in build.filters}
    filters = [f for f in base.filters if f.field not in changed] + build.filters
    merged = _Build(
        base.entity, filters=filters, shown=build.shown, measure=build.measure, measure_field=build.measure_field
    )
    merged.group = build.group
    if build.measure == "list" and not build.group and top is None and order_piece is None and base.is_aggregate:
        # the same breakdown over the changed filters
        plan = base.model_copy(update={"filters": filters})
        family = _family_of(plan)
        return Reading(plan, family, subject if family == "win_rate" else _follow_up_subject(base.entity, subject))
    if build.measure == "list" and build.group and base.is_aggregate:  # "by owner": the same measure, grouped
        if _family_of(base) == "win_rate":
            merged.measure = "win_rate"
            merged.filters = [f for f in filters if f.field != "status"]
        elif base.aggregations[0].function != "count" and base.aggregations[0].field:
            word = next((w for w, path in _FIELDS[base.entity].items() if path == base.aggregations[0].field), None)
            if word is None:
                raise Unplaced("measure")
            merged.measure, merged.measure_field = base.aggregations[0].function, word
    if build.measure == "list" and not build.group and top is None and order_piece is None:
        fields = list(base.fields)
        for path in build.shown:
            if fields and path not in fields and _kind(base.entity, path) != "uuid":
                fields.append(path)
        plan = base.model_copy(update={"filters": filters, "fields": fields})
        return Reading(plan, "follow_up", _follow_up_subject(base.entity, subject))
    reading = _finish(merged, top, order_piece, False, "", subject, lexicon)
    if reading.plan.is_aggregate or top is not None:
        return Reading(
            reading.plan,
            reading.family,
            _follow_up_subject(base.entity, subject) if reading.family != "win_rate" else subject,
        )
    plan = reading.plan.model_copy(
        update={"fields": base.fields or reading.plan.fields, "limit": base.limit or reading.plan.limit}
    )
    if order_piece is not None:
        fields = list(plan.fields)
        if fields and plan.order_by[0].field not in fields:
            fields.append(plan.order_by[0].field)
        plan = plan.model_copy(update={"fields": fields})
    return Reading(plan, "follow_up", _follow_up_subject(base.entity, subject))


def parse(
    question: str,
    *,
    today: date,
    lexicon: Lexicon | None = None,
    me: uuid.UUID | None = None,
    previous: QueryPlan | None = None,
) -> Reading | None:
    """The reading of a whole question, or None. Raises :class:`Ambiguous` with the question back."""
    text = normalise(question)
    if not text:
        return None
    pieces = read(text, today, lexicon)
    if pieces is None:
        return None
    return compose(pieces, lexicon=lexicon, me=me, previous=previous, follow_up=bool(_FOLLOW_UP.search(text)))


@functools.cache
def reserved_words() -> frozenset[str]:
    """Words the parser reads as vocabulary: never taken as a partial name in the lexicon."""
    words: set[str] = set()
    for pattern in (_FILLERS, *_STATUS_WORDS.values(), *_HINT_PHRASES.values()):
        for phrase in pattern.split("|"):
            words.update(phrase.split())
    words.update(w for phrase in [*_ENTITY_WORDS, *_SINGULARS, *_FIELD_WORDS] for w in phrase.split())
    words.update(
        [
            "top",
            "bottom",
            "best",
            "worst",
            "biggest",
            "largest",
            "highest",
            "smallest",
            "lowest",
            "latest",
            "newest",
            "recent",
            "last",
            "oldest",
            "first",
            "total",
            "sum",
            "average",
            "mean",
            "count",
            "number",
            "how",
            "many",
            "much",
            "by",
            "per",
            "not",
            "except",
            "or",
            "and",
            "my",
            "mine",
            "over",
            "under",
            "above",
            "below",
            "between",
            "more",
            "less",
            "than",
            "pipeline",
            "win",
            "rate",
            "today",
            "yesterday",
            "tomorrow",
            "week",
            "month",
            "quarter",
            "year",
        ]
    )
    return frozenset(words)


__all__ = ["Ambiguous", "Reading", "normalise", "parse", "reserved_words"]
