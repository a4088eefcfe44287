"""``okyaku migrate`` and ``okyaku org create``."""

from __future__ import annotations

import argparse
from typing import Any

from okyaku.cli.local_db import add_data_dir_argument, database_url
from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.db.migrate import upgrade
from okyaku.errors import BadRequest
from okyaku.tenancy import create_organization


def register(subparsers: Any) -> None:
    migrate = subparsers.add_parser("migrate", help="run database migrations (as DATABASE_MIGRATION_URL)")
    migrate.add_argument("--revision", default="heads")
    migrate.set_defaults(func=run_migrate)

    org = subparsers.add_parser("org", help="manage organizations")
    org_sub = org.add_subparsers(dest="org_command", required=True)
    create = org_sub.add_parser("create", help="create an organization and print its API key")
    create.add_argument("name")
    create.add_argument("--admin-email", required=True)
    add_data_dir_argument(create)
    create.set_defaults(func=run_org_create)


def run_migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.migration_url:
        raise BadRequest("set DATABASE_MIGRATION_URL (or DATABASE_URL) to the owner's connection URL")
    upgrade(settings.migration_url, args.revision, app_role=settings.database_app_role)
    print(f"migrated to {args.revision}")
    return 0


def run_org_create(args: argparse.Namespace) -> int:
    db = Database(database_url(args.data_dir))
    org = create_organization(db, args.name, args.admin_email)
    db.dispose()
    print(f"organization {org.organization_id}")
    print(f"API key (shown once): {org.api_key}")
    return 0
