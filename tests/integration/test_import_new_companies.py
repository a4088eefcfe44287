"""CSV import with ``create_companies``: the companies a contacts, deals or activities file names
that do not exist yet are created (one per distinct name, case and spacing ignored, existing
companies matched the same way) instead of the rows being rejected; counted in the report and
in the dry run; never twice, not even by two imports at once. Through the service, the HTTP
API, the CLI and the console's import page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import text

from okyaku.crm.imports import ImportOptions, run_import
from tests.integration import test_import_uploads
from tests.integration.test_console import sign_in
from tests.integration.test_imports import count, do_import, post_import, query

# The S3 upload path's fixtures (a moto server, a bucket, the CRM app with its upload service).
s3, bucket, api = test_import_uploads.s3, test_import_uploads.bucket, test_import_uploads.api

CONTACTS = (
    "external_id,first_name,email,Company\n"
    "c-1,Gavin,gavin@example.com,Hooli\n"  # exists as it is spelled
    "c-2,Jian,jian@example.com,  hooli \n"  # exists, spelled otherwise: no new company
    "c-3,Art,art@example.com,Vandelay Industries\n"  # new
    "c-4,George,george@example.com,VANDELAY   industries\n"  # the same new one
    "c-5,Cosmo,not-an-email,Kramerica\n"  # rejected for its email: Kramerica is not created
    "c-6,Elaine,elaine@example.com,\n"  # no company
)


def companies(db, tenant) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r["name"]: r["id"] for r in query(db, tenant, "SELECT id, name FROM companies")}


def test_missing_companies_are_created_once_per_name_and_counted(db, tenant, publisher) -> None:
    do_import(db, tenant, "name\nHooli\n", entity="company")
    hooli = companies(db, tenant)["Hooli"]

    refused = do_import(db, tenant, CONTACTS, dry_run=True)  # without the option: as before
    assert refused.failed == 4 and refused.companies_created == 0  # "hooli" is not "Hooli" there
    assert {e.row for e in refused.errors if e.field == "company"} == {3, 4, 5, 6}

    dry = do_import(db, tenant, CONTACTS, dry_run=True, create_companies=True)
    assert (dry.created, dry.failed, dry.companies_created) == (5, 1, 1)
    assert dry.new_companies == ["Vandelay Industries"]
    assert set(companies(db, tenant)) == {"Hooli"} and count(db, tenant, "SELECT count(*) FROM contacts") == 0

    report = do_import(db, tenant, CONTACTS, publisher=publisher, create_companies=True)
    assert (report.created, report.failed, report.companies_created) == (5, 1, 1)
    assert report.errors[0].row == 6 and report.errors[0].field == "email"
    stored = companies(db, tenant)
    assert set(stored) == {"Hooli", "Vandelay Industries"}
    rows = query(db, tenant, "SELECT external_id, company_id FROM contacts ORDER BY 1")
    vandelay = stored["Vandelay Industries"]
    assert [(r["external_id"], r["company_id"]) for r in rows] == [
        ("c-1", hooli),
        ("c-2", hooli),
        ("c-3", vandelay),
        ("c-4", vandelay),
        ("c-6", None),
    ]
    # The new company has its change event, as a company created any other way.
    [event] = [e for e in publisher.events if e.entity_id == vandelay]
    assert (event.entity_type, event.operation, event.version, event.changed_fields) == (
        "company",
        "created",
        1,
        ["name"],
    )
    # The report read back later says the same.
    fetched = tenant.client.get(f"/api/v1/imports/{report.id}").json()
    assert (fetched["companies_created"], fetched["new_companies"]) == (1, ["Vandelay Industries"])

    # Importing the file again finds the companies it created: none is created twice.
    again = do_import(db, tenant, CONTACTS, create_companies=True)
    assert (again.companies_created, again.unchanged) == (0, 5)
    assert count(db, tenant, "SELECT count(*) FROM companies") == 2


def test_deals_create_their_companies_and_ambiguous_names_are_still_errors(db, tenant, pipeline) -> None:
    do_import(db, tenant, "name\nGlobex\nglobex\n", entity="company")  # two companies with one name
    content = "name,amount,company_name\nWidgets,100,Initrode\nGadgets,200,GLOBEX\nSprockets,300,initrode\n"
    report = do_import(db, tenant, content, entity="deal", create_companies=True)
    assert (report.created, report.failed, report.companies_created) == (2, 1, 1)
    assert report.errors[0].row == 3 and "2 companies are named like 'GLOBEX'" in report.errors[0].message
    initrode = companies(db, tenant)["Initrode"]
    deals = query(db, tenant, "SELECT name, company_id FROM deals ORDER BY name")
    assert [(d["name"], d["company_id"]) for d in deals] == [("Sprockets", initrode), ("Widgets", initrode)]

    too_long = do_import(db, tenant, f"name,company\nLong,{'x' * 301}\n", entity="deal", create_companies=True)
    assert too_long.failed == 1 and "cannot create a company named" in too_long.errors[0].message


def test_two_imports_at_once_create_a_new_company_once(db, tenant, owner_db) -> None:
    """The first import holds its transaction open after writing the company; the second, started
    then, must wait for it (an advisory lock on the name) and then use its company."""
    second_report = {}

    def second() -> None:
        second_report["report"] = do_import(
            db, tenant, "first_name,email,company\nB,b@example.com,Pendant Publishing\n", create_companies=True
        )

    thread = threading.Thread(target=second)

    def hold_until_the_second_waits(done: int, total: int) -> None:
        if done < total:
            return
        thread.start()  # the first import's rows and company are written, not committed
        deadline = time.monotonic() + 30
        with owner_db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            while time.monotonic() < deadline:
                waiting = connection.execute(
                    text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
                ).scalar_one()
                if waiting:
                    return
                time.sleep(0.05)
        raise AssertionError("the second import did not wait for the first one's company")

    first = run_import(
        db,
        tenant.id,
        b"first_name,email,company\nA,a@example.com,pendant publishing\n",
        ImportOptions(entity_type="contact", create_companies=True),
        progress=hold_until_the_second_waits,
    )
    thread.join(timeout=60)
    assert first.companies_created == 1 and second_report["report"].companies_created == 0
    [company] = query(db, tenant, "SELECT id FROM companies")
    links = {r["company_id"] for r in query(db, tenant, "SELECT company_id FROM contacts")}
    assert links == {company["id"]}


def test_the_http_api_and_the_cli_take_the_option(db, pg, tenant, tmp_path) -> None:
    content = b"first_name,email,company\nAda,ada@example.com,Analytical Engines\n"
    dry = post_import(tenant.client, content, entity_type="contact", dry_run="true", create_companies="true")
    assert dry.status_code == 201, dry.text
    assert (dry.json()["companies_created"], dry.json()["new_companies"]) == (1, ["Analytical Engines"])
    bad = post_import(tenant.client, content, entity_type="contact", create_companies="perhaps")
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "create_companies"

    path = tmp_path / "deals.csv"
    path.write_text("name,company\nEngine,Analytical Engines\nLoom,Jacquard\n")
    command = [str(Path(sys.executable).parent / "okyaku"), "import", str(path), "--type", "deal"]
    command += ["--org", str(tenant.id)]
    env = {**os.environ, "DATABASE_URL": pg.app_url}
    tenant.client.post("/api/v1/pipelines", json={"name": "Sales", "stages": [{"name": "New", "probability": 0.1}]})
    without = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert without.returncode == 1 and "no company with external id or name 'Jacquard'" in without.stdout
    result = subprocess.run([*command, "--create-companies"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "created 2 companies: Analytical Engines, Jacquard" in result.stdout
    assert set(companies(db, tenant)) == {"Analytical Engines", "Jacquard"}


def test_the_console_import_offers_it_and_the_dry_run_says_what_it_would_create(console, db, tenant) -> None:
    token = sign_in(console, tenant.org.api_key)
    page = console.get("/console/import").text
    assert '<label for="import-create-companies">' in page
    csv = "first_name,email,company\nVera,vera@example.com,Aurora Optics\nTom,tom@example.com,aurora optics\n"
    checked = console.post(
        "/console/import",
        data={"csrf_token": token, "entity_type": "contact", "create_companies": "yes"},
        files={"file": ("people.csv", csv.encode(), "text/csv")},
    )
    assert checked.status_code == 200, checked.text
    assert "Would create 2, update 0" in checked.text and "Would create 1 company." in checked.text
    assert re.search(r'name="create_companies" type="checkbox" value="yes" checked', checked.text)
    assert count(db, tenant, "SELECT count(*) FROM companies") == 0

    form = {"csrf_token": token, "entity_type": "contact", "filename": "people.csv", "csv_text": csv}
    form |= {"action": "import", "create_companies": "yes"}
    for i, (column, field) in enumerate((("first_name", "first_name"), ("email", "email"), ("company", "company"))):
        form |= {f"column_{i}": column, f"field_{i}": field}
    done = console.post("/console/import", data=form)
    assert "Created 2," in done.text and "Created 1 company." in done.text
    assert set(companies(db, tenant)) == {"Aurora Optics"}


def test_a_big_files_upload_job_takes_the_option_too(api, db, tenant) -> None:
    ticket = api.start(filename="big.csv", create_companies=True)
    content = b"first_name,email,company\n" + b"".join(
        f"P{i},p{i}@example.com,Company {i % 3}\n".encode() for i in range(30)
    )
    assert test_import_uploads.send_form(ticket, content).status_code in (200, 201, 204)
    assert api.complete(ticket["id"]).status_code == 202
    assert api.uploads.wait()
    report = api.report(ticket["id"])
    assert (report["status"], report["created"], report["companies_created"]) == ("completed", 30, 3)
    assert set(companies(db, tenant)) == {"Company 0", "Company 1", "Company 2"}
