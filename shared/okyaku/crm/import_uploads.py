"""Imports of files bigger than the gateway takes: the file goes to S3, then runs as an import job.

1. ``create``: an import job in ``awaiting_upload`` and a presigned S3 POST for its object
   (``uploads/<organization>/<job>.csv``) whose policy caps the size at IMPORT_UPLOAD_MAX_BYTES:
   S3 itself refuses a bigger file.
2. ``complete``: the object is checked (there, not too big) and the job moves to ``queued``, once:
   completing again answers the job as it stands. The job is then handed to a worker: a message on
   IMPORT_JOBS_QUEUE_URL (the crm_api function consumes it), or a thread where there is no queue
   (the local runner, OpenFaaS' long-lived containers, tests).
3. ``run``: the worker claims the job (``queued`` -> ``running``, once: a message delivered twice
   runs it once), reads the object in chunks under the cap and hands the bytes to the importer the
   direct upload uses (``run_recorded_import``). The object is deleted once imported; the
   bucket's lifecycle rule removes the ones never completed.

The report is read through ``GET /api/v1/imports/{id}`` like any import's.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from okyaku.config import Settings
from okyaku.crm.import_report import ImportEntity, ImportOptions, ImportReport
from okyaku.db.models import ImportJob
from okyaku.errors import Conflict, DependencyUnavailable, NotFound, OkyakuError, PayloadTooLarge, field_error
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"
# A job queued this long without starting may be handed over again by completing it again.
REQUEUE_AFTER = timedelta(minutes=20)
READ_CHUNK_BYTES = 1024 * 1024


class UploadsUnavailable(OkyakuError):
    status_code = 503
    code = "uploads_unavailable"


class UploadMissing(Conflict):
    code = "upload_missing"


# --- the contract ----------------------------------------------------------------------------------


class UploadRequest(BaseModel):
    entity_type: ImportEntity
    filename: str | None = Field(default=None, max_length=500, description="Shown in the report")
    mapping: dict[str, str | None] = Field(
        default_factory=dict,
        description='{"csv column": "field"}; "" ignores the column, '
        '"custom_properties.<name>" makes it a custom property',
    )
    dry_run: bool = False
    create_companies: bool = Field(
        default=False, description="Create the companies rows name that do not exist yet (contacts, deals, activities)"
    )


class PresignedPost(BaseModel):
    url: str
    method: str = "POST"
    fields: dict[str, str] = Field(description="Form fields to send first, as given")
    file_field: str = Field(default="file", description="The form field of the file itself, sent last")


class UploadTicket(BaseModel):
    id: uuid.UUID = Field(description="The import job's id")
    status: str
    key: str = Field(description="The S3 object the file goes to")
    upload: PresignedPost
    max_bytes: int
    expires_at: datetime = Field(description="The upload form is refused after this")
    complete_url: str = Field(description="POST here once the file is uploaded")
    report_url: str = Field(description="GET here for the job's status and report")


class ImportJobMessage(BaseModel):
    """The import-jobs queue message: which job to run, in which organization."""

    organization_id: uuid.UUID
    job_id: uuid.UUID


# --- the object store --------------------------------------------------------------------------------


class UploadStore:
    """The imports bucket (S3, or an S3-compatible store at S3_ENDPOINT_URL)."""

    def __init__(self, bucket: str, *, endpoint_url: str = "", region: str = "us-east-1", client: Any = None) -> None:
        self.bucket = bucket
        self._endpoint_url = endpoint_url
        self._region = region
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from botocore.config import Config

            from okyaku.aws import boto3_client

            # Path-style addressing: what MinIO and LocalStack serve; SigV4 for the presigned form.
            config = Config(signature_version="s3v4", s3={"addressing_style": "path" if self._endpoint_url else "auto"})
            self._client = boto3_client("s3", endpoint_url=self._endpoint_url, region=self._region, config=config)
        return self._client

    def presigned_post(self, key: str, max_bytes: int, expires_s: int) -> PresignedPost:
        form = self.client.generate_presigned_post(
            self.bucket, key, Conditions=[["content-length-range", 1, max_bytes]], ExpiresIn=expires_s
        )
        return PresignedPost(url=form["url"], fields={k: str(v) for k, v in form["fields"].items()})

    def size_of(self, key: str) -> int | None:
        from botocore.exceptions import ClientError

        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    def read(self, key: str, limit: int) -> bytes:
        """The object's bytes, read in chunks; :class:`PayloadTooLarge` past ``limit``."""
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        chunks: list[bytes] = []
        size = 0
        try:
            for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                chunks.append(chunk)
        finally:
            body.close()
        return b"".join(chunks)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)


def _queued_at(job: ImportJob) -> datetime:
    queued = (job.options or {}).get("queued_at")
    return datetime.fromisoformat(queued) if isinstance(queued, str) else job.created_at


def too_large(limit: int, *, setting: str = "IMPORT_UPLOAD_MAX_BYTES", kind: str = "upload") -> PayloadTooLarge:
    """413 for a file over ``setting``: the S3 upload's (the default) or the direct import's."""
    subject = "uploaded file" if kind == "upload" else "file"
    return PayloadTooLarge(
        f"the {subject} is larger than the {limit}-byte {kind} limit",
        details=[field_error("file", f"at most {limit} bytes ({setting})", "too_large")],
    )


# --- the service ---------------------------------------------------------------------------------------

Dispatch = Callable[[ImportJobMessage], None]


class ImportUploads:
    """Upload jobs of one function: created, completed, run (see the module's docstring)."""

    def __init__(self, runtime: Runtime, *, store: UploadStore | None = None, dispatch: Dispatch | None = None) -> None:
        self.runtime = runtime
        self._store = store
        self._dispatch = dispatch
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def store(self) -> UploadStore:
        if self._store is None:
            if not self.settings.imports_bucket:
                raise UploadsUnavailable(
                    "uploads to object storage are not configured: set IMPORTS_BUCKET (and S3_ENDPOINT_URL for an "
                    "S3-compatible store), or import the file with `okyaku import FILE` from a machine that reaches "
                    "the database",
                    details={"setting": "IMPORTS_BUCKET"},
                )
            self._store = UploadStore(
                self.settings.imports_bucket,
                endpoint_url=self.settings.s3_endpoint_url or self.settings.aws_endpoint_url,
                region=self.settings.aws_region,
            )
        return self._store

    # --- HTTP: create and complete ---------------------------------------------------------------

    def create(self, organization_id: uuid.UUID, actor: uuid.UUID | None, request: UploadRequest) -> UploadTicket:
        store = self.store
        limit = self.settings.import_upload_max_bytes
        expires_s = self.settings.import_upload_url_expiry_s
        job_id = uuid.uuid4()
        key = f"{UPLOAD_PREFIX}{organization_id}/{job_id}.csv"
        upload = store.presigned_post(key, limit, expires_s)
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_s)
        with self.runtime.db.organization_scope(organization_id) as session:
            session.add(
                ImportJob(
                    id=job_id,
                    entity_type=request.entity_type,
                    filename=request.filename,
                    status="awaiting_upload",
                    options={
                        "mapping": dict(request.mapping),
                        "dry_run": request.dry_run,
                        "create_companies": request.create_companies,
                        "actor": str(actor) if actor else None,
                        "upload": {"bucket": store.bucket, "key": key, "max_bytes": limit},
                    },
                )
            )
        return UploadTicket(
            id=job_id,
            status="awaiting_upload",
            key=key,
            upload=upload,
            max_bytes=limit,
            expires_at=expires_at,
            complete_url=f"/api/v1/imports/uploads/{job_id}/complete",
            report_url=f"/api/v1/imports/{job_id}",
        )

    def complete(self, organization_id: uuid.UUID, job_id: uuid.UUID) -> ImportReport:
        """Queue the job once its object is there; completing again answers the job as it stands."""
        from okyaku.crm.imports import get_import

        store = self.store
        queued, refused = False, None
        with self.runtime.db.organization_scope(organization_id) as session:
            job = session.execute(
                select(ImportJob).where(ImportJob.id == job_id).with_for_update()
            ).scalar_one_or_none()
            if job is None or "upload" not in (job.options or {}):
                raise NotFound(f"upload {job_id} not found", details={"id": str(job_id)})
            if job.status == "awaiting_upload":
                key = str(job.options["upload"]["key"])
                size = store.size_of(key)
                if size is None:
                    raise UploadMissing(
                        "the file has not been uploaded: send it with the upload form first",
                        details={"id": str(job_id), "key": key},
                    )
                limit = self.settings.import_upload_max_bytes
                if size > limit:  # S3 enforces the form's policy; an S3-compatible store may not
                    store.delete(key)
                    refused = too_large(limit)
                    job.status = "failed"
                    job.options = job.options | {"failure": refused.message, "failure_details": refused.details}
                    job.finished_at = datetime.now(UTC)
                else:
                    job.status = "queued"
                    job.options = job.options | {"queued_at": datetime.now(UTC).isoformat(), "size_bytes": size}
                    queued = True
            elif job.status == "queued" and _queued_at(job) < datetime.now(UTC) - REQUEUE_AFTER:
                # Its message or thread may be lost (a process restart, a dead letter): hand it over
                # again. The worker claims a job once, so a second copy cannot run it twice.
                queued = True
        if refused is not None:
            raise refused
        if queued:
            try:
                self.dispatch(ImportJobMessage(organization_id=organization_id, job_id=job_id))
            except Exception as error:
                self._requeue_later(organization_id, job_id)
                if isinstance(error, OkyakuError):
                    raise
                logger.exception("import job %s could not be queued", job_id)
                raise DependencyUnavailable(
                    "the import job could not be queued; complete the upload again", details={"id": str(job_id)}
                ) from error
        return get_import(self.runtime.db, organization_id, job_id)

    def _requeue_later(self, organization_id: uuid.UUID, job_id: uuid.UUID) -> None:
        """Not handed over: back to awaiting_upload, so that completing again retries."""
        with self.runtime.db.organization_scope(organization_id) as session:
            job = session.get(ImportJob, job_id, with_for_update=True)
            if job is not None and job.status == "queued":
                job.status = "awaiting_upload"

    # --- the worker --------------------------------------------------------------------------------

    def dispatch(self, message: ImportJobMessage) -> None:
        if self._dispatch is not None:
            self._dispatch(message)
        elif self.settings.import_jobs_queue_url:
            from okyaku.fanout import enqueue

            sent = enqueue(
                self.settings, self.settings.import_jobs_queue_url, {str(message.job_id): message.model_dump_json()}
            )
            if sent["not_queued"]:
                raise DependencyUnavailable(
                    "the import-jobs queue refused the job", details={"id": str(message.job_id)}
                )
        else:
            self._start_thread(message)

    def run_record(self, record: SQSRecord) -> None:
        """One import-jobs queue message -> its job (raises to have the message retried)."""
        message = ImportJobMessage.model_validate_json(record.body)
        self.run(message.organization_id, message.job_id)

    def run(self, organization_id: uuid.UUID, job_id: uuid.UUID) -> ImportReport | None:
        """Run a queued job; None when it is not queued (already run, or running elsewhere)."""
        from okyaku.crm.imports import run_recorded_import

        with self.runtime.db.organization_scope(organization_id) as session:
            job = session.get(ImportJob, job_id, with_for_update=True)
            if job is None or job.status != "queued":
                return None
            job.status = "running"
            job.options = job.options | {"started_at": datetime.now(UTC).isoformat()}
            options = dict(job.options)
            entity_type, filename = job.entity_type, job.filename
        upload = options["upload"]
        actor = options.get("actor")
        import_options = ImportOptions(
            entity_type=entity_type,
            mapping=options.get("mapping") or {},
            dry_run=bool(options.get("dry_run")),
            create_companies=bool(options.get("create_companies")),
            filename=filename,
            actor=uuid.UUID(actor) if actor else None,
        )
        try:
            data = self._read(organization_id, job_id, upload)
            report = run_recorded_import(
                self.runtime.db, organization_id, job_id, data, import_options, publisher=self.runtime.publisher
            )
        except OkyakuError as error:  # recorded on the job: a retry would find it failed
            logger.info("import job %s failed: %s", job_id, error.message)
            return None
        except Exception:
            logger.exception("import job %s failed", job_id)
            return None
        try:
            self.store.delete(str(upload["key"]))
        except Exception:  # the lifecycle rule removes it later
            logger.warning("could not delete the imported object %s", upload["key"], exc_info=True)
        return report

    def _read(self, organization_id: uuid.UUID, job_id: uuid.UUID, upload: dict[str, Any]) -> bytes:
        from okyaku.crm.imports.jobs import record_failure

        try:
            return self.store.read(str(upload["key"]), int(upload["max_bytes"]))
        except Exception as error:
            from botocore.exceptions import ClientError

            if isinstance(error, ClientError):
                error = UploadMissing(
                    "the uploaded file could not be read (it may have expired)", details={"key": upload["key"]}
                )
            record_failure(self.runtime.db, organization_id, job_id, error)
            raise error from None

    def _start_thread(self, message: ImportJobMessage) -> None:
        thread = threading.Thread(
            target=self._run_quietly, args=(message,), name=f"import-job-{message.job_id}", daemon=True
        )
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _run_quietly(self, message: ImportJobMessage) -> None:
        try:
            self.run(message.organization_id, message.job_id)
        except Exception:  # the run records its own failures; this is what it could not record
            logger.exception("import job %s could not be run", message.job_id)

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Join the jobs started on threads so far; True when all have finished."""
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout_s)
        return not any(t.is_alive() for t in threads)
