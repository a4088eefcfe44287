"""``okyaku key create|list|revoke``: an organization's API keys, from the command line."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.tenancy import find_user_id, issue_api_key, list_api_keys, revoke_api_key


def register(subparsers: Any) -> None:
    key = subparsers.add_parser("key", help="manage an organization's API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)

    create = key_sub.add_parser("create", help="create a key and print it (shown once)")
    create.add_argument("--organization", type=uuid.UUID, required=True)
    create.add_argument("--name", required=True)
    create.add_argument("--user", metavar="EMAIL", help="the user the key acts as (default: a service key)")
    create.set_defaults(func=run_create)

    listing = key_sub.add_parser("list", help="list the keys (prefixes, users, last use, revocation)")
    listing.add_argument("--organization", type=uuid.UUID, required=True)
    listing.set_defaults(func=run_list)

    revoke = key_sub.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("--organization", type=uuid.UUID, required=True)
    revoke.add_argument("key_id", type=uuid.UUID)
    revoke.set_defaults(func=run_revoke)


def _db() -> Database:
    return Database(get_settings().database_url)


def run_create(args: argparse.Namespace) -> int:
    db = _db()
    user_id = find_user_id(db, args.organization, args.user) if args.user else None
    key, info = issue_api_key(db, args.organization, args.name, user_id)
    print(f"key {info.id} ({info.name}, {info.user_email or 'service key'})")
    print(f"API key (shown once): {key}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    keys = list_api_keys(_db(), args.organization)
    print(f"{'id':36}  {'prefix':12}  {'name':20}  {'user':28}  {'last used':19}  revoked")
    for k in keys:
        used = k.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if k.last_used_at else "never"
        revoked = k.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if k.revoked_at else "-"
        user = (k.user_email or "service")[:28]
        print(f"{k.id!s:36}  {k.key_prefix:12}  {k.name[:20]:20}  {user:28}  {used:19}  {revoked}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    info = revoke_api_key(_db(), args.organization, args.key_id)
    print(f"revoked key {info.id} ({info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S}")
    return 0
