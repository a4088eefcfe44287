"""The AI feature switches: one registry, one check, one error.

Every endpoint, queue consumer and schedule of a switchable feature asks here; nobody reads
``settings.ai_*_enabled`` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from okyaku.config import Settings, get_settings
from okyaku.errors import FeatureDisabled

Feature = Literal["content", "chat", "agents", "predictions", "rag", "conversation", "recommendations", "anomalies"]

# feature -> the Settings field (and so the environment variable) that switches it
FEATURE_SETTINGS: dict[str, str] = {
    "content": "ai_content_enabled",
    "chat": "ai_chat_enabled",
    "agents": "ai_agents_enabled",
    "predictions": "ai_predictions_enabled",
    "rag": "ai_rag_enabled",
    "conversation": "ai_conversation_enabled",
    "recommendations": "ai_recommendations_enabled",
    "anomalies": "ai_anomalies_enabled",
}


def feature_enabled(settings: Settings, feature: Feature) -> bool:
    return bool(getattr(settings, FEATURE_SETTINGS[feature]))


def feature_disabled_error(feature: str) -> FeatureDisabled:
    variable = FEATURE_SETTINGS[feature].upper()
    return FeatureDisabled(
        f"the AI feature '{feature}' is disabled; set {variable}=true to enable it",
        details={"feature": feature, "setting": variable},
    )


def require_feature(settings: Settings, feature: Feature) -> None:
    """Raise the one 503 (``feature_disabled``) when ``feature`` is switched off."""
    if not feature_enabled(settings, feature):
        raise feature_disabled_error(feature)


@dataclass(frozen=True)
class FeatureFlags:
    """The switches as one value, for services handed their flags (tests override them per service)."""

    content: bool = True
    chat: bool = True
    agents: bool = True
    predictions: bool = True
    rag: bool = True
    conversation: bool = True
    recommendations: bool = True
    anomalies: bool = True
    require_approval_for_writes: bool = True

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> FeatureFlags:
        s = settings or get_settings()
        values = {name: bool(getattr(s, field)) for name, field in FEATURE_SETTINGS.items()}
        return cls(**values, require_approval_for_writes=s.ai_require_approval_for_writes)

    def enabled(self, feature: str) -> bool:
        if feature not in FEATURE_SETTINGS:
            raise KeyError(feature)
        return bool(getattr(self, feature))

    def require(self, feature: str) -> None:
        """Raise the one 503 (``feature_disabled``) when ``feature`` is switched off."""
        if not self.enabled(feature):
            raise feature_disabled_error(feature)

    def as_dict(self) -> dict[str, bool]:
        return {f.name: bool(getattr(self, f.name)) for f in fields(self)}
