"""CSV import from the console (over HTTP, no browser): the dry run shows the guessed mapping and
the errors per row and writes nothing; a changed mapping is used; the import then writes through
the API's importer."""

from __future__ import annotations

import re

from tests.integration.test_console import sign_in

CSV = "First name,Last name,Work mail,Notes\nVera,Rubin,vera@aurora.example,met at a fair\nTom,Baker,not-an-email,\n"


def test_dry_run_shows_the_mapping_and_row_errors_then_the_import_writes(console, tenant, publisher) -> None:
    token = sign_in(console, tenant.org.api_key)
    assert console.get("/console/import").status_code == 200
    checked = console.post(
        "/console/import",
        data={"csrf_token": token, "entity_type": "contact"},
        files={"file": ("people.csv", CSV.encode(), "text/csv")},
    )
    assert checked.status_code == 200, checked.text
    assert "Dry run of people.csv: 2 rows of contact" in checked.text and "Nothing was written yet." in checked.text
    columns = dict(re.findall(r'name="column_(\d+)" value="([^"]*)"', checked.text))
    fields = dict(re.findall(r'name="field_(\d+)" value="([^"]*)"', checked.text))
    guessed = {columns[i]: fields[i] for i in columns}
    assert guessed["First name"] == "first_name" and guessed["Last name"] == "last_name"
    assert tenant.client.get("/api/v1/contacts").json()["data"] == []

    # Map the mail column to email and the notes to a custom property, check again: row 3's address is wrong.
    form = {"csrf_token": token, "entity_type": "contact", "filename": "people.csv", "csv_text": CSV, "action": "check"}
    for i, column in columns.items():
        form[f"column_{i}"] = column
        form[f"field_{i}"] = {"Work mail": "email", "Notes": "custom_properties.notes"}.get(column, guessed[column])
    again = console.post("/console/import", data=form)
    rows = re.findall(r'<tr><td class="num">(\d+)</td><td>([^<]*)</td><td>([^<]*)</td>', again.text)
    assert rows == [("3", "Work mail", "email")]
    assert tenant.client.get("/api/v1/contacts").json()["data"] == []

    done = console.post("/console/import", data={**form, "action": "import"})
    assert "Imported people.csv" in done.text and "Created 1" in done.text and "1 rows rejected" in done.text
    [vera] = tenant.client.get("/api/v1/contacts").json()["data"]
    assert (vera["email"], vera["custom_properties"]) == ("vera@aurora.example", {"notes": "met at a fair"})
    assert [e.operation for e in publisher.events if str(e.entity_id) == vera["id"]] == ["created"]


def test_an_import_without_a_file_says_so(console, tenant) -> None:
    token = sign_in(console, tenant.org.api_key)
    empty = console.post("/console/import", data={"csrf_token": token, "entity_type": "contact"})
    assert empty.status_code == 422 and "Choose a CSV file to import." in empty.text
