"""The CSV import's pure parts, without a database: reading the file, planning the columns,
typing custom property columns and normalising cells."""

from __future__ import annotations

import codecs

import pytest

from okyaku.crm.imports.catalogue import target_for
from okyaku.crm.imports.columns import custom_property_name, normalize_header, plan_columns, resolve_header
from okyaku.crm.imports.csv_reader import decode_csv, detect_delimiter, parse_csv
from okyaku.crm.imports.values import (
    convert_custom_value,
    infer_column_type,
    is_iso_date,
    normalize_cell,
    same_value,
)
from okyaku.errors import ValidationFailed

# --- reading the file ---------------------------------------------------------------------------


def test_utf8_with_or_without_bom_and_utf16_with_bom_decode_to_the_same_text() -> None:
    text = "name,city\nZoë,Kraków\n"
    assert decode_csv(text.encode()) == text
    assert decode_csv(codecs.BOM_UTF8 + text.encode()) == text
    assert decode_csv(text.encode("utf-16")) == text  # Python writes the BOM
    assert decode_csv(codecs.BOM_UTF16_BE + text.encode("utf-16-be")) == text


def test_a_file_that_is_not_utf8_is_refused_with_the_offending_byte() -> None:
    data = "name\nZo\xeb\n".encode("latin-1")
    with pytest.raises(ValidationFailed) as raised:
        decode_csv(data)
    (detail,) = raised.value.details
    assert detail["field"] == "file"
    assert "0xeb at offset 7" in detail["message"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b,c\n1,2,3\n", ","),
        # Decimal commas in the values: the semicolon is the one every row agrees on.
        ("name;amount;city\nAda;1,5;Paris\nBob;2,25;Rome\n", ";"),
        ("name\tamount\nAda\t1,5\n", "\t"),
        ("just one column\nvalue\n", ","),
    ],
)
def test_the_delimiter_is_the_one_the_rows_agree_on(text: str, expected: str) -> None:
    assert detect_delimiter(text) == expected


def test_rows_keep_their_line_numbers_and_blank_rows_are_skipped() -> None:
    parsed = parse_csv(b" name , email \nAda,ada@example.com\n,\n\nBob,bob@example.com\n")
    assert parsed.headers == ["name", "email"]  # trimmed
    assert parsed.rows == [(2, ["Ada", "ada@example.com"]), (5, ["Bob", "bob@example.com"])]
    assert parsed.delimiter == ","


def test_a_quoted_cell_may_hold_the_delimiter_and_line_breaks() -> None:
    parsed = parse_csv(b'name,notes\nAda,"first, second\nthird"\n')
    assert parsed.rows == [(2, ["Ada", "first, second\nthird"])]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file has no header row"),
        (b",,\n1,2,3\n", "the file has no header row"),
        (b"email,name,email\nx,y,z\n", "column names must be unique"),
    ],
)
def test_files_without_usable_headers_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        parse_csv(data)


# --- which column goes where --------------------------------------------------------------------


def test_headers_are_compared_without_case_spaces_or_punctuation() -> None:
    assert normalize_header(" E-Mail Address ") == normalize_header("email_address") == "emailaddress"
    assert custom_property_name(" Favourite Colour (main) ") == "favourite_colour_main"


def test_field_names_and_aliases_find_their_field_per_entity_type() -> None:
    contact, company = target_for("contact"), target_for("company")
    assert resolve_header(contact, "E-mail") == "email"
    assert resolve_header(contact, "Surname") == "last_name"
    assert resolve_header(contact, "Organisation") == "company"  # a reference to a company
    assert resolve_header(company, "Organisation") == "name"  # the company's own name
    assert resolve_header(contact, "Record ID") == "external_id"  # common to every type
    assert resolve_header(contact, "Shoe size") is None


def test_unknown_columns_become_custom_properties_with_unique_names() -> None:
    headers = ["First name", "Email", "Shoe size", "shoe-size", "", "Notes!"]
    plan = plan_columns(target_for("contact"), headers, {})
    assert plan.fields == {0: "first_name", 1: "email"}
    assert plan.custom == {2: "shoe_size", 3: "shoe_size_2", 5: "notes"}
    assert plan.ignored == [4]  # an unnamed column
    assert plan.describe() == {
        "First name": "first_name",
        "Email": "email",
        "Shoe size": "custom_properties.shoe_size",
        "shoe-size": "custom_properties.shoe_size_2",
        "Notes!": "custom_properties.notes",
    }


def test_an_explicit_mapping_wins_over_names_and_can_ignore_or_name_a_property() -> None:
    headers = ["Mail", "Title", "Internal", "Tier"]
    mapping = {"mail": "email", "Title": "custom.title", "Internal": "ignore", "Tier": "custom_properties.tier"}
    plan = plan_columns(target_for("contact"), headers, mapping)
    assert plan.fields == {0: "email"}
    assert plan.custom == {1: "title", 3: "tier"}
    assert plan.ignored == [2]
    assert plan.column_of("email") == 0 and plan.column_of("phone") is None


def test_a_mapping_that_cannot_be_followed_lists_every_problem() -> None:
    headers = ["Email", "E-mail", "Name"]
    mapping = {"Missing": "email", "Name": "shoe_size", "Email": "email"}
    with pytest.raises(ValidationFailed) as raised:
        plan_columns(target_for("contact"), headers, mapping)
    by_field = {d["field"]: d for d in raised.value.details}
    assert by_field["mapping.Missing"]["type"] == "not_found"
    assert by_field["mapping.Name"]["type"] == "unknown_field"
    assert "first_name" in by_field["mapping.Name"]["message"]  # the known fields are listed
    assert by_field["mapping.E-mail"]["type"] == "duplicate"  # both columns would fill email


def test_a_row_error_names_the_column_as_the_file_does() -> None:
    plan = plan_columns(target_for("company"), ["Company Name", "Employees"], {})
    error = plan.error(7, plan.column_of("employee_count"), "employee_count", "not a number")
    assert (error.row, error.column, error.field, error.message) == (7, "Employees", "employee_count", "not a number")
    assert plan.error(3, None, "row", "too short").column is None


# --- custom property values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["yes", "No", "", "Y"], "boolean"),
        (["12", "-3.5", "1e3", ""], "number"),
        (["007", "12"], "string"),  # a leading zero is text (a code, a postcode), not a number
        (["2026-01-31", "2026-02-01T10:00:00"], "date"),
        (["2026-02-30"], "string"),  # looks like a date, is not one
        (["gold", "silver", "gold", "gold", "silver", "bronze"], "category"),
        (["one", "two", "three"], "string"),  # nothing repeats: free text
        (["", ""], None),
    ],
)
def test_a_custom_column_gets_the_type_all_its_values_fit(values: list[str], expected: str | None) -> None:
    assert infer_column_type(values) == expected


def test_cells_become_json_values_of_their_property_type() -> None:
    assert convert_custom_value("number", "42") == 42
    assert convert_custom_value("number", "-0.5") == -0.5
    assert convert_custom_value("boolean", "Yes") is True
    assert convert_custom_value("boolean", "0") is False
    assert convert_custom_value("date", "2026-03-01") == "2026-03-01"
    assert convert_custom_value("date", "2026-03-01T08:30:00+02:00") == "2026-03-01T08:30:00+02:00"
    assert convert_custom_value("category", "gold") == "gold"


@pytest.mark.parametrize(
    ("data_type", "cell", "message"),
    [
        ("number", "12 apples", "expected a number"),
        ("number", "1e999", "out of range"),
        ("boolean", "maybe", "expected true/false"),
        ("date", "01/03/2026", "YYYY-MM-DD"),
    ],
)
def test_a_cell_that_does_not_fit_its_type_says_why(data_type: str, cell: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        convert_custom_value(data_type, cell)


def test_iso_dates_must_exist() -> None:
    assert is_iso_date("2024-02-29")
    assert not is_iso_date("2023-02-29")
    assert not is_iso_date("29.02.2024")


# --- cells of known fields ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "cell", "expected"),
    [
        ("lifecycle_stage", " Marketing Qualified ", "marketing_qualified"),
        ("outcome", "Closed-Won", "closed_won"),
        ("amount", "$1,200,000.50", "1200000.50"),
        ("amount", "€ 99,5", "99.5"),  # a decimal comma
        ("annual_revenue", "1 000 000", "1000000"),
        ("amount", "1,2345", "1,2345"),  # neither form: left for the schema to refuse
        ("first_name", " Ada ", " Ada "),  # other fields are left as they are
    ],
)
def test_known_fields_are_normalised_to_what_the_schemas_accept(field: str, cell: str, expected: str) -> None:
    assert normalize_cell(field, cell) == expected


def test_custom_properties_compare_as_json_values() -> None:
    assert same_value({"vip": True}, {"vip": True})
    assert not same_value({"vip": True}, {"vip": 1})  # equal in Python, different in JSON
    assert not same_value({"score": 1}, {"score": 1.0})
    assert same_value("a", "a") and not same_value("a", "b")
