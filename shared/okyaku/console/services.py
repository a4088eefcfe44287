"""The domain services the console calls in-process.

The session signer is made at cold start; each domain service (and the Jinja2 environment) is
built at its first use and kept for the process (``functools.cached_property``): a cold start that
serves the sign-in page or Today does not import chat, the agents or predictions (numpy), which
are most of the console's import time (issue 27, ``python -m bench cold_start``)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from okyaku.config import Settings
from okyaku.console.panels import InsightProvider
from okyaku.console.sessions import SessionSigner
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from jinja2 import Environment

    from okyaku.agents.approvals import ApprovalService
    from okyaku.agents.service import AgentsService
    from okyaku.anomalies.service import AnomalyService
    from okyaku.chat.service import ChatService
    from okyaku.conversation.service import ConversationService
    from okyaku.embeddings.protocol import Embedder
    from okyaku.embeddings.search import SemanticSearch
    from okyaku.llm.gateway import LLMGateway
    from okyaku.predictions.service import PredictionService
    from okyaku.recommendations.service import RecommendationService


@dataclass(frozen=True)
class ServiceBuilders:
    """How each domain service is built; called once, at the service's first use."""

    templates: Callable[[], Environment]
    llm: Callable[[ConsoleServices], LLMGateway]
    predictions: Callable[[ConsoleServices], PredictionService]
    agents: Callable[[ConsoleServices], AgentsService]
    search: Callable[[ConsoleServices], SemanticSearch]
    chat: Callable[[ConsoleServices], ChatService]
    recommendations: Callable[[ConsoleServices], RecommendationService]
    conversation: Callable[[ConsoleServices], ConversationService]
    anomalies: Callable[[ConsoleServices], AnomalyService]


@dataclass
class ConsoleServices:
    runtime: Runtime
    signer: SessionSigner
    builders: ServiceBuilders
    secure_cookie: str = "auto"
    # False: the chat panel is not shown (and `chat` is None).
    chat_enabled: bool = True
    # False: Today's daily priorities are not shown (AI_RECOMMENDATIONS_ENABLED=false).
    recommendations_enabled: bool = True
    # False: no conversation insights on the timeline (AI_CONVERSATION_ENABLED=false).
    conversation_enabled: bool = True
    # False: no Anomalies, Insights or Notifications pages, no bell (AI_ANOMALIES_ENABLED=false).
    anomalies_enabled: bool = True
    insight_providers: Sequence[InsightProvider] = field(default_factory=tuple)
    # organization -> (monotonic time, pipeline forecast): the dashboard reuses one for a minute
    forecasts: dict[uuid.UUID, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    @cached_property
    def templates(self) -> Environment:
        return self.builders.templates()

    @cached_property
    def llm(self) -> LLMGateway:
        return self.builders.llm(self)

    @cached_property
    def predictions(self) -> PredictionService:
        return self.builders.predictions(self)

    @cached_property
    def agents(self) -> AgentsService:
        return self.builders.agents(self)

    @cached_property
    def approvals(self) -> ApprovalService:
        """The approval queue chat and Today propose to (stateless: the agents' own is alike), without
        building the agents' service."""
        from okyaku.agents.approvals import ApprovalService

        return ApprovalService(self.runtime)

    @cached_property
    def search(self) -> SemanticSearch:
        return self.builders.search(self)

    @cached_property
    def chat(self) -> ChatService | None:
        """The chat service (okyaku.chat); None: the chat panel is not shown."""
        return self.builders.chat(self) if self.chat_enabled else None

    @cached_property
    def recommendations(self) -> RecommendationService | None:
        """Next-best-action cards on Today and the record pages (okyaku.recommendations); None: not shown."""
        return self.builders.recommendations(self) if self.recommendations_enabled else None

    @cached_property
    def conversation(self) -> ConversationService | None:
        """Conversation insights on the timeline (okyaku.conversation); None: not shown."""
        return self.builders.conversation(self) if self.conversation_enabled else None

    @cached_property
    def anomalies(self) -> AnomalyService | None:
        """The Anomalies, Insights and Notifications pages (okyaku.anomalies); None: not shown."""
        return self.builders.anomalies(self) if self.anomalies_enabled else None


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
    from okyaku.features import feature_enabled

    runtime = runtime or Runtime()
    settings = runtime.settings

    def templates() -> Environment:
        from okyaku.console.templating import template_environment

        return template_environment()

    def gateway(services: ConsoleServices) -> LLMGateway:
        from okyaku.llm.gateway import LLMGateway

        return llm or LLMGateway.from_settings(settings)

    def predictions(services: ConsoleServices) -> PredictionService:
        from okyaku.predictions.api import prediction_service

        # "template": score explanations without the LLM (tests, or to keep pages fast without Ollama).
        return prediction_service(runtime, writer="default" if explanations == "default" else None)

    def agents(services: ConsoleServices) -> AgentsService:
        from okyaku.agents.api import agents_service

        return agents_service(runtime, services.llm)

    def search(services: ConsoleServices) -> SemanticSearch:
        from okyaku.embeddings.search import SemanticSearch
        from okyaku.embeddings.triggers import default_embedder

        return SemanticSearch(embedder or default_embedder(runtime))

    def chat(services: ConsoleServices) -> ChatService:
        from okyaku.chat.service import ChatService

        return ChatService(runtime, chat_llm or services.llm, approvals=services.approvals, search=services.search)

    def recommendations(services: ConsoleServices) -> RecommendationService:
        from okyaku.recommendations.explain import LLMCardWriter
        from okyaku.recommendations.service import RecommendationService

        # Pages list cards without the model; Explain (on request) words them with it, or the template.
        return RecommendationService(runtime, writer=LLMCardWriter(services.llm), approvals=services.approvals)

    # The same services the conversation and anomalies APIs use, on the same LLM gateway.
    def conversation(services: ConsoleServices) -> ConversationService:
        from okyaku.conversation.service import ConversationService

        return ConversationService(runtime, services.llm)

    def anomalies(services: ConsoleServices) -> AnomalyService:
        from okyaku.anomalies.service import AnomalyService

        return AnomalyService(runtime, services.llm)

    return ConsoleServices(
        runtime=runtime,
        signer=signer
        or SessionSigner.from_secret_setting(
            settings.console_session_secret, ttl_s=settings.console_session_ttl_hours * 3600
        ),
        builders=ServiceBuilders(
            templates, gateway, predictions, agents, search, chat, recommendations, conversation, anomalies
        ),
        secure_cookie=settings.console_secure_cookie,
        recommendations_enabled=feature_enabled(settings, "recommendations"),
        conversation_enabled=feature_enabled(settings, "conversation"),
        anomalies_enabled=feature_enabled(settings, "anomalies"),
        insight_providers=tuple(insight_providers if insight_providers is not None else default_insights(settings)),
    )
