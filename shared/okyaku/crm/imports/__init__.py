"""CSV import of contacts, companies, deals and activities.

Each row is validated with the API's own schemas; rows are written in batches with set-based SQL,
and every created or changed record gets its change event in the outbox, in the same transaction.
A row whose ``external_id`` is already known updates that record (empty cells keep the stored
value); a row that would change nothing writes nothing: no new version, no event.

The parts, in the order an import uses them:

- ``catalogue``: what can be imported (entity types, fields, reference columns, aliases);
- ``csv_reader``: the file's encoding, delimiter, header and rows (pure);
- ``columns``: which column goes to which field or custom property (pure);
- ``values``: custom property types and cell normalisation (pure);
- ``lookups``, ``deal_stages``: the records and stages rows name, loaded set-wise;
- ``importer``, ``writes``, ``sql``: validating rows and writing them in batches;
- ``jobs``: the run recorded as an import job, and read back as a report.
"""

from okyaku.crm.import_report import (
    IMPORT_ENTITY_TYPES,
    ImportEntity,
    ImportOptions,
    ImportReport,
    ImportRowError,
    ImportStatus,
)
from okyaku.crm.imports.catalogue import TARGETS, ImportTarget, target_for
from okyaku.crm.imports.columns import ColumnPlan, plan_columns
from okyaku.crm.imports.csv_reader import ParsedCsv, parse_csv
from okyaku.crm.imports.jobs import get_import, report_of, run_import, run_recorded_import

__all__ = [
    "IMPORT_ENTITY_TYPES",
    "TARGETS",
    "ColumnPlan",
    "ImportEntity",
    "ImportOptions",
    "ImportReport",
    "ImportRowError",
    "ImportStatus",
    "ImportTarget",
    "ParsedCsv",
    "get_import",
    "parse_csv",
    "plan_columns",
    "report_of",
    "run_import",
    "run_recorded_import",
    "target_for",
]
