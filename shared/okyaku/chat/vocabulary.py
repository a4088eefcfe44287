"""The fallback parser's vocabulary: words for entities and fields, and the whole-question
patterns of each family it answers (see :mod:`okyaku.chat.fallback`)."""

from __future__ import annotations

import re

from okyaku.chat.periods import NUMBER, UNIT

ENTITY_WORDS = {
    "companies": ("companies", "company", "accounts", "account", "organisations", "organizations"),
    "contacts": ("contacts", "contact", "people", "persons", "leads", "lead"),
    "deals": ("deals", "deal", "opportunities", "opportunity"),
    "activities": ("activities", "activity", "interactions", "touchpoints"),
    "tasks": ("tasks", "task", "to-dos", "todos"),
}
# Words for a field, per entity: what "by stage", "sort by amount" may mean.
FIELD_WORDS: dict[str, dict[str, str]] = {
    "companies": {
        "owner": "owner.name",
        "size": "employee_count",
        "employees": "employee_count",
        "revenue": "annual_revenue",
    },
    "contacts": {
        "company": "company.name",
        "owner": "owner.name",
        "stage": "lifecycle_stage",
        "lifecycle": "lifecycle_stage",
        "status": "lead_status",
        "score": "lead_score",
        "title": "job_title",
        "country": "company.country",
    },
    "deals": {
        "stage": "stage.name",
        "pipeline": "pipeline.name",
        "company": "company.name",
        "owner": "owner.name",
        "contact": "contact.name",
        "close date": "expected_close_date",
        "closing date": "expected_close_date",
        "value": "amount",
        "size": "amount",
        "country": "company.country",
        "industry": "company.industry",
    },
    "activities": {
        "contact": "contact.name",
        "company": "company.name",
        "deal": "deal.name",
        "owner": "owner.name",
        "date": "occurred_at",
    },
    "tasks": {
        "assignee": "assignee.name",
        "owner": "assignee.name",
        "contact": "contact.name",
        "due date": "due_date",
        "due": "due_date",
    },
}
# "only those in X": the fields X might be a value of, per entity.
IN_FIELDS = {
    "companies": ("country", "city", "industry"),
    "contacts": ("company.country", "company.city", "company.name", "lifecycle_stage"),
    "deals": ("stage.name", "company.country", "company.city", "pipeline.name", "company.name"),
    "activities": ("company.name", "type"),
    "tasks": ("status", "priority"),
}


CLOSING = re.compile(
    r"(?:which |what |show(?: me)? |list )?(?:the )?(?:open )?(?:deals?|opportunities) (?:that )?(?:are )?"
    r"(?:closing|close|expected to close|due to close|set to close)(?: in| during| by)? (?P<period>.+)"
)
WON_LOST = re.compile(
    r"(?:which |what |show(?: me)? |list |how many )?(?:the )?(?:deals?|opportunities) (?:did )?(?:we |have we |were |that were |that we )?"  # noqa: E501
    r"(?P<outcome>won|win|lost|lose|closed won|closed lost)(?: in| during| over)?(?: (?P<period>.+?))?"
    r"(?: and (?:their|the) (?:total|sum|value|total value|amount))?"
)
WON_LOST_2 = re.compile(
    r"(?:show(?: me)? |list |what are )?(?:the |our )?(?P<outcome>won|lost) (?:deals?|opportunities)(?: in| during| over)?(?: (?P<period>.+?))?"  # noqa: E501
    r"(?: and (?:their|the) (?:total|sum|value|total value|amount))?"
)
HOTTEST = re.compile(
    r"(?:who are |what are |which are |show(?: me)? |list |give me )?(?:my |our |the )?"
    r"(?:top (?P<n1>" + NUMBER + r") )?(?P<adj>hottest|hot|best|warmest|top|highest[- ]scor\w+|most promising)"
    r"(?: (?P<n2>" + NUMBER + r"))? (?:leads?|contacts?|prospects?)(?: right now| now| today)?"
)
ACTIVITIES = re.compile(
    r"(?:summari[sz]e|summary of|give me a summary of|show(?: me)?|list|what are|what were|recap)"
    r"(?: all)?(?: (?:our|the|my|recent|latest))* (?P<kind>activities|activity|interactions|calls|meetings|emails|notes|history)"  # noqa: E501
    r"(?: (?:with|for|at|involving|of) (?P<name>.+))?"
)
PIPELINE = re.compile(
    r"(?:what is |what's |show(?: me)? |give me )?(?:the |our |my )?(?:total |open )?"
    r"(?:pipeline(?: value| amount| total)?|value of (?:the |our )?(?:open )?(?:pipeline|deals))"
    r"(?: (?:by|per|for each|in each|broken down by) (?P<group>stage|pipeline|owner|company))?"
)
NOT_TALKED = re.compile(
    r"(?:which |what |show(?: me)? |list )?(?:the |our |my |all )?(?P<entity>contacts|people|companies|accounts|customers|leads)"  # noqa: E501
    r"(?: that| who| which)?(?: have we| did we| we| i)?(?: have| had)?(?: not| haven't| hasn't| have not| with no| without| had no| no)(?: been)?"  # noqa: E501
    r" (?:talked to|spoken to|spoken with|talked with|contacted|touched|reached out to|heard from|engaged with|"
    r"any activity|activity|activities|contact)"
    r"(?: (?:in|for|since|during|over|within))?(?: the)?(?: (?:last|past))? (?P<n>"
    + NUMBER
    + r") (?P<unit>"
    + UNIT
    + r")"
)
COUNT_BY = re.compile(
    r"(?:how many|count(?: of)?(?: the)?(?: all)?|number of|the number of|total number of) (?P<entity>[a-z-]+)"
    r"(?: do we have| are there| we have)?"
    r"(?: (?:by|per|for each|in each|grouped by|broken down by) (?P<group>[a-z ]+?))?"
    r"(?: (?:created|added) (?P<period>.+))?"
)
SORT = re.compile(
    r"(?:and |now |then |ok )?(?:sort|order|rank)(?: them| it| those| these| the results| the list| that)? by"
    r" (?P<field>[a-z_ ]+?)(?: (?P<dir>ascending|descending|asc|desc|highest first|lowest first|biggest first|smallest first"  # noqa: E501
    r"|largest first|newest first|oldest first|most recent first))?"
)
ONLY_IN = re.compile(
    r"(?:and |now |then |what about )?(?:only|just)(?: show)?(?: me)?(?: the ones| those| these| ones| the)?(?: that are| which are)?"  # noqa: E501
    r" (?:in|from|at) (?P<value>.+)"
)
TOP_N = re.compile(r"(?:and |now )?(?:only |just )?(?:show |give me )?(?:the )?(?:top|first) (?P<n>" + NUMBER + r")")
TASK = re.compile(
    r"(?:create|add|make|set up|schedule|open)(?: me)? (?:a |an )?(?:new )?(?:follow[- ]up )?(?:task|reminder|to-?do)"
    r" (?:to |for me to |for us to |: ?)(?P<what>.+)"
)
TASK_WHEN = re.compile(
    r"(?P<what>.+?) (?P<when>today|tomorrow|(?:on |by |this |next )?(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"  # noqa: E501
    r"|(?:in|within) (?P<n>" + NUMBER + r") (?P<unit>" + UNIT + r")|(?:on |by )\d{4}-\d\d-\d\d|next week|next month)"
)
PERSON_VERB = re.compile(
    r"\b(?:call|phone|ring|email|e-mail|meet(?: with)?|ping|text|contact|follow up with|check in with|reach out to|remind)\s+"  # noqa: E501
    r"(?P<name>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)?)"
)
DIRECTION_DESC = (
    "descending",
    "desc",
    "highest first",
    "biggest first",
    "largest first",
    "newest first",
    "most recent first",
)
DIRECTION_ASC = ("ascending", "asc", "lowest first", "smallest first", "oldest first")
