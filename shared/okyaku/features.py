"""The AI feature switches: one registry, one check, one error.

Every endpoint, queue consumer and schedule of a switchable feature asks here; nobody reads
``settings.ai_*_enabled`` directly.
"""

from __future__ import annotations

from typing import Literal

from okyaku.config import Settings
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
