"""``okyaku invoke``: run one function's handler in-process with an event file (no Docker).

    okyaku invoke CrmApiFunction events/crm_api/http_list_contacts.json --api-key demo
    okyaku invoke outbox_relay events/outbox_relay/schedule.json

The database comes from the settings (``DATABASE_URL``); when it is unset and ``okyaku dev``
has created its local database, that one is started and used. Change events written by the
handler are published as configured (``CHANGE_EVENTS_QUEUE_URL``), else left in the outbox for
the relay.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from okyaku.errors import BadRequest


def register(subparsers: Any) -> None:
    invoke = subparsers.add_parser(
        "invoke",
        help="run a function's handler in-process with an event JSON file (e.g. from events/)",
        description="Invoke the handler of a template.yaml function with an event, print its result.",
    )
    invoke.add_argument("function", help="logical id (CrmApiFunction) or code directory (functions/crm_api)")
    invoke.add_argument("event", type=Path, help="event JSON file, e.g. events/crm_api/http_list_contacts.json")
    invoke.add_argument("--template", type=Path, default=Path("template.yaml"))
    invoke.add_argument(
        "--api-key",
        help="put 'Authorization: Bearer KEY' in an HTTP event; 'demo' uses the key okyaku dev saved",
    )
    invoke.add_argument("--data-dir", type=Path, default=Path(".okyaku"), help="where okyaku dev keeps its data")
    invoke.set_defaults(func=run_invoke)


def with_api_key(event: Any, api_key: str) -> Any:
    """The event with its Authorization header replaced (HTTP API payload 2.0 events only)."""
    if not (isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event):
        raise BadRequest("--api-key applies to HTTP API (payload 2.0) events only")
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "authorization"}
    headers["authorization"] = f"Bearer {api_key}"
    return {**event, "headers": headers}


def _use_local_database(data_dir: Path) -> Any:
    """Start the database ``okyaku dev`` made, when no DATABASE_URL is configured."""
    pg_dir = data_dir.resolve() / "pg"
    if os.environ.get("DATABASE_URL") or not (pg_dir / "PG_VERSION").exists():
        return None
    import pgserver

    from okyaku.local.postgres import app_role_url, start_embedded_postgres

    owner_url = start_embedded_postgres(pg_dir)
    os.environ["DATABASE_URL"] = app_role_url(owner_url, "okyaku_app")
    os.environ.setdefault("DATABASE_MIGRATION_URL", owner_url)
    server = pgserver.get_server(str(pg_dir))  # type: ignore[attr-defined]
    server.cleanup_mode = "stop"  # stopped on exit unless okyaku dev is also using it
    print(f"using the local database in {pg_dir}", file=sys.stderr)
    return server


def run_invoke(args: argparse.Namespace) -> int:
    from okyaku.config import get_settings
    from okyaku.local.lambda_host import FunctionHost, template_environment
    from okyaku.local.template import TemplateError, parse_template

    try:
        template = parse_template(args.template)
        spec = template.function(args.function)
    except (TemplateError, FileNotFoundError) as error:
        raise BadRequest(str(error)) from error
    try:
        event = json.loads(args.event.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BadRequest(f"cannot read the event {args.event}: {error}") from error

    if args.api_key:
        key = args.api_key
        if key == "demo":
            demo_file = args.data_dir / "demo.json"
            if not demo_file.exists():
                raise BadRequest(f"no {demo_file}: run `okyaku dev` once, or pass the key itself")
            key = json.loads(demo_file.read_text())["api_key"]
        event = with_api_key(event, key)

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = _use_local_database(args.data_dir)
    get_settings.cache_clear()  # DATABASE_URL may have just been set
    host = FunctionHost(spec, concurrency=1, environment=template_environment(template, spec))
    started = time.perf_counter()
    try:
        result = host.invoke(event)
    except Exception:
        traceback.print_exc()
        print(f"{spec.logical_id} raised (after {time.perf_counter() - started:.2f} s)", file=sys.stderr)
        return 1
    finally:
        host.shutdown()
        if server is not None:
            server.cleanup()
    print(json.dumps(result, indent=2, default=str))
    print(f"{spec.logical_id} returned in {time.perf_counter() - started:.2f} s", file=sys.stderr)
    return 0
