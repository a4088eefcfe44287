"""Pure helpers of the console's AI cards: what Apply writes in words, the rule's suggested
content, the snooze day, and where an action returns to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from okyaku.console.pages_ai import agent_for, back_to, snooze_until
from okyaku.errors import ValidationFailed
from okyaku.recommendations.explain import describe_action, reason_sentence, suggested_content

NOW = datetime(2026, 12, 7, 15, 30, tzinfo=UTC)


def test_each_action_kind_is_described_and_only_wordable_ones_suggest_content() -> None:
    email = {"kind": "email", "contact_id": "c", "subject": "Proposal: X", "body": "Hello"}
    assert describe_action(email) == "Drafts the email 'Proposal: X' to the contact; it is sent once approved."
    assert suggested_content(email) == {"kind": "email", "subject": "Proposal: X", "body": "Hello"}
    task = {"kind": "task", "title": "Call Vera", "due_in_days": 2, "priority": "high"}
    assert describe_action(task) == "Creates the task 'Call Vera', due in 2 days (high priority)."
    assert suggested_content(task) == {"kind": "task", "title": "Call Vera", "due_in_days": 2}
    stage = {"kind": "stage", "stage_id": "s", "stage_name": "Negotiation"}
    assert describe_action(stage) == "Moves the deal to the stage Negotiation." and suggested_content(stage) is None
    due = {"kind": "task_due", "task_id": "t", "title": "Send specs", "due_in_days": 1}
    assert describe_action(due) == "Moves the due date of the task 'Send specs' to tomorrow."
    assert describe_action(None).startswith("Nothing to apply") and suggested_content(None) is None


def test_reasoning_is_one_sentence_from_the_facts_with_a_fallback_for_missing_ones() -> None:
    facts = {"expected_close_date": "2026-11-25", "days_past_close_date": 12}
    assert reason_sentence("deal_past_close_date", facts) == (
        "The expected close date (2026-11-25) passed 12 days ago and the deal is still open: "
        "the forecast counts on a date that no longer holds."
    )
    assert reason_sentence("deal_past_close_date", {"days_past_close_date": 3}) == "days_past_close_date: 3."


def test_a_snooze_is_a_later_day_and_starts_at_midnight_utc() -> None:
    assert snooze_until("2026-12-10", NOW) == datetime(2026, 12, 10, tzinfo=UTC)
    for raw in ("2026-12-07", "2026-12-01", "", "soon"):
        with pytest.raises(ValidationFailed):
            snooze_until(raw, NOW)


def test_an_action_returns_to_this_console_without_the_last_notice() -> None:
    assert back_to({"next": "/console/deals/1?applied=abc&tab=x"}, "/console/today") == "/console/deals/1?tab=x"
    assert back_to({"next": "https://evil.example/"}, "/console/today") == "/console"
    assert back_to({}, "/console/today") == "/console/today"


def test_the_agent_offered_fits_the_record() -> None:
    class Contact:
        def __init__(self, stage: str) -> None:
            self.lifecycle_stage = stage

    assert agent_for("deal", object()) == "deal_assistant"
    assert agent_for("contact", Contact("lead")) == "lead_qualifier"
    assert agent_for("contact", Contact("customer")) is None and agent_for("company", object()) is None
