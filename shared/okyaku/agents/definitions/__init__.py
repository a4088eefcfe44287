"""The three agents. Each system prompt is a template beside this module (``<name>.txt``), with
the shared working and safety rules in ``rules.txt``; bump ``PROMPT_VERSION`` when they change."""

from __future__ import annotations

import uuid
from functools import cache
from importlib.resources import files

from pydantic import BaseModel, ConfigDict, Field

from okyaku.agents.framework import AgentDefinition, Preload
from okyaku.agents.tools import ALL_TOOLS

PROMPT_VERSION = "2"  # 2: the final answer is checked against the tool results


@cache
def prompt_text(name: str) -> str:
    return files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


def rules() -> str:
    return prompt_text("rules")


class _Context(BaseModel):
    model_config = ConfigDict(extra="allow")  # extra keys reach the model as data


class LeadContext(_Context):
    contact_id: uuid.UUID = Field(description="The lead (contact) to qualify")


class DealContext(_Context):
    deal_id: uuid.UUID = Field(description="The deal to assist with")


class AnalystContext(_Context):
    pass


def _focus_contact(context: BaseModel) -> list[Preload]:
    assert isinstance(context, LeadContext)
    return [Preload("get_record", {"entity_type": "contact", "id": str(context.contact_id)})]


def _focus_deal(context: BaseModel) -> list[Preload]:
    assert isinstance(context, DealContext)
    return [Preload("get_record", {"entity_type": "deal", "id": str(context.deal_id)})]


LEAD_QUALIFIER = AgentDefinition(
    name="lead_qualifier",
    description="Analyses a lead, scores it with the prediction model when available, categorises it, and "
    "proposes a status update, a follow-up task and a draft outreach email.",
    prompt=prompt_text("lead_qualifier"),
    prompt_version=f"lead_qualifier@{PROMPT_VERSION}",
    tools=tuple(
        ALL_TOOLS[n]
        for n in (
            "get_record",
            "search_records",
            "semantic_search",
            "get_lead_score",
            "update_contact",
            "create_task",
            "draft_email",
            "add_note",
        )
    ),
    context_model=LeadContext,
    default_task="Qualify this lead: score, categorise, and propose the next steps.",
    preload=_focus_contact,
)

DEAL_ASSISTANT = AgentDefinition(
    name="deal_assistant",
    description="Analyses a deal's status and history, finds blockers, suggests next steps, and drafts a "
    "follow-up or proposal email.",
    prompt=prompt_text("deal_assistant"),
    prompt_version=f"deal_assistant@{PROMPT_VERSION}",
    tools=tuple(
        ALL_TOOLS[n]
        for n in (
            "get_record",
            "search_records",
            "semantic_search",
            "analyze",
            "update_deal",
            "create_task",
            "log_activity",
            "add_note",
            "draft_email",
        )
    ),
    context_model=DealContext,
    default_task="Review this deal: status, blockers, next steps; propose follow-ups.",
    preload=_focus_deal,
)

DATA_ANALYST = AgentDefinition(
    name="data_analyst",
    description="Answers a question about the CRM by querying and summarising. Read-only.",
    prompt=prompt_text("data_analyst"),
    prompt_version=f"data_analyst@{PROMPT_VERSION}",
    tools=tuple(ALL_TOOLS[n] for n in ("analyze", "search_records", "get_record", "semantic_search")),
    context_model=AnalystContext,
    default_task="Summarise the state of the pipeline.",
)

AGENTS: dict[str, AgentDefinition] = {a.name: a for a in (LEAD_QUALIFIER, DEAL_ASSISTANT, DATA_ANALYST)}
