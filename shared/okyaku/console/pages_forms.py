"""Console pages that write records: new, edit (version-checked) and delete (confirmed) for
companies, contacts, deals, activities and tasks, through the API's services (console/forms.py).

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

import logging
import uuid
from collections.abc import Mapping
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from okyaku.console import bulk, forms
from okyaku.console import queries as qs
from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form, safe_next
from okyaku.crm.entities import ENTITIES
from okyaku.errors import Conflict, NotFound, ValidationFailed, field_error

logger = logging.getLogger(__name__)

# Kinds of record with a page of their own; an activity or a task lives on the pages of the
# records it is linked to (and tasks on the Tasks page).
RECORD_PAGES = {"company", "contact", "deal"}
TITLES = {"company": "company", "contact": "contact", "deal": "deal", "activity": "activity", "task": "task"}


def record_href(entity: str, record_id: uuid.UUID) -> str:
    return f"{CONSOLE}/{forms.PLURAL_NAMES[entity]}/{record_id}"


def form_version(form: Mapping[str, Any]) -> int | None:
    text = str(form.get("version") or "")
    return int(text) if text.isdigit() else None


def after_write(entity: str, record_id: uuid.UUID | None, form: Mapping[str, Any], notice: str) -> str:
    """Where a write sends the browser: the page it came from (``next``), else the record."""
    nxt = str(form.get("next") or "")
    if nxt:
        target = safe_next(nxt)
        return target + ("&" if "?" in target else "?") + f"notice={notice}"
    if entity in RECORD_PAGES and record_id is not None:
        return f"{record_href(entity, record_id)}?notice={notice}"
    return f"{CONSOLE}/tasks?notice={notice}" if entity == "task" else f"{CONSOLE}?notice={notice}"


def render_form(
    page: Page,
    entity: str,
    state: forms.FormState,
    *,
    record_id: uuid.UUID | None,
    title: str,
    nxt: str = "",
    status_code: int = 200,
    zone: ZoneInfo | None = None,
) -> HTMLResponse:
    """The form page; ``zone``: the one its dates and times are in (a posted form's own)."""
    plural = forms.PLURAL_NAMES[entity]
    action = f"{CONSOLE}/{plural}/{record_id}/edit" if record_id else f"{CONSOLE}/{plural}/new"
    return page.render(
        "form.html",
        {
            "title": title,
            "entity": entity,
            "plural": plural,
            "form": state,
            "action": action,
            "record_id": record_id,
            "cancel": safe_next(nxt)
            if nxt
            else (record_href(entity, record_id) if record_id and entity in RECORD_PAGES else f"{CONSOLE}/{plural}"),
            "next": nxt,
            "was_prefix": forms.WAS,
            "form_zone": zone or page.zone,
        },
        status_code=status_code,
    )


def forms_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)
    for entity in forms.FIELDS:
        add_form_routes(router, entity)
    for entity in RECORD_PAGES:
        add_bulk_route(router, entity)

    @router.get("/refs/{ref}", response_class=HTMLResponse)
    def reference_search(
        request: Request,
        page: SignedInDep,
        ref: str,
        field: Annotated[str, Query(pattern=r"^[a-z_]{1,40}$")],
    ) -> Response:
        """The options of a related-record select matching what was typed in its search box
        (``q_<field>``); the current choice (``<field>``) stays first. htmx swaps them in."""
        if ref not in forms.REF_MODELS:
            raise NotFound(f"no related records of type {ref!r}")
        q = str(request.query_params.get("q_" + field) or request.query_params.get("q") or "")[:200]
        current = str(request.query_params.get(field) or "")
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            options = forms.search_reference_options(session, ref, q, current)
        return page.render("_ref_options.html", {"options": options, "value": current, "q": q.strip()})

    return router


def selected_ids(form: Any) -> list[uuid.UUID]:
    ids = []
    for value in form.getlist("ids"):
        try:
            ids.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return ids


def add_bulk_route(router: APIRouter, entity: str) -> None:
    plural = forms.PLURAL_NAMES[entity]

    @router.post(f"/{plural}/bulk")
    async def bulk(request: Request, page: SignedInDep) -> Response:
        form = await checked_form(request, page)
        if form.get("scope") == "all":
            return bulk_over_selection(page, entity, form)
        ids = selected_ids(form)
        back = safe_next(str(form.get("next") or f"{CONSOLE}/{plural}"))
        action = str(form.get("action") or "")
        if not ids:
            return page.redirect(back + ("&" if "?" in back else "?") + "notice=none_selected")
        if action == "delete" and form.get("confirm") != "yes":
            from okyaku.console.queries import get_record, record_title

            with page.services.runtime.db.organization_scope(page.organization_id) as session:
                names = [record_title(entity, get_record(session, entity, i)) for i in ids]
            return page.render(
                "confirm_bulk_delete.html",
                {"title": f"Delete {len(ids)} {plural}", "plural": plural, "ids": ids, "names": names, "back": back},
            )
        owner = new_owner(form) if action == "assign" else None
        result = forms.bulk_apply(
            page.services.runtime,
            page.organization_id,
            page.session.user_id,
            entity,
            ids,
            owner_id=owner,
            delete=action == "delete",
        )
        if result.refused:
            logger.info("bulk %s on %s: %d refused", action, plural, len(result.refused))
        notice = (
            "deleted_n" if action == "delete" else "assigned_n"
        ) + f"&n={result.done}&refused={len(result.refused)}"
        return page.redirect(back + ("&" if "?" in back else "?") + f"notice={notice}")


def new_owner(form: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(form.get("owner") or ""))
    except ValueError:
        return None


def bulk_over_selection(page: Page, entity: str, form: Any) -> Response:
    """One chunk of a bulk action over every record the list's search and filters match
    (console/bulk.py): a delete is confirmed first; each page says how far it got."""
    plural = forms.PLURAL_NAMES[entity]
    selection = bulk.Selection.from_form(form)
    back = f"{CONSOLE}/{plural}" + (f"?{selection.query_string()}" if selection.query_string() else "")
    action = str(form.get("action") or "")
    if action not in ("assign", "delete"):
        raise ValidationFailed("choose assign or delete", details=[field_error("action", "expected assign or delete")])
    owner = new_owner(form) if action == "assign" else None
    me = page.session.user_id
    runtime = page.services.runtime
    context: dict[str, Any] = {
        "plural": plural,
        "hidden": selection.hidden_fields(),
        "back": back,
        "owner": owner,
        "chunk": bulk.CHUNK,
    }
    with runtime.db.organization_scope(page.organization_id) as session:
        progress = bulk.Progress.from_form(form, action, 0)
        if progress.total == 0:
            progress = bulk.Progress.from_form(form, action, bulk.matching_count(session, entity, selection, me))
        if owner is not None:
            context["owner_name"] = next((u.name for u in qs.users(session) if u.id == owner), str(owner))
        if action == "delete" and form.get("confirm") != "yes":
            sample, _ = bulk.next_chunk(session, entity, selection, me, None, limit=bulk.CONFIRM_NAMES)
            names = [qs.record_title(entity, r) for r in sample]
            return page.render(
                "bulk_progress.html",
                {**context, "title": f"Delete {progress.total} {plural}", "confirming": True, "names": names}
                | {"progress": progress},
            )
        rows, cursor = bulk.next_chunk(session, entity, selection, me, progress.cursor)
        ids = [r.id for r in rows]
    result = forms.bulk_apply(runtime, page.organization_id, me, entity, ids, owner_id=owner, delete=action == "delete")
    if result.refused:
        logger.info("bulk %s over a selection of %s: %d refused", action, plural, len(result.refused))
    progress = progress.after(result.done, len(result.refused), cursor)
    verb = "Deleting" if action == "delete" else "Assigning"
    return page.render(
        "bulk_progress.html",
        {**context, "title": f"{verb} {plural}", "progress": progress, "refusals": result.refused[:20]},
    )


def add_form_routes(router: APIRouter, entity: str) -> None:
    plural = forms.PLURAL_NAMES[entity]
    label = TITLES[entity]

    @router.get(f"/{plural}/new", response_class=HTMLResponse)
    def new_form(request: Request, page: SignedInDep) -> Response:
        # Links from a record page pre-fill the related records (?company_id=...).
        defaults = forms.DEFAULTS.get(entity, {})
        values = {
            f.name: str(request.query_params.get(f.name) or defaults.get(f.name, "")) for f in forms.FIELDS[entity]
        }
        if entity == "task" and not values["assignee_id"] and page.session.user_id:
            values["assignee_id"] = str(page.session.user_id)
        nxt = str(request.query_params.get("next", ""))
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            state = forms.form_state(session, entity, values)
        return render_form(page, entity, state, record_id=None, title=f"New {label}", nxt=nxt)

    @router.post(f"/{plural}/new")
    async def create(request: Request, page: SignedInDep) -> Response:
        form = await checked_form(request, page)
        values = forms.posted_values(entity, form)
        nxt = str(form.get("next") or "")
        zone = page.posted_zone(form)
        if forms.search_requested(entity, form):  # a related-record search without JavaScript
            with page.services.runtime.db.organization_scope(page.organization_id) as session:
                state = forms.form_state(session, entity, values, searches=forms.posted_searches(entity, form))
            return render_form(page, entity, state, record_id=None, title=f"New {label}", nxt=nxt, zone=zone)
        try:
            record_id = forms.create_record(
                page.services.runtime, page.organization_id, page.session.user_id, entity, values, zone
            )
        except ValidationFailed as error:
            by_field, general = forms.errors_by_field(entity, error)
            with page.services.runtime.db.organization_scope(page.organization_id) as session:
                state = forms.form_state(
                    session,
                    entity,
                    values,
                    searches=forms.posted_searches(entity, form),
                    errors=by_field,
                    general_errors=general,
                )
            return render_form(
                page, entity, state, record_id=None, title=f"New {label}", nxt=nxt, status_code=422, zone=zone
            )
        return page.redirect(after_write(entity, record_id, form, "logged" if entity == "activity" else "created"))

    @router.get(f"/{plural}/{{record_id}}/edit", response_class=HTMLResponse)
    def edit_form(request: Request, page: SignedInDep, record_id: uuid.UUID) -> Response:
        service = ENTITIES[entity].service
        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            record = service.get(session, record_id)  # NotFound: another organization's id is a 404 page
            values = forms.record_values(entity, record, page.zone)
            state = forms.form_state(session, entity, values, version=record.version, was=dict(values))
        nxt = str(request.query_params.get("next", ""))
        return render_form(page, entity, state, record_id=record_id, title=f"Edit {label}", nxt=nxt)

    @router.post(f"/{plural}/{{record_id}}/edit")
    async def update(request: Request, page: SignedInDep, record_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        values = forms.posted_values(entity, form)
        was = forms.posted_was(entity, form)
        version = form_version(form)
        runtime = page.services.runtime
        nxt = str(form.get("next") or "")
        searches = forms.posted_searches(entity, form)
        zone = page.posted_zone(form)
        if forms.search_requested(entity, form):  # a related-record search without JavaScript
            with runtime.db.organization_scope(page.organization_id) as session:
                state = forms.form_state(session, entity, values, searches=searches, version=version, was=was)
            return render_form(page, entity, state, record_id=record_id, title=f"Edit {label}", nxt=nxt, zone=zone)
        try:
            forms.update_from_form(
                runtime,
                page.organization_id,
                page.session.user_id,
                entity,
                record_id,
                values,
                version=version,
                was=was,
                zone=zone,
            )
        except (ValidationFailed, Conflict) as error:
            with runtime.db.organization_scope(page.organization_id) as session:
                record = ENTITIES[entity].service.get(session, record_id)
                if isinstance(error, Conflict):
                    # Show what the other person changed; the form now carries the current
                    # version, so saving again is a deliberate overwrite of what is shown.
                    changed = forms.changes_since(entity, was, record, zone)
                    state = forms.form_state(
                        session,
                        entity,
                        values,
                        version=record.version,
                        was=forms.record_values(entity, record, zone),
                        changed_by_others=changed,
                        general_errors=[f"Someone else changed this {label} while you were editing it."],
                    )
                    status = 409
                else:
                    by_field, general = forms.errors_by_field(entity, error)
                    state = forms.form_state(
                        session,
                        entity,
                        values,
                        searches=searches,
                        errors=by_field,
                        general_errors=general,
                        version=version,
                        was=was,
                    )
                    status = 422
            return render_form(
                page, entity, state, record_id=record_id, title=f"Edit {label}", nxt=nxt, status_code=status, zone=zone
            )
        return page.redirect(after_write(entity, record_id, form, "saved"))

    @router.get(f"/{plural}/{{record_id}}/delete", response_class=HTMLResponse)
    def confirm_delete(request: Request, page: SignedInDep, record_id: uuid.UUID) -> Response:
        from okyaku.console.queries import record_title

        with page.services.runtime.db.organization_scope(page.organization_id) as session:
            record = ENTITIES[entity].service.get(session, record_id)
            impact = forms.delete_impact(session, entity, record_id)
            name = (
                record_title(entity, record)
                if entity in RECORD_PAGES
                else (getattr(record, "subject", None) or getattr(record, "title", None) or label)
            )
            version = record.version
        nxt = str(request.query_params.get("next", ""))
        return page.render(
            "confirm_delete.html",
            {
                "title": f"Delete {label}",
                "entity": entity,
                "label": label,
                "name": name,
                "impact": impact,
                "version": version,
                "action": f"{CONSOLE}/{plural}/{record_id}/delete",
                "cancel": safe_next(nxt)
                if nxt
                else (record_href(entity, record_id) if entity in RECORD_PAGES else f"{CONSOLE}/{plural}"),
                "next": nxt,
            },
        )

    @router.post(f"/{plural}/{{record_id}}/delete")
    async def delete(request: Request, page: SignedInDep, record_id: uuid.UUID) -> Response:
        form = await checked_form(request, page)
        forms.delete_record(page.services.runtime, page.organization_id, entity, record_id, version=form_version(form))
        nxt = str(form.get("next") or "")
        if nxt:
            return page.redirect(after_write(entity, None, form, "deleted"))
        return page.redirect(f"{CONSOLE}/{plural}?notice=deleted")
