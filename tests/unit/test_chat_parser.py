"""The compositional parser, pure: questions → the typed plan, with an organization's lexicon.
Every plan it builds must validate; anything it cannot place is refused, never guessed."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from okyaku.chat.catalogue import validate_plan
from okyaku.chat.fallback import CANNOT, parse_question
from okyaku.chat.lexicon import build_lexicon, capitalised_words
from okyaku.chat.parser import reserved_words
from okyaku.chat.plan import QueryPlan

WEDNESDAY = date(2026, 12, 2)
ME = uuid.UUID("00000000-0000-0000-0000-0000000000aa")
ANNA, BOB = "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"
ACME, GLOBEX = "00000000-0000-0000-0000-000000000003", "00000000-0000-0000-0000-000000000004"
SARAH, JOHN_S, JOHN_D = (f"00000000-0000-0000-0000-00000000001{i}" for i in range(3))


def ask(question: str, *, currencies: tuple[str, ...] = ("USD",), previous: QueryPlan | None = None):
    lexicon = build_lexicon(
        stages=["Qualification", "Proposal", "Negotiation", "Closed Won", "Closed Lost"],
        pipelines=["Sales", "Partners"],
        owners=[(ANNA, "Anna Schmidt"), (BOB, "Bob Jones")],
        companies=[(ACME, "Acme Corp"), (GLOBEX, "Globex")],
        contacts=[(SARAH, "Sarah Lee"), (JOHN_S, "John Smith"), (JOHN_D, "John Doe")],
        countries=["Germany", "France"],
        industries=["Software"],
        currencies=currencies,
        reserved=reserved_words(),
        capitalised=capitalised_words(question),
    )
    parsed = parse_question(question, today=WEDNESDAY, lexicon=lexicon, me=ME, previous=previous)
    if parsed.plan is not None:
        validate_plan(parsed.plan, row_limit=200)
    return parsed


def filters(parsed) -> set[tuple[str, str, object]]:
    out = set()
    for f in parsed.plan.filters:
        value = f.value.model_dump(exclude_none=True) if hasattr(f.value, "model_dump") else f.value
        out.add((f.field, f.op, repr(value)))
    return out


def f(field: str, op: str, value: object) -> tuple[str, str, object]:
    return (field, op, repr(value))


@pytest.mark.parametrize(
    ("question", "entity", "expected"),
    [
        (
            "Show me all deals closing this month",
            "deals",
            {f("status", "eq", "open"), f("expected_close_date", "within", {"relative": "this_month"})},
        ),
        ("How many open deals are there", "deals", {f("status", "eq", "open")}),
        ("deals owned by Anna Schmidt", "deals", {f("owner.id", "eq", ANNA)}),
        ("Which deals are in negotiation?", "deals", {f("stage.name", "eq", "Negotiation")}),
        ("deals over 100000", "deals", {f("amount", "gt", 100000.0)}),
        ("deals worth more than 100k", "deals", {f("amount", "gt", 100000.0)}),
        ("deals of at least 10,000", "deals", {f("amount", "gte", 10000.0)}),
        ("Show contacts at Acme Corp", "contacts", {f("company.id", "eq", ACME)}),
        (
            "tasks due today",
            "tasks",
            {f("due_date", "within", {"relative": "today"}), f("status", "in", ["open", "in_progress"])},
        ),
        (
            "my overdue tasks",
            "tasks",
            {
                f("assignee.id", "eq", str(ME)),
                f("status", "in", ["open", "in_progress"]),
                f("due_date", "lt", {"relative": "today"}),
            },
        ),
        (
            "leads created this week",
            "contacts",
            {f("lifecycle_stage", "eq", "lead"), f("created_at", "within", {"relative": "this_week"})},
        ),
        ("deals in the Partners pipeline", "deals", {f("pipeline.name", "eq", "Partners")}),
        ("deals not in negotiation", "deals", {f("stage.name", "ne", "Negotiation")}),
        ("deals without an amount", "deals", {f("amount", "is_null", None)}),
        ("deals in Proposal or Negotiation", "deals", {f("stage.name", "in", ["Proposal", "Negotiation"])}),
        ("contacts in Germany", "contacts", {f("company.country", "eq", "Germany")}),
        (
            "how many calls last week",
            "activities",
            {f("type", "eq", "call"), f("occurred_at", "within", {"relative": "last_week"})},
        ),
        ("deals created in Q3", "deals", {f("created_at", "within", {"start": "2026-07-01", "end": "2026-10-01"})}),
        (
            "deals lost since June",
            "deals",
            {f("status", "eq", "lost"), f("closed_at", "within", {"start": "2026-06-01"})},
        ),
        ("Anna's deals", "deals", {f("owner.id", "eq", ANNA)}),
        ("Which companies are in the software industry?", "companies", {f("industry", "eq", "Software")}),
        ("Who works at Globex?", "contacts", {f("company.id", "eq", GLOBEX)}),
        ("how many deals are worth more than 50k", "deals", {f("amount", "gt", 50000.0)}),
        ("show me deals where amount > 50000", "deals", {f("amount", "gt", 50000.0)}),
        (
            "deals with an expected close date this month",
            "deals",
            {
                f("expected_close_date", "not_null", None),
                f("expected_close_date", "within", {"relative": "this_month"}),
                f("status", "eq", "open"),
            },
        ),
        (
            "tasks due by Friday",
            "tasks",
            {f("due_date", "within", {"end": "2026-12-05"}), f("status", "in", ["open", "in_progress"])},
        ),
        (
            "How many deals did Anna Schmidt win this year",
            "deals",
            {f("owner.id", "eq", ANNA), f("status", "eq", "won"), f("closed_at", "within", {"relative": "this_year"})},
        ),
    ],
)
def test_questions_compose_into_plans(question, entity, expected):
    parsed = ask(question)
    assert parsed.outcome == "plan" and parsed.plan.entity == entity
    assert filters(parsed) == expected


def test_find_contacts_not_talked_to_keeps_the_never_contacted():
    parsed = ask("Find contacts I haven't talked to in 30 days")
    (only,) = parsed.plan.filters
    assert (only.field, only.op, only.value.n, only.include_null) == ("last_activity_at", "lt", 30, True)


def test_measures():
    rate = ask("What is our win rate?")
    assert rate.family == "win_rate" and [g.field for g in rate.plan.group_by] == ["status"]
    average = ask("average deal size")
    assert [(a.function, a.field) for a in average.plan.aggregations] == [("avg", "amount"), ("count", None)]
    top = ask("top 5 deals by amount")
    assert top.plan.limit == 5 and [(o.field, o.direction) for o in top.plan.order_by] == [("amount", "desc")]
    biggest = ask("what's our biggest open deal")
    assert biggest.plan.limit == 1 and ("status", "eq", "'open'") in filters(biggest)
    by_owner = ask("how many deals does each owner have")
    assert [g.field for g in by_owner.plan.group_by] == ["owner.name"]
    two = ask("deals by owner and stage")
    assert [g.field for g in two.plan.group_by] == ["owner.name", "stage.name"]
    recent = ask("show me recent activities")  # not "which company?"
    assert recent.plan.limit == 10 and recent.plan.order_by[0].field == "occurred_at"
    won_monthly = ask("deals won per month this year")
    assert [(g.field, g.date_part) for g in won_monthly.plan.group_by] == [("closed_at", "month")]


def test_amounts_in_several_currencies_are_never_added_together():
    total = ask("total value of open deals", currencies=("EUR", "GBP"))
    assert [g.field for g in total.plan.group_by] == ["currency"]
    listing = ask("deals closing this month", currencies=("EUR", "GBP"))
    assert (
        listing.plan.totals == [] and listing.plan.fields.index("currency") == listing.plan.fields.index("amount") + 1
    )
    over = ask("deals over 100k", currencies=("EUR", "GBP"))
    assert over.plan.totals == [] and "currency" in over.plan.fields
    assert ask("deals over $5,000", currencies=("EUR", "GBP")).message == CANNOT  # no dollars: not converted


@pytest.mark.parametrize(
    "question",
    [
        "deals closing soon",
        "deals over 50k or under 10k",
        "deals that might close this month",
        "revenue forecast for next year",
        "new deals",  # new since when?
        "contacts in negotiation",  # a stage of deals, not of contacts
        "deals by colour",
        "why did we lose the Globex deal",
        "deals for Umbrella",
        "win rate by stage",
        "median deal size",
        "hottest leads in Germany",
        "deals not closing this month",  # "not" must never be dropped
        "tasks without a reason",
        "how many deals did we close this month",  # closed, or won?
        "contacts created by Anna Schmidt",  # the creator is not the owner
        "first 3 companies",  # alphabetical, or oldest?
    ],
)
def test_what_the_parser_cannot_place_is_refused(question):
    parsed = ask(question)
    assert parsed.outcome == "cannot" and parsed.message == CANNOT, parsed.plan


def test_a_name_of_several_records_is_asked_back():
    parsed = ask("deals for John")
    assert parsed.outcome == "cannot" and parsed.message.startswith("Which one do you mean")
    assert "John Doe" in parsed.message and "John Smith" in parsed.message


def test_a_part_of_a_name_counts_only_when_written_as_a_name():
    assert filters(ask("deals at Acme")) == {f("company.id", "eq", ACME)}
    assert ask("deals at acme").message == CANNOT  # lower case: a word, not the company's name


def test_follow_ups_change_the_previous_plan():
    previous = ask("deals closing this month").plan
    count = ask("how many of them", previous=previous)
    assert count.plan.aggregations[0].function == "count" and filters(count) == filters(ask("deals closing this month"))
    later = ask("and next month?", previous=previous)
    assert f("expected_close_date", "within", {"relative": "next_month"}) in filters(later)
    assert f("expected_close_date", "within", {"relative": "this_month"}) not in filters(later)
    owner = ask("only the ones owned by Bob Jones", previous=previous)
    assert f("owner.id", "eq", BOB) in filters(owner) and f("status", "eq", "open") in filters(owner)
    rate = ask("by owner", previous=ask("win rate this year").plan)
    assert rate.family == "win_rate" and [g.field for g in rate.plan.group_by] == ["owner.name", "status"]
    assert f("closed_at", "within", {"relative": "this_year"}) in filters(rate)
    customers = ask("how many of them are customers", previous=ask("contacts in Germany").plan)
    assert filters(customers) == {f("company.country", "eq", "Germany"), f("lifecycle_stage", "eq", "customer")}
    assert ask("how many are customers", previous=ask("contacts in Germany").plan).plan == customers.plan
    statuses = ask("and last month?", previous=ask("how many deals created this month by status").plan)
    assert statuses.family != "win_rate"  # counts by status are not a win rate
    fresh = ask("What is our win rate?", previous=ask("deals owned by Anna Schmidt").plan)
    assert f("owner.id", "eq", ANNA) not in filters(fresh)  # a question of its own, not a follow-up


@pytest.mark.parametrize(
    ("phrase", "period"),
    [
        ("in q3", {"start": "2026-07-01", "end": "2026-10-01"}),
        ("q1 2025", {"start": "2025-01-01", "end": "2025-04-01"}),
        ("the fourth quarter", {"start": "2026-10-01", "end": "2027-01-01"}),
        ("since june", {"start": "2026-06-01"}),
        ("since last month", {"start": "2026-11-01"}),
        ("between march and may", {"start": "2026-03-01", "end": "2026-06-01"}),
        ("from january to march", {"start": "2026-01-01", "end": "2026-04-01"}),
        ("before 2026-01-01", {"end": "2026-01-01"}),
        ("year to date", {"start": "2026-01-01", "end": "2026-12-03"}),
        ("june 2025", {"start": "2025-06-01", "end": "2025-07-01"}),
        ("3 days ago", {"relative": "n_days_ago", "n": 3}),
        ("between may and march", None),  # ends before it starts: not a period
        ("soon", None),
    ],
)
def test_periods(phrase, period):
    from okyaku.chat.periods import parse_period

    parsed = parse_period(phrase, WEDNESDAY)
    assert (parsed.model_dump(exclude_none=True) if parsed else None) == period
