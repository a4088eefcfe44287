"""The eval's judge: a response is right only when its data says what the records say."""

from __future__ import annotations

from okyaku.chat.evaluation import Expected, judge


def _listing(ids, total=None, entity="deal"):
    rows = [[f"row {i}"] for i in ids]
    return {
        "plan": {"entity": "deals"},
        "data": {"columns": ["name"], "rows": rows, "total": len(ids) if total is None else total},
        "citations": [{"entity_type": entity, "entity_id": i, "label": i} for i in ids],
        "answer": "…",
    }


def test_records_must_be_exactly_the_expected_ones():
    expected = Expected("records", "deal", frozenset({"a", "b"}))
    assert judge(expected, _listing(["a", "b"]))[0] == "right"
    assert judge(expected, _listing(["a", "c"]))[0] == "wrong"
    assert judge(expected, _listing(["a"]))[0] == "wrong"
    assert judge(expected, _listing(["a", "b"], entity="company"))[0] == "wrong"


def test_a_refusal_or_a_question_back_is_refused_not_wrong():
    expected = Expected("count", number=3)
    assert judge(expected, {"plan": None, "answer": "I can't answer that without the language model."})[0] == "refused"
    assert judge(expected, {"plan": None, "answer": "Which one do you mean: A, B?"})[0] == "refused"


def test_counts_amounts_groups_and_win_rates():
    count = {"plan": {}, "data": {"columns": ["count"], "rows": [[3]]}}
    assert judge(Expected("count", number=3), count)[0] == "right"
    assert judge(Expected("count", number=4), count)[0] == "wrong"
    mixed = {
        "plan": {},
        "data": {"columns": ["currency", "total_amount", "count"], "rows": [["EUR", 10.0, 1], ["GBP", 5, 1]]},
    }
    assert judge(Expected("amount", by_currency=(("EUR", 10.0), ("GBP", 5.0))), mixed)[0] == "right"
    assert judge(Expected("amount", number=15.0), mixed)[0] == "wrong"  # never one sum across currencies
    groups = {"plan": {}, "data": {"columns": ["stage_name", "count"], "rows": [["A", 2], ["B", 1]]}}
    assert judge(Expected("groups", groups=(("A", 2.0), ("B", 1.0))), groups)[0] == "right"
    assert judge(Expected("groups", groups=(("A", 2.0),)), groups)[0] == "wrong"
    rate = {"plan": {}, "data": {"columns": ["status", "deals"], "rows": [["won", 2], ["lost", 3]]}}
    assert judge(Expected("win_rate", won=2, lost=3), rate)[0] == "right"
    assert judge(Expected("win_rate", won=3, lost=2), rate)[0] == "wrong"


def test_top_n_must_show_exactly_those_rows():
    expected = Expected("records", "deal", frozenset({"a", "b"}), top=True)
    assert judge(expected, _listing(["a", "b"], total=7))[0] == "right"
    assert judge(expected, _listing(["a", "c"], total=7))[0] == "wrong"
