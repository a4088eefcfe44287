"""Imports of files bigger than the gateway takes: a presigned S3 upload (moto's server, a real HTTP
POST of the form), then the import as a job, against the real Postgres."""

from __future__ import annotations

import base64
import importlib.util
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from okyaku.config import Settings
from okyaku.crm.api import create_crm_app
from okyaku.crm.import_uploads import ImportJobMessage, ImportUploads
from okyaku.runtime import Runtime
from tests.integration.test_agents_function import http_event, sqs_event

FUNCTIONS = Path(__file__).resolve().parents[2] / "functions"


def contacts_csv(rows: int) -> bytes:
    lines = ["external_id,first_name,last_name,email"]
    lines += [f"u-{i},First{i},Last{i},person{i}@example.com" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"okyaku-imports-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def upload_settings(pg, moto_endpoint: str, bucket: str, **overrides: Any) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(database_url=pg.app_url, imports_bucket=bucket, s3_endpoint_url=moto_endpoint, **overrides)


class Api:
    """The CRM app with its upload service, and one organization's client."""

    def __init__(self, settings: Settings, db, publisher, api_key: str, dispatch=None) -> None:  # type: ignore[no-untyped-def]
        self.uploads = ImportUploads(Runtime(settings, db=db, publisher=publisher), dispatch=dispatch)
        self.client = TestClient(
            create_crm_app(self.uploads.runtime, import_uploads=self.uploads),
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def start(self, **body: Any) -> dict[str, Any]:
        response = self.client.post("/api/v1/imports/uploads", json={"entity_type": "contact", **body})
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    def complete(self, upload_id: str) -> httpx.Response:
        return self.client.post(f"/api/v1/imports/uploads/{upload_id}/complete")

    def report(self, upload_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/imports/{upload_id}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def api(pg, db, publisher, tenant, moto_endpoint, bucket) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    # A direct upload limit far below the test files: the S3 path must not apply it.
    settings = upload_settings(pg, moto_endpoint, bucket, import_max_bytes=200)
    made = Api(settings, db, publisher, tenant.org.api_key)
    yield made
    made.client.close()


def send_form(ticket: dict[str, Any], content: bytes) -> httpx.Response:
    """What a browser or `curl -F` does with the upload form: a real HTTP POST to the store."""
    upload = ticket["upload"]
    assert upload["method"] == "POST"
    return httpx.post(
        upload["url"], data=upload["fields"], files={upload["file_field"]: ("big.csv", content, "text/csv")}
    )


def count(db, tenant, sql: str) -> int:  # type: ignore[no-untyped-def]
    with db.organization_scope(tenant.id) as session:
        return int(session.execute(text(sql)).scalar_one())


def object_keys(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_file_over_the_direct_limit_is_uploaded_to_s3_and_imported_as_a_job(api, db, tenant, s3, bucket):
    content = contacts_csv(300)
    assert len(content) > api.uploads.settings.import_max_bytes
    direct = api.client.post("/api/v1/imports", files={"file": ("big.csv", content)}, data={"entity_type": "contact"})
    assert direct.status_code == 413  # the direct path keeps its limit

    ticket = api.start(filename="big.csv", mapping={"last_name": "last_name"})
    assert ticket["status"] == "awaiting_upload"
    assert ticket["key"] == f"uploads/{tenant.id}/{ticket['id']}.csv"
    assert ticket["complete_url"] == f"/api/v1/imports/uploads/{ticket['id']}/complete"
    # The form's policy caps the size: S3 refuses a bigger file before it is stored.
    policy = json.loads(base64.b64decode(ticket["upload"]["fields"]["policy"]))
    assert ["content-length-range", 1, api.uploads.settings.import_upload_max_bytes] in policy["conditions"]
    assert api.report(ticket["id"])["status"] == "awaiting_upload"

    stored = send_form(ticket, content)
    assert stored.status_code in (200, 201, 204), stored.text
    assert object_keys(s3, bucket) == [ticket["key"]]

    completed = api.complete(ticket["id"])
    assert completed.status_code == 202, completed.text
    assert completed.json()["id"] == ticket["id"]
    assert completed.json()["status"] in ("queued", "running", "completed")
    assert completed.headers["Location"] == f"/api/v1/imports/{ticket['id']}"
    assert api.uploads.wait()

    report = api.report(ticket["id"])
    assert (report["status"], report["total_rows"], report["created"], report["failed"]) == ("completed", 300, 300, 0)
    assert report["filename"] == "big.csv" and report["columns"]["email"] == "email"
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 300
    assert count(db, tenant, "SELECT count(*) FROM outbox") == 300  # every record has its event
    assert object_keys(s3, bucket) == []  # imported, then removed


def test_completing_before_the_file_is_there_is_a_409_and_can_be_retried(api, db, tenant):
    ticket = api.start()
    missing = api.complete(ticket["id"])
    assert missing.status_code == 409
    assert missing.json()["error"]["code"] == "upload_missing"
    assert api.report(ticket["id"])["status"] == "awaiting_upload"  # nothing lost: upload, then again

    assert send_form(ticket, contacts_csv(3)).status_code in (200, 201, 204)
    assert api.complete(ticket["id"]).status_code == 202
    assert api.uploads.wait()
    assert api.report(ticket["id"])["created"] == 3


def test_completing_twice_imports_once(api, db, tenant):
    ticket = api.start()
    send_form(ticket, contacts_csv(20))
    first, second = api.complete(ticket["id"]), api.complete(ticket["id"])
    assert (first.status_code, second.status_code) == (202, 202)
    assert second.json()["id"] == ticket["id"]
    assert api.uploads.wait()
    done = api.complete(ticket["id"]).json()
    assert done["status"] == "completed"
    # A worker given the job again (a message delivered twice) finds it done and leaves it so.
    assert api.uploads.run(tenant.id, uuid.UUID(ticket["id"])) is None
    assert api.report(ticket["id"]) == done
    assert count(db, tenant, "SELECT count(*) FROM import_jobs") == 1
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 20
    assert count(db, tenant, "SELECT count(*) FROM outbox") == 20


def test_a_job_left_queued_is_handed_over_again_and_still_runs_once(pg, db, publisher, tenant, moto_endpoint, bucket):
    handed: list[ImportJobMessage] = []
    api = Api(upload_settings(pg, moto_endpoint, bucket), db, publisher, tenant.org.api_key, dispatch=handed.append)
    ticket = api.start()
    send_form(ticket, contacts_csv(5))
    assert api.complete(ticket["id"]).json()["status"] == "queued"
    assert api.complete(ticket["id"]).json()["status"] == "queued"
    assert len(handed) == 1  # a fresh job is not handed over twice
    with db.organization_scope(tenant.id) as session:  # its worker died: nothing for an hour
        session.execute(
            text(
                "UPDATE import_jobs SET options = options || jsonb_build_object('queued_at', CAST(:t AS text))"
                " WHERE id = :id"
            ),
            {"t": (datetime.now(UTC) - timedelta(hours=1)).isoformat(), "id": ticket["id"]},
        )
    assert api.complete(ticket["id"]).status_code == 202
    assert len(handed) == 2 and handed[0] == handed[1]
    reports = [api.uploads.run(m.organization_id, m.job_id) for m in handed]
    assert reports[0] is not None and reports[0].created == 5 and reports[1] is None
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 5


def test_a_worker_without_the_bucket_fails_the_job_rather_than_leaving_it_running(
    pg, db, publisher, tenant, moto_endpoint, bucket
):
    handed: list[ImportJobMessage] = []
    api = Api(upload_settings(pg, moto_endpoint, bucket), db, publisher, tenant.org.api_key, dispatch=handed.append)
    ticket = api.start()
    send_form(ticket, contacts_csv(2))
    api.complete(ticket["id"])
    misconfigured = ImportUploads(Runtime(Settings(database_url=pg.app_url), db=db, publisher=publisher))
    (message,) = handed
    assert misconfigured.run(message.organization_id, message.job_id) is None
    report = api.report(ticket["id"])
    assert report["status"] == "failed" and "IMPORTS_BUCKET" in report["failure"]


def test_an_upload_never_completed_ends_failed(api, db, tenant):
    ticket = api.start()
    with db.organization_scope(tenant.id) as session:
        session.execute(
            text("UPDATE import_jobs SET created_at = now() - interval '3 days' WHERE id = :id"), {"id": ticket["id"]}
        )
    report = api.report(ticket["id"])
    assert report["status"] == "failed" and "never completed" in report["failure"]
    assert report["finished_at"] is not None
    fresh = api.start()
    assert api.report(fresh["id"])["status"] == "awaiting_upload"  # may still come


def test_a_file_over_the_upload_limit_is_refused(pg, db, publisher, tenant, moto_endpoint, bucket, s3):
    api = Api(
        upload_settings(pg, moto_endpoint, bucket, import_upload_max_bytes=500), db, publisher, tenant.org.api_key
    )
    ticket = api.start()
    policy = json.loads(base64.b64decode(ticket["upload"]["fields"]["policy"]))
    assert ["content-length-range", 1, 500] in policy["conditions"]
    # A store that does not enforce the form's policy (moto, some S3-compatible ones) keeps it:
    s3.put_object(Bucket=bucket, Key=ticket["key"], Body=contacts_csv(50))

    refused = api.complete(ticket["id"])
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"
    assert "IMPORT_UPLOAD_MAX_BYTES" in refused.json()["error"]["details"][0]["message"]
    report = api.report(ticket["id"])
    assert report["status"] == "failed" and "upload limit" in report["failure"]
    assert api.complete(ticket["id"]).json()["status"] == "failed"  # answered as it stands, not re-run
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 0
    assert object_keys(s3, bucket) == []


def test_a_file_that_grew_past_the_limit_after_completion_fails_the_job(api, db, tenant, s3, bucket):
    """The worker reads under the job's cap too (the object may be replaced between the checks)."""
    ticket = api.start()
    send_form(ticket, contacts_csv(2))
    api.uploads.dispatch = lambda message: None  # type: ignore[method-assign]  # the queue holds it
    assert api.complete(ticket["id"]).json()["status"] == "queued"
    s3.put_object(Bucket=bucket, Key=ticket["key"], Body=contacts_csv(2) + b"x" * 2_000)
    with db.organization_scope(tenant.id) as session:
        session.execute(
            text("UPDATE import_jobs SET options = jsonb_set(options, '{upload,max_bytes}', '1000') WHERE id = :id"),
            {"id": ticket["id"]},
        )
    assert api.uploads.run(tenant.id, uuid.UUID(ticket["id"])) is None
    report = api.report(ticket["id"])
    assert report["status"] == "failed" and "upload limit" in report["failure"]
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 0


def test_a_bad_file_fails_its_job_with_a_readable_reason(api, db, tenant):
    ticket = api.start()
    send_form(ticket, b"name\n\xff\xfe\xfd\n\x81")
    assert api.complete(ticket["id"]).status_code == 202
    assert api.uploads.wait()
    report = api.report(ticket["id"])
    assert report["status"] == "failed" and "UTF-8" in report["failure"]


def test_another_organizations_upload_is_not_found(api, db, publisher, make_tenant, pg, moto_endpoint, bucket):
    ticket = api.start()
    send_form(ticket, contacts_csv(2))
    other = make_tenant("Other")
    intruder = Api(upload_settings(pg, moto_endpoint, bucket), db, publisher, other.org.api_key)
    refused = intruder.complete(ticket["id"])
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert intruder.client.get(f"/api/v1/imports/{ticket['id']}").status_code == 404
    assert api.report(ticket["id"])["status"] == "awaiting_upload"  # untouched
    assert intruder.complete(str(uuid.uuid4())).status_code == 404
    # A direct import's job is no upload either.
    direct = api.client.post(
        "/api/v1/imports", files={"file": ("a.csv", b"name\nX\n")}, data={"entity_type": "company"}
    )
    assert api.complete(direct.json()["id"]).status_code == 404


def test_uploads_without_a_bucket_are_a_clear_503(pg, db, publisher, tenant):
    api = Api(Settings(database_url=pg.app_url), db, publisher, tenant.org.api_key)
    for response in (
        api.client.post("/api/v1/imports/uploads", json={"entity_type": "contact"}),
        api.complete(str(uuid.uuid4())),
    ):
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "uploads_unavailable"
        assert "IMPORTS_BUCKET" in error["message"] and "okyaku import" in error["message"]
    bad = api.client.post("/api/v1/imports/uploads", json={"entity_type": "unicorn"})
    assert bad.status_code == 422
    anonymous = api.client.post(
        "/api/v1/imports/uploads", json={"entity_type": "contact"}, headers={"Authorization": ""}
    )
    assert anonymous.status_code == 401


# --- the deployed handler: HTTP queues the job, the import-jobs queue runs it ------------------------


@pytest.fixture
def queue_url(sqs) -> str:  # type: ignore[no-untyped-def]
    return str(sqs.create_queue(QueueName=f"import-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"])


def load_function(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"{name}_function_app", FUNCTIONS / name / "app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def functions(pg, monkeypatch, moto_endpoint, queue_url, bucket):  # type: ignore[no-untyped-def]
    """crm_api and import_jobs as deployed: configured by the template's variables."""
    from okyaku.config import get_settings

    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("IMPORTS_BUCKET", bucket)
    monkeypatch.setenv("IMPORT_JOBS_QUEUE_URL", queue_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    get_settings.cache_clear()
    crm_api, import_jobs = load_function("crm_api"), load_function("import_jobs")
    yield crm_api, import_jobs
    for module in (crm_api, import_jobs):
        runtime = module.import_uploads.runtime if hasattr(module, "import_uploads") else module.app.state.runtime
        runtime.db.dispose()
    get_settings.cache_clear()


def test_crm_api_queues_the_job_and_import_jobs_runs_it_once(functions, db, tenant, sqs, queue_url):
    crm_api, import_jobs = functions
    key = tenant.org.api_key
    started = crm_api.handler(http_event("POST", "/api/v1/imports/uploads", key, {"entity_type": "contact"}), None)
    assert started["statusCode"] == 201, started
    ticket = json.loads(started["body"])
    assert send_form(ticket, contacts_csv(40)).status_code in (200, 201, 204)

    completed = crm_api.handler(http_event("POST", ticket["complete_url"], key), None)
    assert completed["statusCode"] == 202, completed
    assert json.loads(completed["body"])["status"] == "queued"
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 0  # nothing ran in the HTTP invocation

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)["Messages"]
    assert [json.loads(m["Body"]) for m in received] == [{"organization_id": str(tenant.id), "job_id": ticket["id"]}]
    arn = "arn:aws:sqs:us-east-1:123456789012:import-jobs"
    bad = {"MessageId": "bad-1", "ReceiptHandle": "r", "Body": '{"job_id": "nope"}'}
    assert import_jobs.handler(sqs_event([*received, bad], arn), None) == {
        "batchItemFailures": [{"itemIdentifier": "bad-1"}]
    }
    report = json.loads(crm_api.handler(http_event("GET", ticket["report_url"], key), None)["body"])
    assert (report["status"], report["created"]) == ("completed", 40)
    # Delivered again (at least once): the import is not repeated.
    assert import_jobs.handler(sqs_event(received, arn), None) == {"batchItemFailures": []}
    assert json.loads(crm_api.handler(http_event("GET", ticket["report_url"], key), None)["body"]) == report
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 40
    assert count(db, tenant, "SELECT count(*) FROM outbox") == 40
