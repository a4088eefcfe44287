"""An import run recorded as an import job: started, finished (with its counts and errors) or
failed; and the job read back as a report."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from okyaku.crm.import_report import NEW_COMPANY_NAMES_SHOWN, ImportOptions, ImportReport, ImportRowError
from okyaku.crm.imports.catalogue import ImportTarget, target_for
from okyaku.crm.imports.columns import ColumnPlan, plan_columns
from okyaku.crm.imports.csv_reader import ParsedCsv, parse_csv
from okyaku.crm.imports.importer import Importer, ImportOutcome, Progress
from okyaku.db import Database
from okyaku.db.models import ImportJob
from okyaku.errors import NotFound, OkyakuError, public_error
from okyaku.events.outbox import PUBLISH_INLINE_LIMIT, publish_events
from okyaku.events.publishers import EventPublisher

logger = logging.getLogger(__name__)


def run_import(
    db: Database,
    organization_id: uuid.UUID,
    data: bytes,
    options: ImportOptions,
    *,
    publisher: EventPublisher | None = None,
    progress: Progress | None = None,
    errors_limit: int = 100,
    publish_inline_limit: int = PUBLISH_INLINE_LIMIT,
) -> ImportReport:
    """Import ``data`` (CSV bytes) into one organization and record the run as an import job.

    The rows are written in one transaction with their outbox events; the events are published
    after commit (or, for large imports, left to the relay). A file that cannot be read is refused
    before any job is recorded.
    """
    target = target_for(options.entity_type)
    parsed = parse_csv(data)
    plan = plan_columns(target, parsed.headers, options.mapping)
    job_options = _job_options(options, parsed, plan.describe())
    with db.organization_scope(organization_id) as session:
        job = ImportJob(
            entity_type=target.entity_type,
            filename=options.filename,
            status="running",
            total_rows=len(parsed.rows),
            options=job_options,
        )
        session.add(job)
        session.flush()
        job_id = job.id
    return _run_job(
        db,
        organization_id,
        job_id,
        _Prepared(target, parsed, plan, job_options),
        options,
        publisher=publisher,
        progress=progress,
        errors_limit=errors_limit,
        publish_inline_limit=publish_inline_limit,
    )


def run_recorded_import(
    db: Database,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    data: bytes,
    options: ImportOptions,
    *,
    publisher: EventPublisher | None = None,
    errors_limit: int = 100,
    publish_inline_limit: int = PUBLISH_INLINE_LIMIT,
) -> ImportReport:
    """Import ``data`` into a job recorded beforehand (an S3 upload's job, already claimed as
    ``running``): as :func:`run_import`, except that a file that cannot be read fails the job."""
    try:
        target = target_for(options.entity_type)
        parsed = parse_csv(data)
        plan = plan_columns(target, parsed.headers, options.mapping)
        with db.organization_scope(organization_id) as session:
            job = session.get(ImportJob, job_id, with_for_update=True)
            if job is None:
                raise NotFound(f"import {job_id} not found", details={"id": str(job_id)})
            job_options = job.options | _job_options(options, parsed, plan.describe())
            job.total_rows = len(parsed.rows)
            job.options = job_options
    except Exception as error:
        record_failure(db, organization_id, job_id, error)
        raise
    return _run_job(
        db,
        organization_id,
        job_id,
        _Prepared(target, parsed, plan, job_options),
        options,
        publisher=publisher,
        errors_limit=errors_limit,
        publish_inline_limit=publish_inline_limit,
    )


@dataclass(frozen=True)
class _Prepared:
    target: ImportTarget
    parsed: ParsedCsv
    plan: ColumnPlan
    job_options: dict[str, Any]


def _job_options(options: ImportOptions, parsed: ParsedCsv, columns: dict[str, str]) -> dict[str, Any]:
    return {
        "mapping": dict(options.mapping),
        "dry_run": options.dry_run,
        "create_companies": options.create_companies,
        "delimiter": parsed.delimiter,
        "columns": columns,
    }


def _run_job(
    db: Database,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    prepared: _Prepared,
    options: ImportOptions,
    *,
    publisher: EventPublisher | None,
    errors_limit: int,
    publish_inline_limit: int,
    progress: Progress | None = None,
) -> ImportReport:
    try:
        with db.organization_scope(organization_id) as session:
            outcome = Importer(session, organization_id, prepared.target, prepared.parsed, prepared.plan, options).run(
                progress
            )
            _finish_job(session, job_id, outcome, prepared.job_options, dry_run=options.dry_run)
    except Exception as error:
        record_failure(db, organization_id, job_id, error)
        raise
    if publisher is not None and outcome.events and len(outcome.events) <= publish_inline_limit:
        publish_events(db, organization_id, publisher, outcome.events)
    return get_import(db, organization_id, job_id, errors_limit=errors_limit)


def _finish_job(
    session: Session, job_id: uuid.UUID, outcome: ImportOutcome, job_options: dict[str, Any], *, dry_run: bool
) -> None:
    session.execute(
        update(ImportJob)
        .where(ImportJob.id == job_id)
        .values(
            status="dry_run" if dry_run else "completed",
            created_count=outcome.created,
            updated_count=outcome.updated,
            error_count=outcome.failed,
            errors=[e.model_dump() for e in outcome.errors],
            options=job_options
            | {
                "unchanged_count": outcome.unchanged,
                "error_total": outcome.error_count,
                "custom_properties": outcome.custom_types,
                "warnings": outcome.warnings,
                "companies_created": outcome.companies_created,
                "new_companies": outcome.new_company_names[:NEW_COMPANY_NAMES_SHOWN],
            },
            finished_at=func.now(),
        )
    )


def record_failure(db: Database, organization_id: uuid.UUID, job_id: uuid.UUID, error: Exception) -> None:
    """Mark the job failed with what a client may read; an unexpected error's text goes to the log."""
    if not isinstance(error, OkyakuError):
        logger.error("import %s failed", job_id, exc_info=error)
    failure = public_error(error)
    details = _jsonable(error.details) if isinstance(error, OkyakuError) else None
    with db.organization_scope(organization_id) as session:
        job = session.get(ImportJob, job_id)
        if job is not None:
            job.status = "failed"
            job.options = job.options | {"failure": failure["message"][:2000], "failure_details": details}
            job.finished_at = datetime.now(UTC)


def _jsonable(details: Any) -> Any:
    try:
        json.dumps(details)
    except (TypeError, ValueError):
        return str(details)
    return details


# An import runs inside one request (at most Lambda's 15 minutes): one still "running" after this
# was killed (a timeout, a crash) and, being one transaction, left nothing behind.
STALE_AFTER = timedelta(minutes=20)
STALE_FAILURE = "the import stopped before it finished (the function timed out or crashed); nothing of it was saved"
# An upload's job whose file never came: past the bucket's 1-day expiry (and the form's) it cannot.
UPLOAD_ABANDONED_AFTER = timedelta(days=2)
UPLOAD_ABANDONED = "the upload was never completed; start a new one"


def get_import(
    db: Database,
    organization_id: uuid.UUID,
    job_id: uuid.UUID,
    *,
    errors_limit: int = 100,
    stale_after: timedelta = STALE_AFTER,
) -> ImportReport:
    """The job's report; a job stuck "running" past ``stale_after`` is marked failed on the way."""
    with db.organization_scope(organization_id) as session:
        job = session.get(ImportJob, job_id)
        if job is None:
            raise NotFound(f"import {job_id} not found", details={"id": str(job_id)})
        now = datetime.now(UTC)
        if job.status == "running" and _started_at(job) < now - stale_after:
            _fail_if(session, job_id, "running", STALE_FAILURE, {"stale_after_s": int(stale_after.total_seconds())})
        elif job.status == "awaiting_upload" and job.created_at < now - UPLOAD_ABANDONED_AFTER:
            abandoned_s = int(UPLOAD_ABANDONED_AFTER.total_seconds())
            _fail_if(session, job_id, "awaiting_upload", UPLOAD_ABANDONED, {"abandoned_after_s": abandoned_s})
        job = session.get(ImportJob, job_id, populate_existing=True)
        assert job is not None
        return report_of(job, errors_limit=errors_limit)


def _fail_if(session: Session, job_id: uuid.UUID, status: str, failure: str, details: dict[str, Any]) -> None:
    job = session.get(ImportJob, job_id, with_for_update=True, populate_existing=True)
    if job is not None and job.status == status:
        job.status = "failed"
        job.options = job.options | {"failure": failure, "failure_details": details}
        job.finished_at = datetime.now(UTC)
        session.flush()


def _started_at(job: ImportJob) -> datetime:
    """When the run began: an upload's job is created when its upload URL is, and starts later."""
    started = (job.options or {}).get("started_at")
    return datetime.fromisoformat(started) if isinstance(started, str) else job.created_at


def report_of(job: ImportJob, *, errors_limit: int = 100) -> ImportReport:
    opts = job.options or {}
    unchanged = int(opts.get("unchanged_count", 0))
    return ImportReport(
        id=job.id,
        entity_type=job.entity_type,
        filename=job.filename,
        status=job.status,
        dry_run=bool(opts.get("dry_run", False)),
        total_rows=job.total_rows,
        created=job.created_count,
        updated=job.updated_count,
        unchanged=unchanged,
        failed=job.error_count,
        companies_created=int(opts.get("companies_created", 0)),
        new_companies=list(opts.get("new_companies", [])),
        error_count=int(opts.get("error_total", len(job.errors))),
        errors=[ImportRowError.model_validate(e) for e in job.errors[:errors_limit]],
        columns=opts.get("columns", {}),
        custom_properties=opts.get("custom_properties", {}),
        delimiter=opts.get("delimiter"),
        warnings=opts.get("warnings", []),
        failure=opts.get("failure"),
        created_at=job.created_at,
        finished_at=job.finished_at,
    )
