"""CSV import: the service, the HTTP endpoint and the CLI, against the real Postgres."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from okyaku.config import Settings
from okyaku.crm.api import create_crm_app
from okyaku.crm.imports import ImportOptions, ImportReport, run_import
from okyaku.errors import ValidationFailed
from okyaku.events.relay import relay_pending
from okyaku.runtime import Runtime

DATA = Path(__file__).resolve().parents[1] / "data" / "imports"


def do_import(db, tenant, content: str | bytes, entity: str = "contact", publisher=None, **options) -> ImportReport:  # type: ignore[no-untyped-def]
    data = content.encode() if isinstance(content, str) else content
    opts = ImportOptions(entity_type=entity, actor=tenant.org.user_id, **options)
    return run_import(db, tenant.id, data, opts, publisher=publisher)


def query(db, tenant, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    with db.organization_scope(tenant.id) as session:
        return list(session.execute(text(sql), params).mappings())


def count(db, tenant, sql: str, **params: Any) -> int:  # type: ignore[no-untyped-def]
    with db.organization_scope(tenant.id) as session:
        return int(session.execute(text(sql), params).scalar_one())


CONTACTS = """external_id,first_name,last_name,email,phone,lifecycle_stage
c-1,Ada,Lovelace,ada@example.com,+44 1,customer
c-2,Alan,Turing,alan@example.com,,Lead
c-3,Grace,Hopper,grace@example.com,+1 3,
"""


def test_bad_rows_are_reported_and_good_rows_kept(db, tenant):
    content = (
        "external_id,first_name,email,lifecycle_stage,phone\n"
        "c-1,Ada,ada@example.com,customer,\n"
        "c-2,Bob,not-an-email,lead,\n"  # row 3: bad email
        "c-3,,,,+1 555\n"  # row 4: no name and no email
        "c-4,Cy,cy@example.com,wizard,\n"  # row 5: unknown lifecycle stage
        "c-5,Dee,dee@example.com,lead,1,extra\n"  # row 6: one field too many
        "c-6,Eve,eve@example.com,,\n"
    )
    report = do_import(db, tenant, content)

    assert (report.total_rows, report.created, report.failed) == (6, 2, 4)
    by_row = {(e.row, e.field) for e in report.errors}
    assert {(3, "email"), (4, "row"), (5, "lifecycle_stage"), (6, "row")} <= by_row
    email_error = next(e for e in report.errors if e.row == 3)
    assert email_error.column == "email"
    stored = query(db, tenant, "SELECT external_id, lifecycle_stage FROM contacts ORDER BY external_id")
    assert [(r["external_id"], r["lifecycle_stage"]) for r in stored] == [("c-1", "customer"), ("c-6", "lead")]
    job = query(db, tenant, "SELECT status, created_count, error_count, errors FROM import_jobs")
    assert len(job) == 1
    assert (job[0]["status"], job[0]["created_count"], job[0]["error_count"]) == ("completed", 2, 4)
    assert {e["row"] for e in job[0]["errors"]} == {3, 4, 5, 6}


def test_reimport_of_the_same_file_changes_nothing(db, tenant):
    first = do_import(db, tenant, CONTACTS)
    events_after_first = count(db, tenant, "SELECT count(*) FROM outbox")
    second = do_import(db, tenant, CONTACTS)

    assert (first.created, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.created, second.updated, second.unchanged, second.failed) == (0, 0, 3, 0)
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 3
    assert count(db, tenant, "SELECT max(version) FROM contacts") == 1
    assert count(db, tenant, "SELECT count(*) FROM outbox") == events_after_first == 3


def test_external_id_updates_the_record_and_empty_cells_keep_values(db, tenant, publisher):
    do_import(db, tenant, CONTACTS)
    [ada] = query(db, tenant, "SELECT id FROM contacts WHERE external_id = 'c-1'")
    publisher.events.clear()
    changed = "external_id,first_name,phone,lifecycle_stage\nc-1,Ada,+44 99,\nc-2,Alan,,\n"

    report = do_import(db, tenant, changed, publisher=publisher)

    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    [row] = query(db, tenant, "SELECT * FROM contacts WHERE external_id = 'c-1'")
    assert (row["id"], row["phone"], row["version"]) == (ada["id"], "+44 99", 2)
    assert row["lifecycle_stage"] == "customer"  # the empty cell kept the stored stage
    assert row["updated_at"] > row["created_at"]
    [event] = query(db, tenant, "SELECT * FROM outbox WHERE operation = 'updated'")
    assert (event["entity_id"], event["entity_version"], event["changed_fields"]) == (ada["id"], 2, ["phone"])
    assert [(e.entity_id, e.operation, e.version) for e in publisher.events] == [(ada["id"], "updated", 2)]


@pytest.mark.parametrize(
    ("filename", "delimiter"),
    [
        ("contacts_semicolon.csv", ";"),
        ("contacts_tab.tsv", "\t"),
        ("contacts_bom.csv", ","),
        ("contacts_quoted_newline.csv", ","),
    ],
)
def test_dialects_are_detected(db, tenant, filename, delimiter):
    report = do_import(db, tenant, (DATA / filename).read_bytes())

    assert (report.delimiter, report.created, report.failed) == (delimiter, 3, 0), report.errors
    assert report.columns["E-mail" if "E-mail" in report.columns else "email"] == "email"
    rows = query(db, tenant, "SELECT external_id, first_name, email, custom_properties FROM contacts ORDER BY 1")
    assert [(r["external_id"], r["first_name"], r["email"]) for r in rows] == [
        ("c-1", "Ada", "ada@example.com"),
        ("c-2", "Alan", "alan@example.com"),
        ("c-3", "Grace", "grace@example.com"),
    ]
    notes = rows[0]["custom_properties"]["notes"]
    expected_first = {
        "contacts_quoted_newline.csv": "first line\nsecond line, with a comma",
    }.get(filename, "likes maths, engines")
    assert notes == expected_first
    if filename == "contacts_semicolon.csv":
        assert rows[2]["custom_properties"]["notes"] == 'said "it is easier to ask forgiveness"; navy'
    if filename == "contacts_quoted_newline.csv":
        assert rows[2]["custom_properties"]["notes"] == "line one\r\nline two"


def test_undecodable_input_is_a_422(db, tenant):
    with pytest.raises(ValidationFailed) as raised:
        do_import(db, tenant, b"external_id,first_name\nc-1,\xff\xfeAda\x81\n")
    assert raised.value.status_code == 422
    assert raised.value.details[0]["field"] == "file"
    assert "UTF-8" in raised.value.message
    with pytest.raises(ValidationFailed, match="no header"):
        do_import(db, tenant, b"")
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 0


def test_custom_property_types_are_inferred(db, tenant):
    lines = ["external_id,email,Score,Newsletter,Signup Date,Region,Favourite Quote,Postcode"]
    regions = ["north", "south", "north", "east", "south", "north"]
    for i, region in enumerate(regions):
        yes_no = "yes" if i % 2 else "No"
        lines.append(f"c-{i},p{i}@example.com,{i * 1.5},{yes_no},2024-01-0{i + 1},{region},quote number {i},0{i}123")
    report = do_import(db, tenant, "\n".join(lines) + "\n")

    assert report.failed == 0
    assert report.custom_properties == {
        "score": "number",
        "newsletter": "boolean",
        "signup_date": "date",
        "region": "category",
        "favourite_quote": "string",
        "postcode": "string",
    }
    definitions = query(
        db, tenant, "SELECT name, data_type FROM custom_property_definitions WHERE entity_type = 'contact'"
    )
    assert {d["name"]: d["data_type"] for d in definitions} == report.custom_properties
    [row] = query(db, tenant, "SELECT custom_properties FROM contacts WHERE external_id = 'c-3'")
    assert row["custom_properties"] == {
        "score": 4.5,
        "newsletter": True,
        "signup_date": "2024-01-04",
        "region": "east",
        "favourite_quote": "quote number 3",
        "postcode": "03123",
    }

    # A property keeps its type: a later value that does not fit is a row error.
    later = do_import(db, tenant, "external_id,email,Score\nc-9,z@example.com,lots\n")
    assert later.failed == 1
    assert later.errors[0].field == "custom_properties.score"


def test_every_imported_record_gets_its_outbox_event(db, tenant, publisher):
    report = do_import(db, tenant, CONTACTS, publisher=publisher)

    ids = {r["id"] for r in query(db, tenant, "SELECT id FROM contacts")}
    events = query(db, tenant, "SELECT * FROM outbox ORDER BY id")
    assert report.created == len(ids) == len(events) == 3
    assert {e["entity_id"] for e in events} == ids
    assert {(e["entity_type"], e["operation"], e["entity_version"]) for e in events} == {("contact", "created", 1)}
    assert "email" in events[0]["changed_fields"]
    # Published after commit, and marked so.
    assert {e.entity_id for e in publisher.events} == ids
    assert count(db, tenant, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


def test_large_imports_leave_publishing_to_the_relay(db, tenant, publisher):
    data = CONTACTS.encode()
    options = ImportOptions(entity_type="contact")
    report = run_import(db, tenant.id, data, options, publisher=publisher, publish_inline_limit=2)

    assert report.created == 3 and publisher.events == []
    assert count(db, tenant, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 3
    relay_pending(db, publisher)
    mine = [e for e in publisher.events if e.organization_id == tenant.id]
    assert sorted(e.entity_id for e in mine) == sorted(r["id"] for r in query(db, tenant, "SELECT id FROM contacts"))
    assert count(db, tenant, "SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


def test_a_dry_run_writes_nothing_but_reports(db, tenant):
    report = do_import(db, tenant, CONTACTS, dry_run=True)

    assert (report.status, report.dry_run, report.created) == ("dry_run", True, 3)
    assert count(db, tenant, "SELECT count(*) FROM contacts") == 0
    assert count(db, tenant, "SELECT count(*) FROM outbox") == 0
    assert count(db, tenant, "SELECT count(*) FROM import_jobs") == 1


def test_repeated_external_ids_in_one_file_are_rejected(db, tenant):
    report = do_import(db, tenant, "external_id,email\nx,a@example.com\nx,b@example.com\n")

    assert (report.created, report.failed) == (1, 1)
    assert report.errors[0].row == 3
    assert "row 2" in report.errors[0].message


def test_an_import_never_touches_another_organizations_rows(db, make_tenant):
    alpha, beta = make_tenant("Alpha"), make_tenant("Beta")
    do_import(db, alpha, "external_id,first_name,email\nc-1,Alpha,alpha@example.com\n")
    do_import(db, alpha, "external_id,name\nco-1,Alpha Corp\n", entity="company")

    report = do_import(db, beta, "external_id,first_name,email,company\nc-1,Beta,beta@example.com,co-1\n")
    assert (report.created, report.updated, report.failed) == (0, 0, 1)
    assert "no company" in report.errors[0].message  # alpha's company is invisible to beta

    report = do_import(db, beta, "external_id,first_name,email\nc-1,Beta,beta@example.com\n")
    assert (report.created, report.updated) == (1, 0)
    [alpha_row] = query(db, alpha, "SELECT first_name, version, email FROM contacts")
    assert dict(alpha_row) == {"first_name": "Alpha", "version": 1, "email": "alpha@example.com"}
    [beta_row] = query(db, beta, "SELECT first_name FROM contacts")
    assert beta_row["first_name"] == "Beta"
    assert count(db, alpha, "SELECT count(*) FROM outbox WHERE entity_type = 'contact'") == 1


def test_contacts_link_to_companies_by_external_id_or_name(db, tenant):
    do_import(
        db,
        tenant,
        "Record ID,Company Name,Website\nco-1,Initech,initech.example\nco-2,Hooli,hooli.example\n",
        entity="company",
    )
    companies = {r["name"]: r["id"] for r in query(db, tenant, "SELECT id, name FROM companies")}
    content = (
        "External ID,First Name,E-mail,Company\n"
        "c-1,Peter,peter@example.com,co-1\n"
        "c-2,Gavin,gavin@example.com,Hooli\n"
        "c-3,Nobody,nobody@example.com,Vandelay\n"
    )
    report = do_import(db, tenant, content)

    assert report.columns == {
        "External ID": "external_id",
        "First Name": "first_name",
        "E-mail": "email",
        "Company": "company",
    }
    assert (report.created, report.failed) == (2, 1)
    assert report.errors[0].column == "Company" and "Vandelay" in report.errors[0].message
    rows = query(db, tenant, "SELECT external_id, company_id FROM contacts ORDER BY 1")
    assert [(r["external_id"], r["company_id"]) for r in rows] == [
        ("c-1", companies["Initech"]),
        ("c-2", companies["Hooli"]),
    ]


def test_explicit_mapping(db, tenant):
    content = "Ref,Given,Mail,Internal\nr-1,Ada,ada@example.com,x\n"
    report = do_import(
        db, tenant, content, mapping={"Ref": "external_id", "Given": "first_name", "Mail": "email", "Internal": ""}
    )
    assert report.created == 1 and report.columns["Internal"] == "(ignored)"
    [row] = query(db, tenant, "SELECT external_id, first_name, email, custom_properties FROM contacts")
    assert dict(row) == {"external_id": "r-1", "first_name": "Ada", "email": "ada@example.com", "custom_properties": {}}

    with pytest.raises(ValidationFailed) as raised:
        do_import(db, tenant, content, mapping={"Given": "favourite_colour", "Missing": "email"})
    fields = {d["field"] for d in raised.value.details}
    assert fields == {"mapping.Given", "mapping.Missing"}


DEALS = """Deal ID,Deal Name,Amount,Outcome,Closed Date,Lost Reason,Contact Email,Company
d-1,Big one,"1,200.50",won,2024-03-01,,ada@example.com,co-1
d-2,Lost one,500,lost,2024-02-01,price,,
d-3,Open one,300,,,,,
d-4,Broken,-5,maybe,,,,
"""


def test_deals_with_outcomes_map_to_won_and_lost_stages(db, tenant, pipeline):
    do_import(db, tenant, "external_id,name\nco-1,Initech\n", entity="company")
    do_import(db, tenant, "external_id,first_name,email\nc-1,Ada,ada@example.com\n")
    stages = {st["name"]: st["id"] for st in pipeline["stages"]}  # type: ignore[union-attr]

    report = do_import(db, tenant, DEALS, entity="deal", mapping={"Deal ID": "external_id"})

    assert (report.created, report.failed) == (3, 1), report.errors
    assert {e.field for e in report.errors} == {"outcome"}
    deals = {r["external_id"]: r for r in query(db, tenant, "SELECT * FROM deals")}
    won, lost, open_ = deals["d-1"], deals["d-2"], deals["d-3"]
    assert str(won["stage_id"]) == stages["Closed Won"] and str(lost["stage_id"]) == stages["Closed Lost"]
    assert str(open_["stage_id"]) == stages["Qualification"] and open_["closed_at"] is None
    assert str(won["amount"]) == "1200.50" and won["currency"] == "USD"
    assert won["closed_at"].isoformat() == "2024-03-01T00:00:00+00:00"
    assert lost["lost_reason"] == "price"
    assert won["contact_id"] is not None and won["company_id"] is not None
    assert won["owner_id"] == tenant.org.user_id
    history = query(db, tenant, "SELECT deal_id, from_stage_id, to_stage_id, changed_at FROM deal_stage_history")
    assert len(history) == 3
    assert {h["deal_id"]: h["changed_at"] for h in history}[won["id"]] == won["closed_at"]

    # Re-importing with d-3 now won moves its stage, stamps the close date and adds history.
    again = do_import(db, tenant, "external_id,outcome\nd-3,won\nd-1,won\n", entity="deal")
    assert (again.updated, again.unchanged) == (1, 1)
    [moved] = query(db, tenant, "SELECT * FROM deals WHERE external_id = 'd-3'")
    assert str(moved["stage_id"]) == stages["Closed Won"] and moved["closed_at"] is not None
    assert moved["version"] == 2
    assert count(db, tenant, "SELECT count(*) FROM deal_stage_history WHERE deal_id = :d", d=moved["id"]) == 2
    # The API sees the imported deal as won.
    assert tenant.client.get(f"/api/v1/deals/{moved['id']}").json()["status"] == "won"


def test_deals_need_a_pipeline(db, tenant):
    with pytest.raises(ValidationFailed) as raised:
        do_import(db, tenant, "name,amount\nA deal,10\n", entity="deal")
    assert "pipeline" in raised.value.message
    [job] = query(db, tenant, "SELECT status, options FROM import_jobs")
    assert job["status"] == "failed" and "pipeline" in job["options"]["failure"]


def test_activities_link_by_email_and_external_id(db, tenant, pipeline):
    do_import(db, tenant, "external_id,first_name,email\nc-1,Ada,ada@example.com\n")
    do_import(db, tenant, "external_id,name\nd-1,Deal\n", entity="deal")
    content = (
        "external_id,Type,Subject,Notes,Date,Contact,Deal,Duration\n"
        'a-1,Call,Intro,"talked, a lot",2024-05-01T10:00:00Z,ada@example.com,d-1,30\n'
        "a-2,Meeting,Demo,,2024-05-02,c-1,,60\n"
        "a-3,Carrier pigeon,?,,,,,\n"
    )
    report = do_import(db, tenant, content, entity="activity")

    assert (report.created, report.failed) == (2, 1)
    assert report.errors[0].field == "type"
    rows = {r["external_id"]: r for r in query(db, tenant, "SELECT * FROM activities")}
    [contact] = query(db, tenant, "SELECT id FROM contacts")
    assert rows["a-1"]["type"] == "call" and rows["a-1"]["body"] == "talked, a lot"
    assert rows["a-1"]["contact_id"] == rows["a-2"]["contact_id"] == contact["id"]
    assert rows["a-1"]["deal_id"] is not None and rows["a-1"]["duration_minutes"] == 30


def post_import(client: TestClient, content: bytes, **form: str):  # type: ignore[no-untyped-def]
    return client.post("/api/v1/imports", files={"file": ("people.csv", content, "text/csv")}, data=form)


def test_http_import_and_its_report(db, tenant):
    response = post_import(
        tenant.client,
        b"Ref,First Name,Email\nr-1,Ada,ada@example.com\nr-2,Bob,nope\n",
        entity_type="contact",
        mapping=json.dumps({"Ref": "external_id"}),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["created"], body["failed"], body["filename"], body["status"]) == (1, 1, "people.csv", "completed")
    assert body["errors"][0]["row"] == 3 and body["errors"][0]["field"] == "email"
    assert response.headers["Location"] == f"/api/v1/imports/{body['id']}"

    fetched = tenant.client.get(f"/api/v1/imports/{body['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == body
    contacts = tenant.client.get("/api/v1/contacts").json()["data"]
    assert [c["external_id"] for c in contacts] == ["r-1"]

    dry = post_import(tenant.client, b"email\nz@example.com\n", entity_type="contact", dry_run="true")
    assert dry.status_code == 201 and dry.json()["status"] == "dry_run"
    assert "no external_id column" in dry.json()["warnings"][0]


def test_http_import_rejects_bad_requests(tenant, make_tenant):
    bad_type = post_import(tenant.client, b"name\nx\n", entity_type="unicorn")
    assert bad_type.status_code == 422
    assert bad_type.json()["error"]["details"][0]["field"] == "entity_type"

    bad_mapping = post_import(tenant.client, b"name\nx\n", entity_type="company", mapping="{nope")
    assert bad_mapping.status_code == 422 and bad_mapping.json()["error"]["details"][0]["field"] == "mapping"

    no_file = tenant.client.post("/api/v1/imports", data={"entity_type": "contact"})
    assert no_file.status_code == 422 and no_file.json()["error"]["details"][0]["field"] == "file"

    undecodable = post_import(tenant.client, b"name\n\xff\xfe\xfd\n\x81", entity_type="company")
    assert undecodable.status_code == 422 and undecodable.json()["error"]["code"] == "validation_error"

    assert (
        tenant.client.post(
            "/api/v1/imports", files={"file": ("a.csv", b"x")}, headers={"Authorization": ""}
        ).status_code
        == 401
    )

    done = post_import(tenant.client, b"name\nInitech\n", entity_type="company").json()
    other = make_tenant("Other")
    assert other.client.get(f"/api/v1/imports/{done['id']}").status_code == 404
    assert tenant.client.get(f"/api/v1/imports/{uuid.uuid4()}").status_code == 404


def test_http_import_over_the_size_limit_is_a_413(db, pg, publisher, tenant):
    settings = Settings(database_url=pg.app_url, import_max_bytes=100)
    app = create_crm_app(Runtime(settings, db=db, publisher=publisher))
    with TestClient(app, headers={"Authorization": f"Bearer {tenant.org.api_key}"}) as client:
        small = post_import(client, b"name\nInitech\n", entity_type="company")
        assert small.status_code == 201, small.text
        big = post_import(client, b"name\n" + b"Initech\n" * 50, entity_type="company")
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    assert count(db, tenant, "SELECT count(*) FROM companies") == 1


def test_cli_imports_a_file(pg, db, tenant, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("external_id,first_name,email,Team\nc-1,Ada,ada@example.com,red\nc-2,Bob,bad,blue\n")
    env = {**os.environ, "DATABASE_URL": pg.app_url}
    command = [str(Path(sys.executable).parent / "okyaku"), "import", str(path), "--type", "contact"]

    dry = subprocess.run(
        [*command, "--org", str(tenant.id), "--dry-run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 1, dry.stderr  # one row would be rejected
    assert "1 created" in dry.stdout and count(db, tenant, "SELECT count(*) FROM contacts") == 0

    result = subprocess.run(
        [*command, "--org-key", tenant.org.api_key, "--map", "Team=custom_properties.team"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "1 created" in result.stdout and "row 3" in result.stdout and "email" in result.stdout
    assert "rows" in result.stderr  # the progress bar
    [row] = query(db, tenant, "SELECT email, custom_properties FROM contacts")
    assert dict(row) == {"email": "ada@example.com", "custom_properties": {"team": "red"}}

    missing = subprocess.run(
        [*command, "--org", str(uuid.uuid4())], env=env, capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_an_import_killed_mid_run_is_reported_failed_not_running_forever(db, tenant):
    from datetime import UTC, datetime, timedelta

    from okyaku.db.models import ImportJob

    with db.organization_scope(tenant.id) as session:
        killed = ImportJob(entity_type="contact", filename="big.csv", created_at=datetime.now(UTC) - timedelta(hours=1))
        recent = ImportJob(entity_type="contact", filename="now.csv")
        session.add_all([killed, recent])
        session.flush()
        killed_id, recent_id = killed.id, recent.id
    report = tenant.client.get(f"/api/v1/imports/{killed_id}").json()
    assert report["status"] == "failed" and "stopped before it finished" in report["failure"]
    assert tenant.client.get(f"/api/v1/imports/{recent_id}").json()["status"] == "running"  # may still be going
    with db.organization_scope(tenant.id) as session:
        assert session.get(ImportJob, killed_id).finished_at is not None  # stored, not only shown
