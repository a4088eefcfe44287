"""Facts in, candidate cards out: every rule over every loaded deal and contact (pure)."""

from __future__ import annotations

from okyaku.recommendations.contact_rules import CONTACT_RULES
from okyaku.recommendations.facts import FactSet
from okyaku.recommendations.rules import DEAL_RULES, Candidate
from okyaku.recommendations.settings import RecommendationSettings


def generate_candidates(facts: FactSet, config: RecommendationSettings) -> list[Candidate]:
    found: list[Candidate] = []
    org = facts.organization
    for deal in facts.deals:
        found.extend(c for rule in DEAL_RULES if (c := rule(deal, org, config)) is not None)
    for contact in facts.contacts:
        found.extend(c for rule in CONTACT_RULES if (c := rule(contact, org, config)) is not None)
    return found


RULE_NAMES: tuple[str, ...] = (
    "deal_no_touch",
    "deal_past_close_date",
    "deal_stage_stalled",
    "proposal_not_sent",
    "overdue_tasks",
    "hot_lead_unattended",
    "hot_lead_no_touch",
    "churn_risk_rising",
    "re_engage_quiet",
)
