"""What a CSV import reports and is asked to do: the contract of the imports endpoints, apart from
``okyaku.crm.imports`` so that serving the API loads the importer only when an import runs."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field

ImportEntity = Literal["contact", "company", "deal", "activity"]
IMPORT_ENTITY_TYPES: tuple[str, ...] = get_args(ImportEntity)
# awaiting_upload and queued: an S3 upload's job (okyaku.crm.import_uploads) before it runs.
# Names of the companies an import creates that its report lists (the count covers all of them).
NEW_COMPANY_NAMES_SHOWN = 50
ImportStatus = Literal["awaiting_upload", "queued", "running", "completed", "dry_run", "failed"]


# --- the report ----------------------------------------------------------------------------------


class ImportRowError(BaseModel):
    row: int = Field(description="Row in the file, counting the header as row 1")
    column: str | None = Field(description="The CSV column, when the error is about one")
    field: str = Field(description="The record field (or custom_properties.<name>)")
    message: str


class ImportReport(BaseModel):
    id: uuid.UUID = Field(description="The import job's id: GET /api/v1/imports/{id}")
    entity_type: str
    filename: str | None
    status: ImportStatus
    dry_run: bool
    total_rows: int
    created: int
    updated: int
    unchanged: int
    failed: int = Field(description="Rows rejected; every other row was imported")
    companies_created: int = Field(
        default=0,
        description="Companies created for rows that named one not there yet (create_companies); "
        "in a dry run, how many would be",
    )
    new_companies: list[str] = Field(
        default_factory=list, description=f"The names of those companies (the first {NEW_COMPANY_NAMES_SHOWN})"
    )
    error_count: int = Field(description="Errors found, of which the first ones are listed")
    errors: list[ImportRowError]
    columns: dict[str, str] = Field(description="CSV column -> field it was imported into")
    custom_properties: dict[str, str] = Field(description="Custom property -> its type")
    delimiter: str | None
    warnings: list[str]
    failure: str | None = Field(default=None, description="Why the whole import failed, if it did")
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class ImportOptions:
    entity_type: str
    mapping: Mapping[str, str | None] = field(default_factory=dict)
    dry_run: bool = False
    filename: str | None = None
    actor: uuid.UUID | None = None  # owner of deals and activities that name none
    # Create the company a row names by name when there is none (one per distinct name), instead
    # of rejecting the row; a name is matched to existing companies ignoring case and spacing.
    create_companies: bool = False
