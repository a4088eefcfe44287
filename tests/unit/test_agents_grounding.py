"""The check that decides whether an agent run is ``completed`` or ``inconclusive``: every number
and name of its final answer must come from what its tools returned (okyaku.agents.grounding)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from okyaku.agents.grounding import Evidence, check_answer, name_candidates, vocabulary_of

DEAL = {
    "ok": True,
    "record": {
        "name": "Aurora telescopes",
        "amount": "48700.00",
        "probability": 0.457,
        "expected_close_date": "2026-12-20",
        "company": {"id": "0b7f5c1e-3c2a-4c1e-9a57-6f3f1d2b9c11", "name": "Aurora Optics"},
        "contact": {"first_name": "Vera", "last_name": "Rubin", "job_title": "Head of Procurement"},
        "win_rate_text": "win rate 38% last year",
    },
    "activities": [
        {"subject": "Discovery call", "body": "Budget approved for Q3."},
        {"subject": "Demo", "body": "Went well."},
    ],
}


def evidence(*results: Any, tool_calls: int = 1, **values: Any) -> Evidence:
    return Evidence(results=results or (DEAL,), tool_calls=tool_calls, today=date(2026, 12, 7), **values)


def check(answer: str, *results: Any, **values: Any):
    return check_answer(answer, evidence(*results, **values))


# --- what every answer needs -----------------------------------------------------------------------


def test_an_empty_answer_is_not_an_answer():
    verdict = check("   \n")
    assert (verdict.grounded, verdict.reason) == (False, "empty_answer")


def test_an_answer_without_a_tool_call_rests_on_nothing_however_plausible():
    verdict = check_answer("Aurora telescopes is worth 48,700.", evidence(tool_calls=0))
    assert (verdict.grounded, verdict.reason) == (False, "no_tool_calls")
    assert verdict.as_dict()["message"].startswith("the model answered without a successful tool call")


def test_a_grounded_answer_passes_and_says_what_it_cited():
    verdict = check("Aurora telescopes (Aurora Optics) is worth 48,700 and closes on 2026-12-20. Call Vera Rubin.")
    assert verdict.grounded and verdict.reason is None
    assert {"48,700", "2026-12-20", "Aurora Optics", "Vera Rubin"} <= set(verdict.cited)
    assert verdict.as_dict()["verified"] is True


# --- numbers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    ["48700", "48,700", "48,700.00", "48.7k", "49k", "48.7K", "$48,700", "0.0487 million", "49,000", "50,000"],
)
def test_a_number_may_be_written_and_rounded_as_people_do(written):
    verdict = check(f"Aurora telescopes is worth {written}.")
    assert verdict.grounded, verdict


@pytest.mark.parametrize("written", ["52,000", "48,000", "4,870", "487k", "1.2M", "60k"])
def test_a_number_the_results_do_not_hold_is_named(written):
    verdict = check(f"Aurora telescopes is worth {written}.")
    assert (verdict.grounded, verdict.reason) == (False, "ungrounded_numbers")
    assert verdict.numbers == (written,)
    assert written in verdict.message


def test_percentages_match_a_fraction_or_a_stated_percentage():
    assert check("Aurora telescopes: 45.7% likely, 46% rounded; the win rate was 38%.").grounded
    verdict = check("Aurora telescopes is 75% likely to close.")
    assert verdict.numbers == ("75%",)


def test_counts_of_returned_lists_and_the_tasks_own_numbers_are_known():
    assert check("Aurora telescopes has 2 activities.").grounded
    assert not check("Aurora telescopes has 5 activities.").grounded
    assert check_answer("Aurora telescopes: 7 seats as asked.", evidence(user_text="Task: quote 7 seats")).grounded


def test_dates_must_be_returned_or_today():
    assert check("Aurora telescopes closes on 2026-12-20; checked 2026-12-07.").grounded
    verdict = check("Aurora telescopes closes on 2026-12-24.")
    assert verdict.numbers == ("2026-12-24",)


def test_list_numbering_ids_and_labels_are_not_claims():
    answer = (
        "Next steps for Aurora telescopes:\n1. Call Vera\n2) Send the Q3 quote\n"
        "Company 0b7f5c1e-3c2a-4c1e-9a57-6f3f1d2b9c11 has it."
    )
    verdict = check(answer)
    assert verdict.grounded, verdict


def test_numbers_inside_words_or_units_are_read_correctly():
    # "12 months" is twelve, not twelve million; the 12 of the date's month is in the results
    assert check("Aurora telescopes closes within 12 months.").grounded
    assert check("Aurora telescopes closes within 13 months.").numbers == ("13",)


# --- names -----------------------------------------------------------------------------------------


def test_an_invented_company_or_person_is_named():
    verdict = check("Aurora telescopes is worth 48,700. Globex Industries and John Smith want a demo too.")
    assert (verdict.grounded, verdict.reason) == (False, "ungrounded_names")
    assert verdict.names == ("Globex Industries", "John Smith")


def test_invented_numbers_are_reported_first_with_the_names_alongside():
    verdict = check("Globex Industries is worth 99,000.")
    assert verdict.reason == "ungrounded_numbers"
    assert (verdict.numbers, verdict.names) == (("99,000",), ("Globex Industries",))


def test_names_match_across_fields_and_with_a_possessive():
    assert check("Vera Rubin\u2019s deal with Aurora Optics's team is ready.").grounded
    assert check("Rubin, Vera: head of procurement.").grounded


def test_ordinary_words_at_the_start_of_a_sentence_or_heading_are_not_names():
    answer = (
        "Summary: Based on the data, Aurora telescopes looks strong. Overall, I recommend a follow-up.\n"
        "Next Steps: Unfortunately the budget is tight. However, Vera is engaged. Let's schedule a call on Monday."
    )
    assert name_candidates(answer) == ["Aurora", "Vera"]
    assert check(answer).grounded


def test_the_prompts_and_tools_words_are_vocabulary_not_names():
    vocabulary = vocabulary_of("Stages: Prospecting, Negotiation. Use get_record and analyze.")
    answer = "Aurora telescopes should move to Negotiation after Prospecting."
    assert not check(answer).grounded
    assert check_answer(answer, evidence(vocabulary=vocabulary)).grounded


def test_the_organizations_records_that_the_tools_did_not_return_are_ungrounded():
    """The caller finds record names in the answer (any case); each must be in the results."""
    answer = "aurora optics is fine, but initech is not."
    verdict = check_answer(answer, evidence(), record_names=["Aurora Optics", "Initech"])
    assert (verdict.reason, verdict.names) == ("ungrounded_names", ("Initech",))
    assert check_answer("aurora optics is fine.", evidence(), record_names=["Aurora Optics"]).grounded


# --- an answer must rest on the results ------------------------------------------------------------


def test_a_rambling_answer_after_a_tool_call_cites_nothing():
    verdict = check("Based on the data, this lead looks very promising and I recommend a follow-up soon.")
    assert (verdict.grounded, verdict.reason) == (False, "unsupported_answer")


def test_reporting_the_proposals_of_the_run_needs_no_citation():
    assert check("I proposed a follow-up task for your review.", proposals=1).grounded
    assert check("I proposed 3 changes for your review.", proposals=3).grounded
    assert check("I proposed 4 changes for your review.", proposals=3).numbers == ("4",)


def test_an_empty_result_needs_no_citation():
    empty = {"ok": True, "entity_type": "deal", "count": 0, "more": False, "records": []}
    assert check("No deal matches.", empty).grounded
    assert check("No deal matches, but Globex Industries might.", empty).names == ("Globex Industries",)


def test_field_names_and_titles_are_labels_not_names():
    answer = "Aurora telescopes: Lifecycle Stage lead, Expected Close Date 2026-12-20. Dear Mr. Rubin, thanks."
    verdict = check(answer, {**DEAL, "record": {**DEAL["record"], "lifecycle_stage": "lead"}})
    assert verdict.grounded, verdict
