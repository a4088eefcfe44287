"""``POST /api/v1/imports`` (a multipart CSV upload), ``GET /api/v1/imports/{id}``, and the path for
files bigger than the gateway takes: ``POST /api/v1/imports/uploads`` (a presigned S3 upload form),
then ``POST /api/v1/imports/uploads/{id}/complete`` (the import runs as a job)."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from okyaku.crm.import_report import IMPORT_ENTITY_TYPES, ImportEntity, ImportOptions, ImportReport
from okyaku.crm.import_uploads import ImportUploads, UploadRequest, UploadTicket, too_large
from okyaku.errors import PayloadTooLarge, ValidationFailed, field_error
from okyaku.http import PrincipalDep, RuntimeDep, validation_details

# The multipart envelope around the file: boundaries, part headers and the small form fields.
ENVELOPE_BYTES = 64 * 1024
CHUNK_BYTES = 1024 * 1024


class ImportForm(BaseModel):
    entity_type: ImportEntity
    mapping: dict[str, str | None] = Field(default_factory=dict)
    dry_run: bool = False
    create_companies: bool = False


UPLOAD_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "entity_type"],
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "The CSV file"},
                        "entity_type": {"type": "string", "enum": list(IMPORT_ENTITY_TYPES)},
                        "mapping": {
                            "type": "string",
                            "description": 'JSON {"csv column": "field"}; a field of "" ignores the column, '
                            '"custom_properties.<name>" makes it a custom property',
                        },
                        "dry_run": {"type": "boolean", "default": False},
                        "create_companies": {
                            "type": "boolean",
                            "default": False,
                            "description": "Create the companies that rows of contacts, deals or activities "
                            "name (by name) and that do not exist yet, one per distinct name, instead of "
                            "rejecting those rows",
                        },
                    },
                }
            }
        },
    }
}

router = APIRouter(prefix="/api/v1/imports", tags=["imports"])


@router.post(
    "",
    response_model=ImportReport,
    status_code=status.HTTP_201_CREATED,
    summary="Import a CSV file of contacts, companies, deals or activities",
    openapi_extra=UPLOAD_SCHEMA,
    responses={413: {"description": "The file is larger than IMPORT_MAX_BYTES"}},
)
async def create_import(
    request: Request, runtime: RuntimeDep, principal: PrincipalDep, response: Response
) -> ImportReport:
    limit = runtime.settings.import_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + ENVELOPE_BYTES:
        raise _too_large(limit)
    async with request.form(max_files=1, max_fields=10) as form:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed(
                "attach the CSV file as the form field 'file'",
                details=[field_error("file", "a file upload is required", "missing")],
            )
        data = await _read_limited(upload, limit)
        options = _parse_form({k: v for k, v in form.items() if isinstance(v, str)})
        filename = upload.filename
    from okyaku.crm.imports import run_import  # the importer is loaded by the requests that use it

    report = await run_in_threadpool(
        run_import,
        runtime.db,
        principal.organization_id,
        data,
        ImportOptions(
            entity_type=options.entity_type,
            mapping=options.mapping,
            dry_run=options.dry_run,
            create_companies=options.create_companies,
            filename=filename,
            actor=principal.user_id,
        ),
        publisher=runtime.publisher,
    )
    response.headers["Location"] = f"/api/v1/imports/{report.id}"
    return report


def import_uploads(request: Request) -> ImportUploads:
    uploads: ImportUploads = request.app.state.import_uploads
    return uploads


UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"description": "uploads_unavailable: IMPORTS_BUCKET is not set (use `okyaku import FILE`)"}
}


@router.post(
    "/uploads",
    response_model=UploadTicket,
    status_code=status.HTTP_201_CREATED,
    summary="Start an import of a big file: an S3 upload form, then /uploads/{id}/complete",
    responses=UPLOAD_ERRORS,
)
def create_upload(body: UploadRequest, request: Request, principal: PrincipalDep, response: Response) -> UploadTicket:
    ticket = import_uploads(request).create(principal.organization_id, principal.user_id, body)
    response.headers["Location"] = ticket.report_url
    return ticket


@router.post(
    "/uploads/{upload_id}/complete",
    response_model=ImportReport,
    status_code=status.HTTP_202_ACCEPTED,
    summary="The file is uploaded: run its import as a job (once, however often this is called)",
    responses={
        **UPLOAD_ERRORS,
        409: {"description": "upload_missing: the file is not in the bucket yet"},
        413: {"description": "The file is larger than IMPORT_UPLOAD_MAX_BYTES"},
    },
)
def complete_upload(
    upload_id: uuid.UUID, request: Request, principal: PrincipalDep, response: Response
) -> ImportReport:
    report = import_uploads(request).complete(principal.organization_id, upload_id)
    response.headers["Location"] = f"/api/v1/imports/{report.id}"
    return report


@router.get("/{import_id}", response_model=ImportReport, summary="An import's report")
def get_import_report(
    import_id: uuid.UUID,
    runtime: RuntimeDep,
    principal: PrincipalDep,
    errors_limit: Annotated[int, Query(ge=0, le=1000, description="How many row errors to list")] = 100,
) -> ImportReport:
    from okyaku.crm.imports import get_import

    return get_import(runtime.db, principal.organization_id, import_id, errors_limit=errors_limit)


def _too_large(limit: int) -> PayloadTooLarge:
    return too_large(limit, setting="IMPORT_MAX_BYTES", kind="import")


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK_BYTES):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_form(fields: dict[str, str]) -> ImportForm:
    values: dict[str, Any] = {k: v for k, v in fields.items() if k in ("entity_type", "dry_run", "create_companies")}
    if fields.get("mapping", "").strip():
        try:
            values["mapping"] = json.loads(fields["mapping"])
        except json.JSONDecodeError as error:
            raise ValidationFailed(
                "mapping must be JSON",
                details=[field_error("mapping", f'expected {{"csv column": "field"}}: {error}', "json")],
            ) from error
    try:
        return ImportForm.model_validate(values)
    except ValidationError as error:
        raise ValidationFailed("the import request is not valid", details=validation_details(error.errors())) from error
