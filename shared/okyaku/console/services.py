"""The domain services the console calls in-process, built once per cold start."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from okyaku.config import Settings
from okyaku.console.panels import InsightProvider
from okyaku.console.sessions import SessionSigner
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from jinja2 import Environment

    from okyaku.agents.service import AgentsService
    from okyaku.anomalies.service import AnomalyService
    from okyaku.chat.service import ChatService
    from okyaku.conversation.service import ConversationService
    from okyaku.embeddings.protocol import Embedder
    from okyaku.embeddings.search import SemanticSearch
    from okyaku.llm.gateway import LLMGateway
    from okyaku.predictions.service import PredictionService
    from okyaku.recommendations.service import RecommendationService


@dataclass
class ConsoleServices:
    runtime: Runtime
    signer: SessionSigner
    templates: Environment
    predictions: PredictionService
    agents: AgentsService
    search: SemanticSearch
    secure_cookie: str = "auto"
    # The chat service (okyaku.chat); None: the chat panel is not shown.
    chat: ChatService | None = None
    insight_providers: Sequence[InsightProvider] = field(default_factory=tuple)
    # Today's daily priorities (okyaku.recommendations); None: not shown.
    recommendations: RecommendationService | None = None
    # Conversation insights on the timeline (okyaku.conversation); None: not shown.
    conversation: ConversationService | None = None
    # The Anomalies, Insights and Notifications pages (okyaku.anomalies); None: not shown.
    anomalies: AnomalyService | None = None
    # organization -> (monotonic time, pipeline forecast): the dashboard reuses one for a minute
    forecasts: dict[uuid.UUID, tuple[float, dict[str, Any]]] = field(default_factory=dict)


def default_insights(settings: Settings) -> tuple[InsightProvider, ...]:
    """The anomalies feature's panels, unless it is switched off (AI_ANOMALIES_ENABLED=false)."""
    from okyaku.console.insights import PROVIDERS
    from okyaku.features import feature_enabled

    return PROVIDERS if feature_enabled(settings, "anomalies") else ()


def console_services(
    runtime: Runtime | None = None,
    *,
    llm: LLMGateway | None = None,
    chat_llm: LLMGateway | None = None,
    signer: SessionSigner | None = None,
    embedder: Embedder | None = None,
    explanations: Literal["default", "template"] = "default",
    insight_providers: Sequence[InsightProvider] | None = None,
) -> ConsoleServices:
    """Everything the console needs, from settings (tests pass their runtime and LLM gateway)."""
    from okyaku.agents.api import agents_service
    from okyaku.anomalies.service import AnomalyService
    from okyaku.chat.service import ChatService
    from okyaku.console.templating import template_environment
    from okyaku.conversation.service import ConversationService
    from okyaku.embeddings.search import SemanticSearch
    from okyaku.embeddings.triggers import default_embedder
    from okyaku.features import feature_enabled
    from okyaku.llm.gateway import LLMGateway
    from okyaku.predictions.api import prediction_service
    from okyaku.recommendations.explain import LLMCardWriter
    from okyaku.recommendations.service import RecommendationService

    runtime = runtime or Runtime()
    settings = runtime.settings
    llm = llm or LLMGateway.from_settings(settings)
    agents = agents_service(runtime, llm)
    search = SemanticSearch(embedder or default_embedder(runtime))
    return ConsoleServices(
        runtime=runtime,
        signer=signer
        or SessionSigner.from_secret_setting(
            settings.console_session_secret, ttl_s=settings.console_session_ttl_hours * 3600
        ),
        templates=template_environment(),
        # "template": score explanations without the LLM (tests, or to keep pages fast without Ollama).
        predictions=prediction_service(runtime, writer="default" if explanations == "default" else None),
        agents=agents,
        search=search,
        secure_cookie=settings.console_secure_cookie,
        chat=ChatService(runtime, chat_llm or llm, approvals=agents.approvals, search=search),
        # Pages list cards without the model; Explain (on request) words them with it, or the template.
        recommendations=RecommendationService(runtime, writer=LLMCardWriter(llm), approvals=agents.approvals)
        if feature_enabled(settings, "recommendations")
        else None,
        # The same services the conversation and anomalies APIs use, on the same LLM gateway.
        conversation=ConversationService(runtime, llm) if feature_enabled(settings, "conversation") else None,
        anomalies=AnomalyService(runtime, llm) if feature_enabled(settings, "anomalies") else None,
        insight_providers=tuple(insight_providers if insight_providers is not None else default_insights(settings)),
    )
