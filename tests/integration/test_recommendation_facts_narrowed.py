"""One record's facts are read narrowly (its stages' stays, one round trip for the organization's
deal values, a fixed number of statements) and equal what the organization-wide reading gives."""

from __future__ import annotations

import statistics
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, text

from okyaku.recommendations.facts import organization_facts, stage_norms
from okyaku.recommendations.settings import RecommendationSettings
from tests.integration.recommendations_support import Scenario


def _history(scenario: Scenario, deal_id: str, base: datetime, moves: list[tuple[str, float]]) -> None:
    """Replaces a deal's stage history with these (stage, days before ``base``) rows, inserted in
    this order."""
    with scenario.owner_db.session() as session:
        session.execute(text("DELETE FROM deal_stage_history WHERE deal_id = :deal"), {"deal": deal_id})
        for stage, days_ago in moves:
            session.execute(
                text(
                    "INSERT INTO deal_stage_history (organization_id, deal_id, to_stage_id, changed_at) "
                    "VALUES (:org, :deal, :stage, :at)"
                ),
                {
                    "org": scenario.organization_id,
                    "deal": deal_id,
                    "stage": scenario.stages[stage],
                    "at": base - timedelta(days=days_ago),
                },
            )


def test_a_stages_norm_read_alone_equals_the_whole_history_reading(scenario: Scenario) -> None:
    config = RecommendationSettings(min_stage_samples=3)
    deals = [scenario.deal(f"History {i}")["id"] for i in range(6)]
    base = scenario.clock.now
    # Back and forth, a tie on changed_at (the window orders ties by id), stays still open, and
    # moves after the "as of" moments below (ignored by both readings).
    _history(
        scenario, deals[0], base, [("Qualification", 60), ("Proposal", 50), ("Qualification", 45), ("Proposal", 41)]
    )
    _history(scenario, deals[1], base, [("Qualification", 40), ("Proposal", 40), ("Negotiation", 33.5)])
    _history(scenario, deals[2], base, [("Qualification", 30), ("Proposal", 23.25), ("Negotiation", 2)])
    _history(scenario, deals[3], base, [("Qualification", 20), ("Proposal", 12), ("Negotiation", -3)])
    _history(scenario, deals[4], base, [("Qualification", 9)])
    _history(scenario, deals[5], base, [("Proposal", 70), ("Qualification", 64.5), ("Negotiation", 61)])
    stages = [uuid.UUID(scenario.stages[name]) for name in ("Qualification", "Proposal", "Negotiation")]
    with scenario.runtime.db.organization_scope(scenario.organization_id) as session:
        for days_back in (0, 10, 42):
            now = base - timedelta(days=days_back)
            whole = stage_norms(session, now, config)
            assert whole, "the history has completed stays"
            for stage in stages:
                alone = stage_norms(session, now, config, [stage])
                assert alone == ({stage: whole[stage]} if stage in whole else {}), (days_back, stage)
            assert stage_norms(session, now, config, stages) == whole
        assert stage_norms(session, base, config, []) == {}
        # The figures themselves: Qualification's completed stays as of now are 10, 4, 0, 6.75, 8, 3.5.
        norm = stage_norms(session, base, config, [stages[0]])[stages[0]]
        assert norm.samples == 6 and norm.source == "history"
        assert norm.typical_days == statistics.median([10, 4, 0, 6.75, 8, 3.5])


def test_the_typical_deal_value_is_the_median_of_the_amounts(scenario: Scenario) -> None:
    config = RecommendationSettings(min_value_samples=3)

    def reading() -> Any:
        with scenario.runtime.db.organization_scope(scenario.organization_id) as session:
            return organization_facts(session, scenario.clock.now, config)

    assert reading().typical_value_source.startswith("default")
    for amount in (100, 250.5, 900):
        scenario.deal(f"Open {amount}", amount=amount)
    facts = reading()
    assert (facts.typical_deal_value, facts.typical_value_source) == (250.5, "median deal")
    for amount in (10, 30, 70, 20_000):  # four won deals: the mean of the middle two
        scenario.deal(f"Won {amount}", stage="Closed Won", amount=amount)
    facts = reading()
    assert (facts.typical_deal_value, facts.typical_value_source) == (50.0, "median won deal")
    scenario.deal("Won 45.25", stage="Closed Won", amount=45.25)  # five: the middle one
    assert reading().typical_deal_value == 45.25
    scenario.clock.advance(-1)  # as of yesterday: the deals made since are not counted
    assert reading().typical_value_source.startswith("default")


def test_a_records_refresh_takes_the_same_statements_whatever_its_number_of_deals(scenario: Scenario) -> None:
    """No statement per deal or contact: a company with one deal and one contact, then with five of
    each (activities, tasks and scores on them), refreshes its cards in the same statements."""
    company = scenario.post("companies", {"name": "Counted Ltd"})["id"]
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def refresh() -> int:
        statements.clear()
        event.listen(scenario.runtime.db.engine, "before_cursor_execute", count)
        try:
            scenario.service.for_entity(scenario.organization_id, "company", uuid.UUID(company), scenario.user_id)
        finally:
            event.remove(scenario.runtime.db.engine, "before_cursor_execute", count)
        return len(statements)

    def add_pair(index: int) -> None:
        person = scenario.contact(f"P{index}", company_id=company, email=f"p{index}@counted.example")
        deal = scenario.deal(f"Counted {index}", amount=1000 + index, company_id=company, contact_id=person["id"])
        scenario.activity(20, deal_id=deal["id"], contact_id=person["id"])
        scenario.task(-2, deal_id=deal["id"], contact_id=person["id"])
        scenario.score(person["id"], "lead_score", 80)

    add_pair(0)
    scenario.clock.advance(30)
    one = refresh()
    for index in range(1, 5):
        add_pair(index)
    five = refresh()
    assert five == one, statements
    cards = scenario.service.for_entity(scenario.organization_id, "company", uuid.UUID(company), scenario.user_id)
    assert len({c["entity_id"] for c in cards["data"]}) >= 5  # the five deals (and their people) were all read
