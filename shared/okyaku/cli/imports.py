"""``okyaku import FILE --type contact|company|deal|activity``: a CSV import with a progress bar."""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from okyaku.cli.local_db import add_data_dir_argument, database_url
from okyaku.config import get_settings
from okyaku.crm.imports import IMPORT_ENTITY_TYPES, ImportOptions, ImportReport, run_import
from okyaku.db import Database
from okyaku.db.models import Organization
from okyaku.errors import BadRequest, NotFound, ValidationFailed, field_error
from okyaku.events.publishers import publisher_from_settings
from okyaku.tenancy import authenticate


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a CSV file of contacts, companies, deals or activities (DATABASE_URL, else the local database)",
        description="Exit status: 0 when every row was imported, 1 when some rows were rejected "
        "(the others are kept), 2 when the import could not run.",
    )
    parser.add_argument("file", type=Path, help="the CSV file (comma, semicolon or tab separated; UTF-8)")
    parser.add_argument("--type", dest="entity_type", required=True, choices=IMPORT_ENTITY_TYPES)
    organization = parser.add_mutually_exclusive_group(required=True)
    organization.add_argument("--org-key", metavar="KEY", help="an API key of the organization")
    organization.add_argument("--org", metavar="ID", type=uuid.UUID, help="the organization's id")
    parser.add_argument(
        "--map",
        dest="mappings",
        action="append",
        default=[],
        metavar="COLUMN=FIELD",
        help="import COLUMN into FIELD (repeatable); 'COLUMN=' ignores it, "
        "'COLUMN=custom_properties.NAME' makes it a custom property",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and count, write nothing")
    parser.add_argument(
        "--create-companies",
        action="store_true",
        help="create the companies that rows (contacts, deals, activities) name and that do not exist yet, "
        "one per distinct name (case and spacing ignored), instead of rejecting those rows",
    )
    parser.add_argument("--show-errors", type=int, default=20, metavar="N", help="row errors to print")
    add_data_dir_argument(parser)
    parser.set_defaults(func=run_import_command)


def parse_mappings(pairs: list[str]) -> dict[str, str | None]:
    mapping: dict[str, str | None] = {}
    for pair in pairs:
        column, separator, target = pair.partition("=")
        if not separator or not column.strip():
            raise ValidationFailed("--map takes COLUMN=FIELD", details=[field_error("--map", f"cannot read {pair!r}")])
        mapping[column.strip()] = target.strip() or None
    return mapping


def run_import_command(args: argparse.Namespace) -> int:
    url = database_url(args.data_dir)
    settings = get_settings()
    try:
        data = args.file.read_bytes()
    except OSError as error:
        raise BadRequest(f"cannot read {args.file}: {error.strerror}") from error
    mapping = parse_mappings(args.mappings)
    db = Database(url)
    try:
        organization_id = _organization(db, args)
        report = run_import(
            db,
            organization_id,
            data,
            ImportOptions(
                entity_type=args.entity_type,
                mapping=mapping,
                dry_run=args.dry_run,
                filename=args.file.name,
                create_companies=args.create_companies,
            ),
            publisher=publisher_from_settings(settings),
            progress=_progress_bar(),
            errors_limit=args.show_errors,
        )
    finally:
        db.dispose()
    print_report(report)
    return 1 if report.failed else 0


def _organization(db: Database, args: argparse.Namespace) -> uuid.UUID:
    if args.org_key:
        return authenticate(db, f"Bearer {args.org_key}").organization_id
    organization_id: uuid.UUID = args.org
    with db.session() as session:
        if session.get(Organization, organization_id) is None:
            raise NotFound(f"organization {organization_id} not found")
    return organization_id


def _progress_bar() -> Any:
    from tqdm import tqdm  # the `local` extra; only this command needs it

    bar: Any = None

    def advance(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="rows", desc="importing", file=sys.stderr)
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return advance


def print_report(report: ImportReport) -> None:
    print(f"import {report.id} ({report.entity_type}, {report.status}): {report.total_rows} rows")
    counts = (
        f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, {report.failed} rejected"
    )
    print(f"  {counts}{' (dry run: nothing written)' if report.dry_run else ''}")
    if report.companies_created:
        verb = "would create" if report.dry_run else "created"
        names = ", ".join(report.new_companies)
        more = report.companies_created - len(report.new_companies)
        noun = "company" if report.companies_created == 1 else "companies"
        print(f"  {verb} {report.companies_created} {noun}: {names}{f' and {more} more' if more > 0 else ''}")
    for name, data_type in report.custom_properties.items():
        print(f"  custom property {name}: {data_type}")
    for warning in report.warnings:
        print(f"  warning: {warning}")
    for error in report.errors:
        where = f"column {error.column!r}, " if error.column else ""
        print(f"  row {error.row}: {where}{error.field}: {error.message}")
    if report.error_count > len(report.errors):
        print(f"  ... and {report.error_count - len(report.errors)} more errors")
