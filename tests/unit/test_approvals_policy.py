"""The approvals policy's rules, and that it knows every action the approval queue can hold."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from okyaku.agents.policy import KNOWN_ACTIONS, ApprovalPolicy, Reviewer, refusal
from okyaku.agents.tools import WRITE_TOOLS
from okyaku.agents.tools.records import CREATE_MODELS, UPDATE_MODELS
from okyaku.mcp.proposals import action_name
from okyaku.recommendations.apply import ACTIONS as RECOMMENDATION_ACTIONS

ALICE, BOB = uuid.uuid4(), uuid.uuid4()
MEMBER, ADMIN = Reviewer(ALICE, "member"), Reviewer(ALICE, "admin")


def rule(policy: ApprovalPolicy, who: Reviewer, action: str = "update_deal", **kwargs: object) -> str | None:
    found = refusal(policy, who, action=action, **kwargs)  # type: ignore[arg-type]
    return found.rule if found else None


def test_every_action_that_can_be_proposed_is_known_to_the_policy() -> None:
    proposed = {t.name for t in WRITE_TOOLS} | {name for name, _ in RECOMMENDATION_ACTIONS.values()}
    # An external agent's record changes over MCP (an email goes through draft_email instead).
    for entity_type in CREATE_MODELS:
        proposed.add(action_name("create", entity_type, {"type": "call"}))
        proposed.add(action_name("create", entity_type, {"type": "note"}))
    proposed |= {action_name("update", entity_type, {}) for entity_type in UPDATE_MODELS}
    assert proposed <= set(KNOWN_ACTIONS), proposed - set(KNOWN_ACTIONS)


def test_the_defaults_let_members_decide_everything_but_emails() -> None:
    policy = ApprovalPolicy()
    assert rule(policy, MEMBER, requested_by=ALICE) is None  # their own request, too
    assert rule(policy, MEMBER, "draft_email", requested_by=None) == "action"
    assert rule(policy, ADMIN, "draft_email", requested_by=None) is None


def test_admins_only_and_admin_only_actions_bind_members_not_admins() -> None:
    admins = ApprovalPolicy(approver_role="admin", admin_only_actions=[])
    assert rule(admins, MEMBER, requested_by=None) == "role"
    assert rule(admins, MEMBER, requested_by=None, decision="reject") == "role"
    assert rule(admins, Reviewer(None, "member"), requested_by=None) == "role"  # a service key
    assert rule(admins, ADMIN, requested_by=None) is None
    listed = ApprovalPolicy(admin_only_actions=["update_deal"])
    assert rule(listed, MEMBER, requested_by=None, decision="reject") == "action"
    assert rule(listed, MEMBER, "create_task", requested_by=None) is None


def test_without_self_approval_the_requester_may_reject_but_not_approve() -> None:
    policy = ApprovalPolicy(allow_self_approval=False)
    assert rule(policy, MEMBER, requested_by=ALICE) == "self_approval"
    assert rule(policy, ADMIN, requested_by=ALICE) == "self_approval"
    assert rule(policy, MEMBER, requested_by=ALICE, decision="reject") is None
    assert rule(policy, MEMBER, requested_by=BOB) is None
    assert rule(policy, MEMBER, requested_by=None) is None  # nobody asked (conversation analysis)
    assert rule(policy, Reviewer(None, "member"), requested_by=None) is None


@pytest.mark.parametrize(
    "body",
    [{"approver_role": "owner"}, {"admin_only_actions": ["drop_table"]}, {"allow_self_approval": "x"}, {"x": 1}],
)
def test_a_policy_refuses_unknown_values_and_fields(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ApprovalPolicy.model_validate(body)


def test_admin_only_actions_are_kept_once_in_order() -> None:
    policy = ApprovalPolicy(admin_only_actions=["update_deal", "draft_email", "update_deal"])  # type: ignore[list-item]
    assert policy.admin_only_actions == ["draft_email", "update_deal"]
