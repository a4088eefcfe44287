"""The CRM REST API under /api/v1 (served by the ``crm_api`` function).

No ``from __future__ import annotations`` here: the routes are typed with models chosen at run time."""

import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, FastAPI, Header, Query, Response, status
from pydantic import BaseModel
from sqlalchemy import text

from okyaku.crm import filters as f
from okyaku.crm import schemas as s
from okyaku.crm.access_api import router as access_router
from okyaku.crm.entities import ENTITIES
from okyaku.crm.import_uploads import ImportUploads
from okyaku.crm.imports_api import router as imports_router
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import ActivityService, RecordService, TaskService
from okyaku.http import PrincipalDep, ReadScopeDep, RuntimeDep, create_app, expected_version
from okyaku.runtime import Runtime

# The registry's services, by the names tests and scripts use.
companies: RecordService = ENTITIES["company"].service
contacts: RecordService = ENTITIES["contact"].service
pipelines = cast(PipelineService, ENTITIES["pipeline"].service)
deals = cast(DealService, ENTITIES["deal"].service)
activities = cast(ActivityService, ENTITIES["activity"].service)
tasks = cast(TaskService, ENTITIES["task"].service)


def crud_router(
    path: str,
    tag: str,
    service: RecordService,
    create_model: type[BaseModel],
    update_model: type[BaseModel],
    out_model: type[BaseModel],
    filter_model: type[f.Filters],
) -> APIRouter:
    """The five operations of one entity, typed with that entity's own models."""
    router = APIRouter(prefix=f"/api/v1/{path}", tags=[tag])
    entity = service.spec.entity_type

    # The reads are ``async def`` though they block: a function instance serves one event at a
    # time (see okyaku.http.get_principal), and FastAPI would run a plain ``def`` on a new worker
    # thread per request (≈ 0.5 ms of CPU each, on the hottest routes). They authenticate in
    # their own transaction (ReadScope).
    @router.get("", response_model=s.Page[out_model], summary=f"List {path}")  # type: ignore[valid-type]
    async def list_records(
        scope: ReadScopeDep,
        query: Annotated[filter_model, Query()],  # type: ignore[valid-type]
    ) -> Any:
        with scope.session() as (_principal, session):
            page = service.list_page(session, query.list_params(), query.conditions())  # type: ignore[attr-defined]
            return {"data": [out_model.model_validate(r) for r in page.rows], "next_cursor": page.next_cursor}

    @router.post("", response_model=out_model, status_code=status.HTTP_201_CREATED, summary=f"Create a {entity}")
    def create_record(
        body: create_model,  # type: ignore[valid-type]
        runtime: RuntimeDep,
        principal: PrincipalDep,
        response: Response,
    ) -> Any:
        with runtime.transaction(principal.organization_id) as session:
            record = service.create(session, body, actor=principal.user_id)
            out = out_model.model_validate(record)
        response.headers["ETag"] = f'"{record.version}"'
        response.headers["Location"] = f"/api/v1/{path}/{record.id}"
        return out

    @router.get("/{record_id}", response_model=out_model, summary=f"Get a {entity}")
    async def get_record(record_id: uuid.UUID, scope: ReadScopeDep, response: Response) -> Any:
        with scope.session() as (_principal, session):
            record = service.get(session, record_id)
            out = out_model.model_validate(record)
        response.headers["ETag"] = f'"{record.version}"'
        return out

    @router.patch("/{record_id}", response_model=out_model, summary=f"Update a {entity}")
    def update_record(
        record_id: uuid.UUID,
        body: update_model,  # type: ignore[valid-type]
        runtime: RuntimeDep,
        principal: PrincipalDep,
        response: Response,
        if_match: Annotated[str | None, Header(description="The version you read, from ETag")] = None,
    ) -> Any:
        with runtime.transaction(principal.organization_id) as session:
            record = service.update(
                session, record_id, body, expected_version=expected_version(if_match), actor=principal.user_id
            )
            out = out_model.model_validate(record)
        response.headers["ETag"] = f'"{record.version}"'
        return out

    @router.delete("/{record_id}", status_code=status.HTTP_204_NO_CONTENT, summary=f"Delete a {entity}")
    def delete_record(
        record_id: uuid.UUID,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        with runtime.transaction(principal.organization_id) as session:
            service.delete(session, record_id, expected_version=expected_version(if_match))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router


def create_crm_app(runtime: Runtime | None = None, *, import_uploads: ImportUploads | None = None) -> FastAPI:
    app = create_app("Okyaku CRM API", runtime, description="Companies, contacts, pipelines, deals, activities, tasks.")
    # Big-file imports (S3 upload, then a job); the function's import-jobs queue runs them too.
    app.state.import_uploads = import_uploads or ImportUploads(app.state.runtime)
    for entity in ENTITIES.values():
        app.include_router(
            crud_router(
                entity.path,
                entity.path,
                entity.service,
                entity.create_model,
                entity.update_model,
                entity.out_model,
                entity.filter_model,
            )
        )
    app.include_router(imports_router)
    app.include_router(access_router)

    @app.get("/api/v1/deals/{deal_id}/stage-history", response_model=list[s.StageChangeOut], tags=["deals"])
    def deal_stage_history(deal_id: uuid.UUID, runtime: RuntimeDep, principal: PrincipalDep) -> Any:
        with runtime.transaction(principal.organization_id) as session:
            return [s.StageChangeOut.model_validate(h) for h in deals.history(session, deal_id)]

    @app.get("/api/v1/health", tags=["health"])
    async def health(runtime: RuntimeDep) -> dict[str, Any]:  # blocking: as the reads above
        with runtime.db.session() as session:
            session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "reachable"}

    return app
