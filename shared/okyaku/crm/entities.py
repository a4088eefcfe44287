"""The CRM entities, once: for each, the service that reads and writes it (recording change
events) and its input, output and filter schemas. The CRUD API and the agents' tools both use
this registry, so a change applied through either goes the same way."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from okyaku.crm import filters as f
from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import (
    ACTIVITY_SPEC,
    COMPANY_SPEC,
    CONTACT_SPEC,
    TASK_SPEC,
    ActivityService,
    RecordService,
    TaskService,
)


@dataclass(frozen=True)
class CrmEntity:
    entity_type: str  # "contact", as in change events and tool arguments
    path: str  # "contacts", under /api/v1
    service: RecordService
    create_model: type[BaseModel]
    update_model: type[BaseModel]
    out_model: type[BaseModel]
    filter_model: type[f.Filters]


ENTITIES: dict[str, CrmEntity] = {
    entity.entity_type: entity
    for entity in (
        CrmEntity(
            "company",
            "companies",
            RecordService(COMPANY_SPEC),
            s.CompanyCreate,
            s.CompanyUpdate,
            s.CompanyOut,
            f.CompanyFilters,
        ),
        CrmEntity(
            "contact",
            "contacts",
            RecordService(CONTACT_SPEC),
            s.ContactCreate,
            s.ContactUpdate,
            s.ContactOut,
            f.ContactFilters,
        ),
        CrmEntity(
            "pipeline",
            "pipelines",
            PipelineService(),
            s.PipelineCreate,
            s.PipelineUpdate,
            s.PipelineOut,
            f.PipelineFilters,
        ),
        CrmEntity("deal", "deals", DealService(), s.DealCreate, s.DealUpdate, s.DealOut, f.DealFilters),
        CrmEntity(
            "activity",
            "activities",
            ActivityService(ACTIVITY_SPEC),
            s.ActivityCreate,
            s.ActivityUpdate,
            s.ActivityOut,
            f.ActivityFilters,
        ),
        CrmEntity("task", "tasks", TaskService(TASK_SPEC), s.TaskCreate, s.TaskUpdate, s.TaskOut, f.TaskFilters),
    )
}
