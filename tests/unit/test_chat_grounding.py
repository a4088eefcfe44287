"""The checks between what a model says and what a user sees (okyaku.chat.grounding): pure."""

from __future__ import annotations

import pytest

from okyaku.chat.execute import DataTable
from okyaku.chat.grounding import (
    asks_for_action,
    describe_plan,
    is_clarifying_question,
    on_topic_words,
    phrasing_problems,
    plan_problems,
)
from okyaku.chat.plan import QueryPlan

DEALS = DataTable(
    ["name", "company.name", "amount"],
    [["Globex renewal", "Globex", 30000], ["Acme expansion", "Acme Corp", 12000]],
    total=2,
    totals={"total_amount": 42000},
)
LISTING = QueryPlan(entity="deals", fields=["name", "company.name", "amount"])
WON = QueryPlan.model_validate(
    {
        "entity": "deals",
        "filters": [{"field": "status", "op": "eq", "value": "won"}],
        "aggregations": [{"function": "sum", "field": "amount", "alias": "won"}],
    }
)


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("How much did we win last quarter?", True),
        ("which deals close this month?", True),
        ("Find contacts I haven't talked to in 30 days", True),
        ("What is the capital of Australia?", False),
        ("Write me a poem about the sea", False),
        ("how many moons does Jupiter have", False),
    ],
)
def test_crm_vocabulary_decides_what_is_on_topic(question, expected):
    assert on_topic_words(question) is expected


def test_a_grounded_wording_passes():
    text = "Two deals close this month, worth 42,000: Globex renewal (30,000) and Acme expansion."
    assert phrasing_problems(text, LISTING, DEALS, "what closes this month?") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("Three deals close this month: Globex renewal and Acme expansion.", "numbers that are not in the data (3)"),
        ("Globex renewal closes in Sydney.", "names that are not in the data (Sydney)"),
        ("Deals are closing soon, as usual.", "it names none of the records found"),
        ("We lost 99,000 on Initech.", "numbers that are not in the data (99,000)"),
    ],
)
def test_invented_numbers_names_or_nothing_at_all_are_caught(text, problem):
    assert any(problem in p for p in phrasing_problems(text, LISTING, DEALS, "what closes this month?"))


def test_an_aggregate_answer_must_state_the_figure():
    data = DataTable(["won"], [[42000]])
    assert phrasing_problems("We won 42,000.", WON, data, "how much did we win?") == []
    assert phrasing_problems("We lost last quarter.", WON, data, "how much did we win?") == [
        "it leaves out the figures the question asked for"
    ]


def test_only_a_short_question_back_without_claims_counts_as_clarifying():
    assert is_clarifying_question("Which Sarah do you mean?", "create a task to call Sarah")
    assert not is_clarifying_question("Sydney.", "What is the capital of Australia?")
    assert not is_clarifying_question("We lost last quarter. Do you want details?", "how much did we win")
    assert not is_clarifying_question("Do you mean the 3 deals at Initech?", "deals")
    assert not is_clarifying_question("Do you mean Initech?", "deals at that company")  # a name the user never wrote


def test_a_plan_must_be_about_what_the_question_names():
    plan = QueryPlan.model_validate(
        {"entity": "contacts", "filters": [{"field": "company.country", "value": "Germany"}]}
    )
    problems = plan_problems(plan, "which deals are open?")
    assert "the question is about deals, the plan reads contacts" in problems
    assert "the filter company.country = 'Germany' is not in the question" in problems
    assert plan_problems(plan, "contacts in Germany") == []
    assert plan_problems(plan, "only those in germany", context="contacts plan") == []
    enum = QueryPlan.model_validate({"entity": "deals", "filters": [{"field": "status", "value": "open"}]})
    assert plan_problems(enum, "what is in the pipeline?") == []  # a catalogue value needs no quoting


def test_actions_only_when_asked_for():
    assert asks_for_action("create a task to call Sarah next Tuesday")
    assert asks_for_action("draft a follow-up email to John")
    assert not asks_for_action("how much did we win last quarter?")


def test_the_plan_is_described_in_words():
    plan = QueryPlan.model_validate(
        {
            "entity": "deals",
            "filters": [
                {"field": "status", "value": "open"},
                {"field": "expected_close_date", "op": "within", "value": {"relative": "last_n_days", "n": 30}},
            ],
            "aggregations": [{"function": "sum", "field": "amount"}],
            "group_by": [{"field": "owner.name"}],
        }
    )
    assert describe_plan(plan) == (
        "deals, status = open, expected close date within last 30 days, sum of amount, by owner name"
    )
