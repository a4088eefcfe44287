"""Who may decide on a proposal: each organization's approvals policy, enforced by role.

The policy has three rules, checked in this order when a person approves, edits then approves, or
rejects a proposal (the approval queue calls :func:`refusal`, so the agents API, the console, and
whatever chat, recommendations or conversation proposed all go through it):

- ``approver_role``: ``member`` (default: every user of the organization may decide, as before the
  policy existed) or ``admin`` (only admins may approve or reject anything).
- ``admin_only_actions``: proposal kinds (the queue's ``action``: ``draft_email``, ``update_deal``,
  ...) that only an admin may approve or reject, whatever ``approver_role`` says. Default:
  ``draft_email``, the one action whose effect leaves the CRM (an email goes to a customer) and
  cannot be taken back; every other action is an edit of the CRM that a person can undo.
- ``allow_self_approval``: when false, the user who asked for the change (started the agent run,
  asked in chat, applied the recommendation) may not approve it: someone else must (admins
  included: it is a four-eyes rule). Rejecting one's own request stays allowed: it changes nothing.
  Proposals nobody asked for (conversation analysis, a service key's run) have no requester.

A key made for no user (a service key) decides as a member. Auto-apply of low-risk creates
(``AI_REQUIRE_APPROVAL_FOR_WRITES=false``) is the deployment's decision, not a person's: the role
and self-approval rules do not stop it, but an action listed in ``admin_only_actions`` is never
auto-applied; it waits in the queue for an admin.

An organization that never set a policy has the defaults (no row is stored until an admin PUTs one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from okyaku.agents.models import ApprovalPolicyRow
from okyaku.db.models import User

ApproverRole = Literal["member", "admin"]
# Every action the approval queue knows: the agents' write tools (also used by chat and by
# conversation analysis), the recommendations' task due-date change, and the record changes an
# external agent proposes over MCP (okyaku.mcp.proposals.action_name).
KnownAction = Literal[
    "add_note",
    "create_company",
    "create_contact",
    "create_deal",
    "create_task",
    "draft_email",
    "log_activity",
    "update_activity",
    "update_company",
    "update_contact",
    "update_deal",
    "update_task",
]
KNOWN_ACTIONS: tuple[str, ...] = KnownAction.__args__  # type: ignore[attr-defined]
DEFAULT_ADMIN_ONLY_ACTIONS: tuple[KnownAction, ...] = ("draft_email",)

RefusalRule = Literal["status", "role", "action", "self_approval"]
Decision = Literal["approve", "reject"]


class ApprovalPolicy(BaseModel):
    """An organization's approvals policy. Every field has its default; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approver_role: ApproverRole = Field(
        default="member", description="Who may approve or reject proposals: every member, or admins only"
    )
    admin_only_actions: list[KnownAction] = Field(
        default_factory=lambda: list(DEFAULT_ADMIN_ONLY_ACTIONS),
        max_length=len(KNOWN_ACTIONS) * 2,
        description="Proposal kinds only an admin may approve or reject (default: draft_email, which emails a "
        "customer)",
    )
    allow_self_approval: bool = Field(
        default=True, description="Whether the user who asked for a change may approve it themselves"
    )

    @field_validator("admin_only_actions")
    @classmethod
    def _sorted_once(cls, value: list[KnownAction]) -> list[KnownAction]:
        return sorted(set(value))


@dataclass(frozen=True)
class StoredPolicy:
    policy: ApprovalPolicy
    updated_at: datetime | None = None  # None: never set, the defaults apply
    updated_by: uuid.UUID | None = None


@dataclass(frozen=True)
class Refusal:
    """Why this reviewer may not decide on this proposal: a rule and a sentence for people."""

    rule: RefusalRule
    message: str


@dataclass(frozen=True)
class Reviewer:
    user_id: uuid.UUID | None
    role: str  # "admin" or "member"; a service key (no user) or an unknown user is a member


def load_policy(session: Session) -> StoredPolicy:
    """The policy of the session's organization (RLS scopes the row), or the defaults."""
    row = session.scalar(select(ApprovalPolicyRow))
    if row is None:
        return StoredPolicy(ApprovalPolicy())
    policy = ApprovalPolicy(
        approver_role=row.approver_role,
        admin_only_actions=[a for a in row.admin_only_actions if a in KNOWN_ACTIONS],
        allow_self_approval=row.allow_self_approval,
    )
    return StoredPolicy(policy, row.updated_at, row.updated_by)


def save_policy(session: Session, policy: ApprovalPolicy, *, updated_by: uuid.UUID | None) -> StoredPolicy:
    """Replace the session's organization's policy (one row per organization)."""
    values: dict[str, Any] = {
        "approver_role": policy.approver_role,
        "admin_only_actions": list(policy.admin_only_actions),
        "allow_self_approval": policy.allow_self_approval,
        "updated_by": updated_by,
    }
    statement = insert(ApprovalPolicyRow).values(**values)
    statement = statement.on_conflict_do_update(
        index_elements=[ApprovalPolicyRow.organization_id],
        set_={**values, "updated_at": func.clock_timestamp()},
    )
    session.execute(statement)
    return load_policy(session)


def reviewer(session: Session, user_id: uuid.UUID | None) -> Reviewer:
    """The reviewer's role as the database has it now (a console session or a key says who, not what)."""
    if user_id is None:
        return Reviewer(None, "member")
    found = session.execute(select(User.role, User.deactivated_at).where(User.id == user_id)).first()
    role = found.role if found is not None and found.deactivated_at is None else "member"
    return Reviewer(user_id, role)


def refusal(
    policy: ApprovalPolicy,
    who: Reviewer,
    *,
    action: str,
    requested_by: uuid.UUID | None,
    decision: Decision = "approve",
) -> Refusal | None:
    """None when ``who`` may take ``decision`` on an ``action`` proposal asked for by ``requested_by``."""
    if who.role != "admin":
        if policy.approver_role == "admin":
            return Refusal("role", "this organization's approvals policy lets only admins approve or reject proposals")
        if action in policy.admin_only_actions:
            return Refusal(
                "action", f"this organization's approvals policy lets only admins approve or reject {action} proposals"
            )
    if (
        decision == "approve"
        and not policy.allow_self_approval
        and who.user_id is not None
        and who.user_id == requested_by
    ):
        return Refusal(
            "self_approval",
            "you asked for this change; this organization's approvals policy needs someone else to approve it",
        )
    return None
