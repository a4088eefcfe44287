"""Console pages of the agents: the approval queue (field diff, reasoning, approve, edit then
approve, reject with a reason, the stale-record conflict) and agent runs with their step log.
What the approvals policy does not let the signed-in user decide is shown with its buttons
disabled and the reason; the queue refuses it anyway (403) if the form is posted.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from okyaku.agents.approvals import ApprovalFilters
from okyaku.agents.models import PendingAction
from okyaku.agents.policy import Refusal
from okyaku.console import queries as qs
from okyaku.console.pages_email import email_states
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form
from okyaku.errors import Conflict, FeatureDisabled, Forbidden, ValidationFailed

ActionStatus = Literal["pending", "approved", "rejected", "expired", "failed", "withdrawn"]
EDIT_PREFIX = "edit__"
NOTICES = {
    "approved": "Approved: the change was applied.",
    "edited": "Approved with your edits: the change was applied.",
    "rejected": "Rejected: nothing was changed.",
}


def field_text(value: Any) -> str:
    """A proposed value as the reviewer edits it: JSON for structures, plain text otherwise."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def parse_edit(proposed: Any, raw: str) -> Any:
    """The reviewer's text back to the type the proposal had (the CRM schema checks it after)."""
    raw = raw.strip()
    if raw == "":
        return None
    if isinstance(proposed, dict | list):
        try:
            return json.loads(raw)
        except ValueError as error:
            raise ValidationFailed(
                "an edited value is not valid JSON", details=[{"field": "edited_fields", "message": str(error)}]
            ) from error
    if isinstance(proposed, bool):
        return raw.lower() in ("true", "yes", "1", "on")
    return raw


def edited_fields(action: PendingAction, form: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the reviewer actually changed (an unchanged box is not an edit)."""
    edits: dict[str, Any] = {}
    for name, change in action.changes.items():
        key = EDIT_PREFIX + name
        if key not in form:
            continue
        proposed = change.get("after")
        raw = str(form[key])
        if raw.strip() == field_text(proposed).strip():
            continue
        edits[name] = parse_edit(proposed, raw)
    return edits


def action_view(
    action: PendingAction, titles: Mapping[tuple[str, uuid.UUID], str], refusal: Refusal | None = None
) -> dict[str, Any]:
    plural = qs.PLURAL.get(action.entity_type)
    target_title = titles.get((action.entity_type, action.entity_id)) if action.entity_id else None
    links = action.context.get("links") if isinstance(action.context, dict) else None
    return {
        "action": action,
        "href": f"{CONSOLE}/{plural}/{action.entity_id}" if plural and action.entity_id else None,
        "target_title": target_title,
        "rows": [
            {
                "field": name,
                "before": change.get("before_label") or field_text(change.get("before")),
                "after": change.get("after_label") or field_text(change.get("after")),
                "edit_value": field_text(change.get("after")),
                "multiline": isinstance(change.get("after"), str) and len(change.get("after") or "") > 60,
            }
            for name, change in action.changes.items()
        ],
        "links": links if isinstance(links, dict) else {},
        # why the signed-in user may not approve (a pending row only; decided rows show no buttons);
        # the self-approval rule still lets them reject their own request
        "refusal": refusal if refusal is not None and refusal.rule != "status" else None,
        "may_reject": refusal is None or refusal.rule in ("status", "self_approval"),
    }


def render_queue(page: Page, status: str, *, message: dict[str, str] | None = None, status_code: int = 200) -> Response:
    org = page.organization_id
    approvals = page.services.agents.approvals
    rows = approvals.list(org, ApprovalFilters(status=status), limit=50).rows
    verdicts = approvals.permissions(org, rows, page.session.user_id)
    with page.services.runtime.db.organization_scope(org) as session:
        titles = qs.titles(session, [(r.entity_type, r.entity_id) for r in rows if r.entity_id])
    return page.render(
        "approvals.html",
        {
            "title": "Approvals",
            "status": status,
            "statuses": ["pending", "approved", "rejected", "failed", "expired", "withdrawn"],
            "actions": [action_view(r, titles, verdicts.get(r.id)) for r in rows],
            "message": message,
            # approved drafts: their e-mail's delivery state (okyaku.console.pages_email)
            "email_states": email_states(
                page.services,
                org,
                (str((r.result or {}).get("email_id") or "") for r in rows if r.action == "draft_email"),
            ),
        },
        status_code=status_code,
    )


def conflict_message(error: Conflict) -> dict[str, str]:
    details = error.details if isinstance(error.details, dict) else {}
    if error.code == "record_changed":
        text = (
            f"Someone edited the record after the agent proposed this on version "
            f"{details.get('proposed_on_version')}; it is now at version {details.get('current_version')}. "
            "Nothing was applied and the proposal is marked failed: open the record, check what changed, "
            "and ask the agent again if the change is still wanted."
        )
        return {"kind": "conflict", "title": "The record changed since the proposal", "text": text}
    return {"kind": "conflict", "title": "This proposal cannot be approved", "text": error.message}


def not_permitted_message(error: Forbidden) -> dict[str, str]:
    return {"kind": "error", "title": "The approvals policy does not let you decide on this", "text": error.message}


def agents_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/approvals", response_class=HTMLResponse)
    def approvals_page(page: SignedInDep, status: ActionStatus = "pending", notice: str | None = None) -> Response:
        message = {"kind": "success", "title": NOTICES[notice], "text": ""} if notice in NOTICES else None
        return render_queue(page, status, message=message)

    @router.post("/approvals/{action_id}/approve")
    async def approve(request: Request, page: SignedInDep, action_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        org = page.organization_id
        approvals = page.services.agents.approvals
        action = approvals.get(org, action_id)  # NotFound for another organization's action
        try:
            edits = edited_fields(action, form) if form.get("mode") == "edit" else {}
            approvals.approve(org, action_id, reviewer_id=page.session.user_id, edited_fields=edits or None)
        except Conflict as error:
            return render_queue(page, "pending", message=conflict_message(error), status_code=409)
        except Forbidden as error:
            return render_queue(page, "pending", message=not_permitted_message(error), status_code=403)
        except ValidationFailed as error:
            problems = "; ".join(
                f"{d.get('field', '')}: {d.get('message', '')}" for d in (error.details or []) if isinstance(d, dict)
            )
            message = {"kind": "error", "title": error.message, "text": problems}
            return render_queue(page, "pending", message=message, status_code=422)
        return page.redirect(f"{CONSOLE}/approvals?notice={'edited' if edits else 'approved'}")

    @router.post("/approvals/{action_id}/reject")
    async def reject(request: Request, page: SignedInDep, action_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        reason = str(form.get("reason") or "").strip()
        if not reason:
            message = {"kind": "error", "title": "Say why you reject it", "text": "A reason is required."}
            return render_queue(page, "pending", message=message, status_code=422)
        try:
            page.services.agents.approvals.reject(
                page.organization_id, action_id, reviewer_id=page.session.user_id, reason=reason[:2000]
            )
        except Conflict as error:
            return render_queue(page, "pending", message=conflict_message(error), status_code=409)
        except Forbidden as error:
            return render_queue(page, "pending", message=not_permitted_message(error), status_code=403)
        return page.redirect(f"{CONSOLE}/approvals?notice=rejected")

    @router.get("/runs", response_class=HTMLResponse)
    def runs_page(page: SignedInDep) -> Response:
        try:
            runs = page.services.agents.executions(page.organization_id, agent=None, status=None, limit=50)
        except FeatureDisabled as error:
            return page.render("runs.html", {"title": "Agent runs", "runs": [], "notice": error.message})
        return page.render("runs.html", {"title": "Agent runs", "runs": runs})

    @router.get("/runs/{execution_id}", response_class=HTMLResponse)
    def run_page(page: SignedInDep, execution_id: uuid.UUID) -> Response:
        view = page.services.agents.execution(page.organization_id, execution_id)
        verdicts = page.services.agents.approvals.permissions(
            page.organization_id, list(view.pending_actions), page.session.user_id
        )
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            titles = qs.titles(session, [(a.entity_type, a.entity_id) for a in view.pending_actions if a.entity_id])
        return page.render(
            "run.html",
            {
                "title": f"Run of {view.execution.agent}",
                "run": view.execution,
                "steps": view.steps,
                "actions": [action_view(a, titles, verdicts.get(a.id)) for a in view.pending_actions],
                "as_json": lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str),
            },
        )

    return router
