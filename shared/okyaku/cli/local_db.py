"""The database a CLI command uses: DATABASE_URL when set, else the embedded database of
``okyaku dev`` in its data directory (started if it is not running, migrated, and left running
for the next command, as ``okyaku dev`` would find it)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from okyaku.config import get_settings

DEFAULT_DATA_DIR = Path(".okyaku")


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="without DATABASE_URL: the embedded database of `okyaku dev` in this folder (default .okyaku)",
    )


def database_url(data_dir: Path) -> str:
    """The application role's URL; with no DATABASE_URL, the embedded database's (and the
    environment then names it, so settings read later agree)."""
    settings = get_settings()
    if settings.database_url:
        return settings.database_url
    from okyaku.local.postgres import prepare_database, start_embedded_postgres

    local = prepare_database(start_embedded_postgres(data_dir.resolve() / "pg"))
    os.environ["DATABASE_URL"] = local.app_url
    os.environ.setdefault("DATABASE_MIGRATION_URL", local.owner_url)
    get_settings.cache_clear()
    return local.app_url


def demo_api_key(data_dir: Path) -> str | None:
    """The demo organization's key that ``okyaku dev`` saved, if there is one."""
    demo = data_dir / "demo.json"
    if not demo.is_file():
        return None
    key = json.loads(demo.read_text()).get("api_key")
    return str(key) if key else None
