"""The approval queue: agents' proposals wait here for a person, and only here become changes.

- ``propose`` stores a pending action (field diff, reasoning, context, expiry, base version).
- ``approve`` applies it through the CRM services the CRUD API uses (so change events are
  recorded in the same transaction), exactly once: the row is locked, and a second approve
  returns the first result. Edits may only touch fields the proposal touched. If the record's
  version moved since the proposal, it refuses with 409 and the action is marked failed.
- ``reject`` records the reviewer's reason; ``expire_overdue`` retires what nobody reviewed.
- Who may decide is the organization's approvals policy (okyaku.agents.policy), checked on every
  approve and reject with the reviewer's role as the database has it: a refusal is 403
  ``approval_not_permitted`` (details: the rule) and the action stays pending. ``permissions``
  tells a reviewer, for each row, whether they may approve it and why not.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python
from sqlalchemy import Select, select, tuple_, update
from sqlalchemy.orm import Session

from okyaku.agents.models import AgentExecution, PendingAction
from okyaku.agents.policy import (
    ApprovalPolicy,
    Decision,
    Refusal,
    Reviewer,
    StoredPolicy,
    load_policy,
    refusal,
    reviewer,
    save_policy,
)
from okyaku.agents.tooling import Proposal
from okyaku.agents.tools.records import CREATE_MODELS, SERVICES, UPDATE_MODELS
from okyaku.clock import utc_now
from okyaku.crm.listing import decode_cursor, encode_cursor, invalid_cursor
from okyaku.errors import Conflict, Forbidden, NotFound, OkyakuError, RateLimited, ValidationFailed, field_error
from okyaku.runtime import Runtime
from okyaku.validation import field_details


@dataclass(frozen=True)
class ApprovalFilters:
    status: str | None = None
    agent: str | None = None
    entity_type: str | None = None
    entity_id: uuid.UUID | None = None
    execution_id: uuid.UUID | None = None
    action: str | None = None


@dataclass(frozen=True)
class ApprovalPage:
    rows: list[PendingAction]
    next_cursor: str | None


class _ApplyFailed(Exception):
    """The change could not be applied (stale record, reference gone): the action fails."""

    def __init__(self, error: OkyakuError) -> None:
        super().__init__(error.message)
        self.error = error


class ApprovalService:
    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utc_now,
        on_email_queued: Callable[[uuid.UUID, uuid.UUID], None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        # After an approved draft_email is committed: have the outbox's worker send it now.
        self.on_email_queued = on_email_queued or self._notify_email_worker

    def _notify_email_worker(self, organization_id: uuid.UUID, email_id: uuid.UUID) -> None:
        from okyaku.email.service import EmailService

        EmailService(self.runtime, clock=self.clock).notify(organization_id, email_id)

    @property
    def ttl(self) -> timedelta:
        return timedelta(hours=self.runtime.settings.ai_approval_ttl_hours)

    # --- proposing -------------------------------------------------------------------------------

    def propose(
        self,
        organization_id: uuid.UUID,
        *,
        execution_id: uuid.UUID | None,
        agent: str,
        action: str,
        proposal: Proposal,
        low_risk: bool,
        context: Mapping[str, Any],
        auto_apply: bool = False,
        requested_by: uuid.UUID | None = None,
    ) -> PendingAction:
        """Store a proposal; with ``auto_apply`` (low-risk creates, approval switched off) apply it
        at once through the same path as a person's approval, so the record of it is the same.
        ``requested_by``: the user who asked for it (the self-approval rule). An action the policy
        reserves for admins is never auto-applied: it waits for an admin."""
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            if auto_apply and action in load_policy(session).policy.admin_only_actions:
                auto_apply = False
            row = PendingAction(
                agent=agent,
                execution_id=execution_id,
                action=action,
                operation=proposal.operation,
                entity_type=proposal.entity_type,
                entity_id=proposal.entity_id,
                changes=to_jsonable_python(proposal.changes),
                reasoning=proposal.reasoning,
                context=to_jsonable_python(dict(context)),
                status="pending",
                low_risk=low_risk,
                base_version=proposal.base_version,
                requested_by=requested_by,
                expires_at=now + self.ttl,
                created_at=now,
                updated_at=now,
            )
            session.add(row)
            session.flush()
            session.expunge(row)
        if not auto_apply:
            return row
        try:
            return self.approve(organization_id, row.id, reviewer_id=None, auto=True)
        except OkyakuError:
            return self.get(organization_id, row.id)  # marked failed, with the reason

    # --- the policy --------------------------------------------------------------------------------

    def policy(self, organization_id: uuid.UUID) -> StoredPolicy:
        with self.runtime.db.organization_scope(organization_id) as session:
            return load_policy(session)

    def set_policy(
        self, organization_id: uuid.UUID, policy: ApprovalPolicy, *, updated_by: uuid.UUID | None
    ) -> StoredPolicy:
        """Replace the policy (the caller checks that an admin asks: see the API)."""
        with self.runtime.db.organization_scope(organization_id) as session:
            return save_policy(session, policy, updated_by=updated_by)

    # --- reading ---------------------------------------------------------------------------------

    def get(self, organization_id: uuid.UUID, action_id: uuid.UUID) -> PendingAction:
        with self.runtime.db.organization_scope(organization_id) as session:
            self.expire_overdue(session)
            row = session.get(PendingAction, action_id)
            if row is None:
                raise NotFound(f"pending action {action_id} not found", details={"id": str(action_id)})
            return row

    def list(
        self, organization_id: uuid.UUID, filters: ApprovalFilters, *, limit: int = 50, cursor: str | None = None
    ) -> ApprovalPage:
        """Newest first; ``cursor`` is the previous page's ``next_cursor``."""
        with self.runtime.db.organization_scope(organization_id) as session:
            self.expire_overdue(session)
            statement: Select[Any] = select(PendingAction)
            for name in ("status", "agent", "entity_type", "entity_id", "execution_id", "action"):
                value = getattr(filters, name)
                if value is not None:
                    statement = statement.where(getattr(PendingAction, name) == value)
            if cursor:
                _, created, last_id = decode_cursor(cursor)
                try:
                    created_at = datetime.fromisoformat(created or "")
                except ValueError as error:
                    raise invalid_cursor() from error
                statement = statement.where(tuple_(PendingAction.created_at, PendingAction.id) < (created_at, last_id))
            statement = statement.order_by(PendingAction.created_at.desc(), PendingAction.id.desc()).limit(limit + 1)
            rows = list(session.scalars(statement))
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor("-created_at", rows[-1].created_at.isoformat(), rows[-1].id)
        return ApprovalPage(rows, next_cursor)

    def permissions(
        self, organization_id: uuid.UUID, rows: Sequence[PendingAction], reviewer_id: uuid.UUID | None
    ) -> dict[uuid.UUID, Refusal | None]:
        """For each row, why ``reviewer_id`` may not approve it now (None: they may)."""
        if not rows:
            return {}
        with self.runtime.db.organization_scope(organization_id) as session:
            policy = load_policy(session).policy
            who = reviewer(session, reviewer_id)
            requesters = self._requesters(session, rows)
        verdicts: dict[uuid.UUID, Refusal | None] = {}
        for row in rows:
            if row.status != "pending":
                verdicts[row.id] = Refusal("status", f"this proposal is {row.status}")
            else:
                verdicts[row.id] = refusal(policy, who, action=row.action, requested_by=requesters.get(row.id))
        return verdicts

    def expire_overdue(self, session: Session) -> int:
        now = self.clock()
        result = session.execute(
            update(PendingAction)
            .where(PendingAction.status == "pending", PendingAction.expires_at <= now)
            .values(status="expired", updated_at=now, result={"reason": "nobody reviewed it before it expired"})
        )
        return int(getattr(result, "rowcount", 0) or 0)

    # --- deciding --------------------------------------------------------------------------------

    def approve(
        self,
        organization_id: uuid.UUID,
        action_id: uuid.UUID,
        *,
        reviewer_id: uuid.UUID | None,
        edited_fields: Mapping[str, Any] | None = None,
        auto: bool = False,
    ) -> PendingAction:
        now = self.clock()
        expired = False
        try:
            with self.runtime.transaction(organization_id) as session:
                row = self._locked(session, action_id)
                if row.status == "approved":
                    return row  # applied once already: the same answer again
                if row.status != "pending":
                    raise Conflict(
                        f"this action is already {row.status}",
                        code=f"action_{row.status}",
                        details={"status": row.status, "result": row.result},
                    )
                if not auto:
                    self._check_permitted(session, row, reviewer_id, "approve")
                if row.expires_at <= now:
                    row.status, row.updated_at = "expired", now
                    row.result = {"reason": "nobody reviewed it before it expired"}
                    expired = True
                else:
                    values, edits = self._values(row, edited_fields)
                    try:
                        outcome = self._apply(session, row, values, reviewer_id)
                    except RateLimited:
                        raise  # the e-mail cap: try again later; the action stays pending
                    except OkyakuError as error:
                        raise _ApplyFailed(error) from error
                    row.status = "approved"
                    row.auto_applied = auto
                    row.result = outcome
                    row.edited_fields = edits or None
                    row.reviewer_id = reviewer_id
                    row.reviewed_at = now
                    row.updated_at = now
                session.flush()
                session.expunge(row)
        except _ApplyFailed as failed:
            self._mark_failed(organization_id, action_id, failed.error, reviewer_id, now)
            raise failed.error from None
        if row.status == "approved" and isinstance(row.result, dict) and row.result.get("email_id"):
            self.on_email_queued(organization_id, uuid.UUID(str(row.result["email_id"])))
        if expired:
            raise Conflict(
                "this proposal expired before anyone approved it",
                code="action_expired",
                details={"expires_at": row.expires_at.isoformat()},
            )
        return row

    def reject(
        self, organization_id: uuid.UUID, action_id: uuid.UUID, *, reviewer_id: uuid.UUID | None, reason: str
    ) -> PendingAction:
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            row = self._locked(session, action_id)
            if row.status == "rejected":
                return row
            if row.status not in ("pending", "expired"):
                raise Conflict(
                    f"this action is already {row.status}", code=f"action_{row.status}", details={"status": row.status}
                )
            self._check_permitted(session, row, reviewer_id, "reject")
            row.status = "rejected"
            row.rejection_reason = reason
            row.reviewer_id = reviewer_id
            row.reviewed_at = now
            row.updated_at = now
            session.flush()
            session.expunge(row)
            return row

    def withdraw_execution(self, organization_id: uuid.UUID, execution_id: uuid.UUID, *, reason: str) -> int:
        """A failed run's proposals are withdrawn: nothing half-done waits for approval."""
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            result = session.execute(
                update(PendingAction)
                .where(PendingAction.execution_id == execution_id, PendingAction.status == "pending")
                .values(status="withdrawn", updated_at=now, result={"reason": reason})
            )
            return int(getattr(result, "rowcount", 0) or 0)

    # --- internals -------------------------------------------------------------------------------

    def _check_permitted(
        self, session: Session, row: PendingAction, reviewer_id: uuid.UUID | None, decision: Decision
    ) -> None:
        """403 (nothing changes: the caller's transaction rolls back) unless the policy lets this
        reviewer take this decision."""
        stored = load_policy(session)
        who: Reviewer = reviewer(session, reviewer_id)
        refused = refusal(
            stored.policy,
            who,
            action=row.action,
            requested_by=self._requesters(session, [row]).get(row.id),
            decision=decision,
        )
        if refused is not None:
            raise Forbidden(
                refused.message,
                code="approval_not_permitted",
                details={
                    "rule": refused.rule,
                    "role": who.role,
                    "action": row.action,
                    "policy": stored.policy.model_dump(mode="json"),
                },
            )

    def _requesters(self, session: Session, rows: Sequence[PendingAction]) -> dict[uuid.UUID, uuid.UUID | None]:
        """Who asked for each row: its own ``requested_by``, or (rows from before 0011) its run's."""
        found: dict[uuid.UUID, uuid.UUID | None] = {r.id: r.requested_by for r in rows}
        runs = {r.execution_id for r in rows if r.requested_by is None and r.execution_id is not None}
        if runs:
            by_run = dict(
                session.execute(
                    select(AgentExecution.id, AgentExecution.requested_by).where(AgentExecution.id.in_(runs))
                ).tuples()
            )
            for row in rows:
                if row.requested_by is None and row.execution_id is not None:
                    found[row.id] = by_run.get(row.execution_id)
        return found

    def _locked(self, session: Session, action_id: uuid.UUID) -> PendingAction:
        # RLS hides other organizations' actions: for them this is simply not found.
        row = session.get(PendingAction, action_id, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFound(f"pending action {action_id} not found", details={"id": str(action_id)})
        return row

    def _values(
        self, row: PendingAction, edited_fields: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The values to apply: the proposal's, with the reviewer's edits (only of proposed fields),
        checked against the CRUD API's schema. A bad edit is a 422 and the action stays pending."""
        values = {field: change.get("after") for field, change in row.changes.items()}
        edits: dict[str, Any] = {}
        if edited_fields:
            outside = sorted(set(edited_fields) - set(row.changes))
            if outside:
                raise ValidationFailed(
                    "only fields the proposal changes can be edited",
                    details=[
                        field_error(f"edited_fields.{name}", f"not part of this proposal ({sorted(row.changes)})")
                        for name in outside
                    ],
                )
            for name, value in edited_fields.items():
                edits[name] = {"proposed": values[name], "approved": to_jsonable_python(value)}
                values[name] = value
        models = CREATE_MODELS if row.operation == "create" else UPDATE_MODELS
        try:
            models[row.entity_type].model_validate(values)
        except ValidationError as error:
            raise ValidationFailed(
                "the approved values are not valid", details=field_details(error, prefix="edited_fields")
            ) from error
        return values, edits

    def _apply(
        self, session: Session, row: PendingAction, values: dict[str, Any], actor: uuid.UUID | None
    ) -> dict[str, Any]:
        service = SERVICES[row.entity_type]
        if row.operation == "create":
            record = service.create(session, CREATE_MODELS[row.entity_type].model_validate(values), actor=actor)
        else:
            assert row.entity_id is not None
            model: Any = service.spec.model
            # Lock the record's row alone (a joined eager load cannot be locked FOR UPDATE).
            version = session.scalar(select(model.version).where(model.id == row.entity_id).with_for_update())
            if version is None:
                raise NotFound(
                    f"{row.entity_type} {row.entity_id} no longer exists", details={"id": str(row.entity_id)}
                )
            if row.base_version is not None and version != row.base_version:
                raise Conflict(
                    f"the {row.entity_type} changed since the agent proposed this; review it again",
                    code="record_changed",
                    details={"proposed_on_version": row.base_version, "current_version": version},
                )
            patch = UPDATE_MODELS[row.entity_type].model_validate(values)
            record = service.update(session, row.entity_id, patch, expected_version=row.base_version, actor=actor)
        outcome: dict[str, Any] = {
            "entity_type": row.entity_type,
            "entity_id": str(record.id),
            "version": record.version,
        }
        if row.action == "draft_email" and row.operation == "create" and row.entity_type == "activity":
            outcome["email_id"] = str(self._queue_draft_email(session, row, record, actor))
        return outcome

    def _queue_draft_email(
        self, session: Session, row: PendingAction, activity: Any, actor: uuid.UUID | None
    ) -> uuid.UUID:
        """An approved draft goes through the outbox like any e-mail, in the approval's transaction:
        its activity is the e-mail's, sent from the address of whoever asked for it (else the reviewer)."""
        from okyaku.email.service import EmailDraft, queue_email

        if activity.contact_id is None:
            raise ValidationFailed("the draft e-mail has no contact to send to", code="no_recipient")
        draft = EmailDraft(
            contact_id=activity.contact_id,
            subject=activity.subject or "",
            body=activity.body or "",
            deal_id=activity.deal_id,
        )
        sender = self._requesters(session, [row]).get(row.id) or actor
        email = queue_email(
            session,
            self.runtime.settings,
            draft,
            user_id=sender,
            now=self.clock(),
            activity_id=activity.id,
            pending_action_id=row.id,
        )
        return email.id

    def _mark_failed(
        self,
        organization_id: uuid.UUID,
        action_id: uuid.UUID,
        error: OkyakuError,
        reviewer_id: uuid.UUID | None,
        now: datetime,
    ) -> None:
        with self.runtime.db.organization_scope(organization_id) as session:
            row = self._locked(session, action_id)
            if row.status != "pending":
                return  # a concurrent decision got there first
            row.status = "failed"
            row.result = {"error": error.to_body()["error"]}
            row.reviewer_id = reviewer_id
            row.reviewed_at = now
            row.updated_at = now
