"""CSV import throughput: 50,000 contacts (linked to companies, with custom columns) into a fresh
organization on the embedded Postgres in ``.okyaku/bench-pg``; then the same file again (nothing
changes), a file with a tenth of the rows changed, and a dry run.

``python -m bench import`` (``BENCH_IMPORT_ROWS`` changes the row count).
"""

from __future__ import annotations

import csv
import io
import os
import random
import time
from collections.abc import Callable
from dataclasses import replace

from sqlalchemy import text

from bench._database import bench_organization
from okyaku.crm.imports import ImportOptions, ImportReport, run_import
from okyaku.db import Database
from okyaku.tenancy import NewOrganization

COMPANIES = 500
REGIONS = ("north", "south", "east", "west", "central")
STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer")


def companies_csv(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["External ID", "Company Name", "Website", "Industry", "Employees"])
    for i in range(count):
        writer.writerow([f"co-{i}", f"Company {i}", f"company{i}.example", "Software", 10 + i])
    return out.getvalue().encode()


def contacts_csv(count: int, *, changed_every: int = 0, seed: int = 7) -> bytes:
    """Contacts with a company link and custom columns (number, boolean, date, category, string)."""
    rng = random.Random(seed)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "External ID",
            "First Name",
            "Last Name",
            "E-mail",
            "Phone",
            "Job Title",
            "Company",
            "Lifecycle Stage",
            "Score",
            "Newsletter",
            "Signup Date",
            "Region",
            "Notes",
        ]
    )
    for i in range(count):
        changed = changed_every and i % changed_every == 0
        writer.writerow(
            [
                f"c-{i}",
                f"First{i}",
                f"Last{i}",
                f"person{i}@example.com",
                f"+1 555 {i:07d}" if not changed else f"+1 666 {i:07d}",
                rng.choice(("CEO", "CTO", "Engineer", "Buyer")),
                f"co-{i % COMPANIES}",
                rng.choice(STAGES),
                rng.randint(0, 100),
                rng.choice(("yes", "no")),
                f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                rng.choice(REGIONS),
                f"met at event {i}, follow up",
            ]
        )
    return out.getvalue().encode()


def timed(step: Callable[[], ImportReport]) -> tuple[ImportReport, float]:
    started = time.perf_counter()
    report = step()
    return report, time.perf_counter() - started


def main() -> None:
    rows = int(os.environ.get("BENCH_IMPORT_ROWS", "50000"))
    with bench_organization("Import bench", "bench@example.com") as bench:
        measure(bench.db, bench.org, rows)


def measure(db: Database, org: NewOrganization, rows: int) -> None:
    """Import the same 50k-row file three ways and print each step."""

    def load(data: bytes, entity: str = "contact", dry_run: bool = False) -> Callable[[], ImportReport]:
        options = ImportOptions(entity_type=entity, dry_run=dry_run, filename="bench.csv", actor=org.user_id)
        return lambda: run_import(db, org.organization_id, data, options)

    run_import(db, org.organization_id, companies_csv(COMPANIES), ImportOptions(entity_type="company"))
    original = contacts_csv(rows)
    modified = contacts_csv(rows, changed_every=10)
    results = [
        ("first import", *timed(load(original))),
        ("same file again", *timed(load(original))),
        ("a tenth changed", *timed(load(modified))),
        ("dry run (original)", *timed(load(original, dry_run=True))),
    ]
    print(f"{rows} contact rows, {len(original) / 1e6:.1f} MB, linked to {COMPANIES} companies")
    print(f"{'step':<18}{'seconds':>9}{'rows/s':>10}{'created':>9}{'updated':>9}{'unchanged':>11}{'failed':>8}")
    for name, report, seconds in results:
        print(
            f"{name:<18}{seconds:>9.2f}{rows / seconds:>10.0f}{report.created:>9}{report.updated:>9}"
            f"{report.unchanged:>11}{report.failed:>8}"
        )
    with db.organization_scope(org.organization_id) as session:
        events = session.execute(text("SELECT count(*) FROM outbox WHERE entity_type = 'contact'")).scalar()
    print(f"outbox events for contacts: {events} (created + updated)")
    measure_new_companies(db, org, rows)


NEW_COMPANIES = 2000


def measure_new_companies(db: Database, org: NewOrganization, rows: int) -> None:
    """create_companies: contacts naming NEW_COMPANIES companies not there yet (each spelt two ways),
    against the same rows naming companies that exist."""
    spellings = ("Newco {:04d} Ltd", "NEWCO  {:04d} ltd")
    lines = [f"e-{i},P{i},p{i}@new.example,{spellings[i % 2].format(i % NEW_COMPANIES)}" for i in range(rows)]
    data = ("External ID,First Name,E-mail,Company\n" + "\n".join(lines) + "\n").encode()
    options = ImportOptions(entity_type="contact", actor=org.user_id, create_companies=True)
    dry, dry_s = timed(lambda: run_import(db, org.organization_id, data, replace(options, dry_run=True)))
    report, seconds = timed(lambda: run_import(db, org.organization_id, data, options))
    again, again_s = timed(lambda: run_import(db, org.organization_id, data, options))
    print(f"{rows} contact rows naming {NEW_COMPANIES} new companies (create_companies)")
    steps = (("dry run", dry, dry_s), ("import", report, seconds), ("same file again", again, again_s))
    for name, result, took in steps:
        print(
            f"{name:<18}{took:>9.2f}{rows / took:>10.0f} rows/s  contacts created {result.created:>6}"
            f"  companies {'to create' if result.dry_run else 'created'} {result.companies_created}"
        )


if __name__ == "__main__":
    main()
