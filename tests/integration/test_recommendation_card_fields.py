"""The card's words in the recommendations API: ``description`` (what apply writes),
``reasoning`` (one sentence from the facts, no LLM) and ``suggested_content`` (when the rule has
one), so a page can show a card without asking for each one's explanation."""

from __future__ import annotations

import re

from tests.integration.recommendations_support import Scenario


def one_sentence(text: str) -> bool:
    return text.endswith((".", ")")) and not re.search(r"[.!?] [A-Z]", text)


def test_each_card_says_what_apply_writes_why_and_what_to_send(scenario: Scenario) -> None:
    buyer = scenario.contact("Petra", email="petra@proposal.example")
    proposal = scenario.deal("Lens proposal", stage="Proposal", amount=30_000, contact_id=buyer["id"])
    stalled = scenario.deal("Slow telescope", amount=12_000)
    scenario.clock.advance(50)

    email = scenario.card("deal", proposal["id"], "proposal_not_sent")
    assert email["suggested_content"] == {
        "kind": "email",
        "subject": "Proposal: Lens proposal",
        "body": "Hello Petra Tester,\n\nas discussed, here is our proposal for Lens proposal.\n",
    }
    assert email["description"] == (
        "Drafts the email 'Proposal: Lens proposal' to the contact; it is sent once approved."
    )
    assert email["reasoning"].startswith("The deal is in Proposal (50 days)")
    assert "no outbound email about a proposal" in email["reasoning"] and one_sentence(email["reasoning"])

    call = scenario.card("deal", stalled["id"], "deal_no_touch")
    assert call["suggested_content"] == {
        "kind": "task",
        "title": "Call the buyer about Slow telescope",
        "due_in_days": 1,
    }
    assert call["description"] == (
        "Creates the task 'Call the buyer about Slow telescope', due tomorrow (high priority)."
    )
    assert call["reasoning"] == (
        "Nothing has been logged on this deal or with its contact for 50 days (the limit is 14); "
        "deals that go quiet this long tend to slip."
    )

    move = scenario.card("deal", stalled["id"], "deal_stage_stalled")
    assert move["suggested_content"] is None  # a stage move has nothing to word
    assert move["description"] == "Moves the deal to the stage Proposal."
    assert "in Qualification for 50 days" in move["reasoning"] and one_sentence(move["reasoning"])


def test_a_hot_lead_card_reasons_in_one_sentence_from_its_score(scenario: Scenario) -> None:
    lead = scenario.contact("Hot", lifecycle_stage="lead")
    scenario.score(lead["id"], "lead_score", 88)
    scenario.clock.advance(1)
    card = scenario.card("contact", lead["id"], "hot_lead_unattended")
    assert card["reasoning"].startswith("The lead score is 88/100 (hot from 70")
    assert "has an owner: " in card["reasoning"] and one_sentence(card["reasoning"])
    assert card["suggested_content"]["kind"] == "task" and card["description"].startswith("Creates the task")
