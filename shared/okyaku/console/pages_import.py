"""CSV import from the console: upload a file, see the column mapping the importer guessed and
change it, run a dry run that lists the errors per row, then import and read the report. The
importer is the API's (okyaku.crm.imports.run_import): same rules, same change events.

No ``from __future__ import annotations``: FastAPI reads the route annotations at run time."""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from okyaku.console.web import CONSOLE, Page, SignedInDep, checked_form
from okyaku.crm.import_report import IMPORT_ENTITY_TYPES
from okyaku.errors import OkyakuError

# The file travels back with the dry run's page (a hidden field) for the import that follows;
# bigger files go through the API's upload path or the CLI (`okyaku import`).
INLINE_MAX_BYTES = 1024 * 1024


def mapping_of(form: Any) -> dict[str, str | None]:
    """The mapping the user edited: ``column_<i>`` names a CSV column, ``field_<i>`` its field
    (empty: the column is ignored)."""
    mapping: dict[str, str | None] = {}
    for key in form:
        if key.startswith("column_"):
            index = key.removeprefix("column_")
            field = str(form.get(f"field_{index}") or "").strip()
            mapping[str(form.get(key))] = field or None
    return mapping


def render(page: Page, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    return page.render(
        "import.html", {"title": "Import", "entity_types": IMPORT_ENTITY_TYPES, **context}, status_code=status_code
    )


def import_router() -> APIRouter:
    router = APIRouter(prefix=CONSOLE)

    @router.get("/import", response_class=HTMLResponse)
    def import_form(page: SignedInDep) -> Response:
        return render(page, {"entity_type": "contact"})

    @router.post("/import", response_class=HTMLResponse)
    async def run(request: Request, page: SignedInDep) -> Response:
        form = await checked_form(request, page)
        entity_type = str(form.get("entity_type") or "")
        upload = form.get("file")
        if isinstance(upload, UploadFile) and upload.filename:
            data = await upload.read(INLINE_MAX_BYTES + 1)
            filename: str | None = upload.filename
            mapping: dict[str, str | None] = {}  # a new file: let the importer guess
        else:
            data = str(form.get("csv_text") or "").encode("utf-8")
            filename = str(form.get("filename") or "") or None
            mapping = mapping_of(form)
        context: dict[str, Any] = {"entity_type": entity_type, "filename": filename}
        if not data:
            return render(page, {**context, "error": "Choose a CSV file to import."}, 422)
        if len(data) > INLINE_MAX_BYTES:
            message = "This file is over 1 MB: import it with `okyaku import` or the API's upload path."
            return render(page, {**context, "error": message}, 413)
        dry_run = form.get("action") != "import"
        create_companies = form.get("create_companies") == "yes"
        context["create_companies"] = create_companies
        from okyaku.crm.imports import ImportOptions, run_import  # loaded by the requests that use it

        runtime = page.services.runtime
        options = ImportOptions(
            entity_type=entity_type,
            mapping=mapping,
            dry_run=dry_run,
            filename=filename,
            actor=page.session.user_id,
            create_companies=create_companies,
        )
        try:
            report = await run_in_threadpool(
                run_import, runtime.db, page.organization_id, data, options, publisher=runtime.publisher
            )
        except OkyakuError as error:
            details = [str(d.get("message")) for d in error.details or [] if isinstance(d, dict)]
            return render(
                page,
                {**context, "error": error.message, "details": details, "csv_text": data.decode("utf-8", "replace")},
                422,
            )
        return render(page, {**context, "report": report, "csv_text": data.decode("utf-8", "replace")})

    return router
