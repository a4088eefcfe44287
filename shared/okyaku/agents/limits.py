"""The limits of one agent run, from the AI_AGENT_* settings (stored with the run when it is asked)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from okyaku.config import Settings


@dataclass(frozen=True)
class AgentLimits:
    max_iterations: int = 10
    token_budget: int = 60_000
    time_budget_s: float = 300.0
    max_proposals: int = 10

    @classmethod
    def from_settings(cls, settings: Settings) -> AgentLimits:
        return cls(
            max_iterations=max(1, settings.ai_agent_max_iterations),
            token_budget=max(1, settings.ai_agent_token_budget),
            time_budget_s=max(1.0, settings.ai_agent_time_budget_s),
            max_proposals=max(0, settings.ai_agent_max_proposals),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_iterations": self.max_iterations,
            "token_budget": self.token_budget,
            "time_budget_s": self.time_budget_s,
            "max_proposals": self.max_proposals,
        }
