"""The thresholds of the rules and the constants of the ranking, in one place.

The five most likely to differ between sales teams are environment settings (see README,
``AI_RECOMMENDATIONS_*``); the others are named constants here, each with why it has its value."""

from __future__ import annotations

from dataclasses import dataclass

from okyaku.config import Settings


@dataclass(frozen=True)
class RecommendationSettings:
    # --- rule thresholds ---
    deal_stale_days: int = 14  # an open deal with no touch for this long is going cold
    lead_stale_days: int = 7  # a hot lead loses interest faster than a deal in progress
    hot_lead_score: float = 70.0  # lead score (0-100) from which a lead counts as hot
    quiet_days: int = 60  # a contact with past engagement and nothing since is "gone quiet"
    quiet_min_activities: int = 2  # ... provided there was engagement to lose
    churn_rise_points: float = 10.0  # churn risk up by this many points over the lookback ...
    churn_min_risk: float = 40.0  # ... and at least this high now
    churn_lookback_days: int = 30
    stall_factor: float = 1.5  # stalled: in the stage for more than this x the typical stay
    min_stage_samples: int = 5  # completed stays needed before a stage's own median is trusted
    default_stage_days: int = 30  # the labelled fallback when a stage has too little history
    proposal_stage_words: tuple[str, ...] = ("proposal", "quote")  # a stage whose name says "proposal"
    proposal_words: tuple[str, ...] = ("proposal", "quote", "pricing")  # an email that sends one
    # --- values for the ranking ---
    min_value_samples: int = 3  # deals with an amount needed for the organization's typical value
    default_deal_value: float = 10_000.0  # when it has too few: every card gets the same value
    # --- card lifetime and feedback ---
    card_ttl_days: int = 7  # a card not confirmed by a refresh for this long expires
    dismiss_days: int = 30  # a dismissed card stays away this long (unless "until" is given)
    snooze_days: int = 3  # a snooze without "until"
    feedback_window_days: int = 90  # feedback older than this no longer moves the ranking
    feedback_prior: float = 2.0  # pseudo-counts of acceptance and rejection (Beta(2, 2) prior)
    proposal_ttl_hours: float = 72.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RecommendationSettings:
        return cls(
            deal_stale_days=settings.ai_recommendations_deal_stale_days,
            lead_stale_days=settings.ai_recommendations_lead_stale_days,
            hot_lead_score=settings.ai_recommendations_hot_lead_score,
            quiet_days=settings.ai_recommendations_quiet_days,
            dismiss_days=settings.ai_recommendations_dismiss_days,
            proposal_ttl_hours=settings.ai_approval_ttl_hours,
        )
