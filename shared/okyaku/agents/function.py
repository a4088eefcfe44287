"""The ``agents`` function's wiring: one app (and LLM gateway) per process, serving HTTP and the
run queue. ``functions/agents/app.py`` dispatches by event shape."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from okyaku.agents.api import create_agents_app
from okyaku.agents.dispatch import is_sqs_event
from okyaku.agents.service import AgentsService
from okyaku.runtime import Runtime

__all__ = ["AgentsFunction", "is_sqs_event"]


class AgentsFunction:
    def __init__(self, runtime: Runtime | None = None) -> None:
        self.app: FastAPI = create_agents_app(runtime)
        self.service: AgentsService = self.app.state.agents
        self.runtime: Runtime = self.app.state.runtime

    def consume(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        """Agent run messages → runs; returns ``batchItemFailures`` for the messages to retry."""
        return self.service.consume(event, context)
