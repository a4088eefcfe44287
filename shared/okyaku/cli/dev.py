"""``okyaku dev``: the embedded default. Postgres + pgvector in the project, migrations, a demo
organization with demo data, and every function of ``template.yaml`` served on localhost."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from okyaku.errors import BadRequest

if TYPE_CHECKING:
    from okyaku.events.publishers import EventPublisher

logger = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    dev = subparsers.add_parser(
        "dev",
        help="run Okyaku locally: embedded Postgres, demo data, template.yaml served on http://127.0.0.1:3000",
        description=(
            "Start an embedded Postgres with pgvector (data in --data-dir), run the migrations, create a demo "
            "organization once, then serve every function of the template: HTTP routes, change events "
            "to SQS consumers, schedules. Ctrl-C stops everything."
        ),
    )
    dev.add_argument("--port", type=int, default=3000, help="HTTP port (0 picks a free one); default 3000")
    dev.add_argument("--host", default="127.0.0.1", help="interface to listen on; default 127.0.0.1")
    dev.add_argument("--data-dir", type=Path, default=Path(".okyaku"), help="local data; default .okyaku")
    dev.add_argument("--template", type=Path, default=Path("template.yaml"), help="SAM template to serve")
    dev.add_argument("--no-demo", action="store_true", help="create the organization without demo records")
    dev.add_argument("--reset", action="store_true", help="delete the local database and start afresh")
    dev.add_argument(
        "--demo-scale",
        type=_positive,
        default=1.0,
        help="size of the demo data relative to the default (200 companies, 350 contacts, 150 deals, "
        "1000 activities, 120 tasks, and a past of 140 closed deals and 160 customers kept or lost with their "
        "activities); below 1 the models may not have enough history and keep the rules prior; default 1",
    )
    dev.add_argument(
        "--retry-delay",
        type=float,
        default=1.0,
        help="seconds before a failed SQS record is retried (doubling each time); default 1",
    )
    dev.add_argument(
        "--http-workers",
        type=_at_least_one,
        default=None,
        help="processes serving the HTTP routes on the one port (queues and schedules stay in the first); "
        "default one per core, at most 4",
    )
    dev.set_defaults(func=run_dev)


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


@dataclass(frozen=True)
class DemoOrganization:
    organization_id: uuid.UUID
    api_key: str
    name: str
    demo_data: bool = True


@contextmanager
def step(label: str) -> Iterator[None]:
    print(f"  {label} ...", flush=True)
    started = time.perf_counter()
    yield
    print(f"  {label}: done in {time.perf_counter() - started:.1f} s", flush=True)


def _raise_keyboard_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_dev(args: argparse.Namespace) -> int:
    # SIGTERM during start-up unwinds like Ctrl-C, so Postgres is stopped too.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    # mangum logs every request too; the runner's own line says more (function, time).
    for noisy in ("pgserver", "alembic.runtime.migration", "mangum.http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    template = args.template.resolve()
    if not template.is_file():
        raise BadRequest(f"no template at {template} (run from the project root or pass --template)")
    data_dir: Path = args.data_dir.resolve()
    pg_dir = data_dir / "pg"
    demo_file = data_dir / "demo.json"
    data_dir.mkdir(parents=True, exist_ok=True)
    ignore = data_dir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# local data of `okyaku dev`: never committed\n*\n")

    print(f"Okyaku dev: data in {data_dir}", flush=True)
    if args.reset:
        with step("Deleting the local database"):
            _reset(pg_dir, demo_file)

    server: Any = None
    catcher: Any = None
    try:
        from okyaku.local.postgres import prepare_database, start_embedded_postgres

        with step("Starting embedded Postgres + pgvector"):
            owner_url = start_embedded_postgres(pg_dir)
            server = _server_handle(pg_dir)
        with step("Running migrations"):
            local = prepare_database(owner_url)
        os.environ["DATABASE_URL"] = local.app_url
        os.environ["DATABASE_MIGRATION_URL"] = local.owner_url
        _ensure_mailbox_key(data_dir)
        from okyaku.config import get_settings

        get_settings.cache_clear()

        catcher = _local_mail(data_dir)
        get_settings.cache_clear()

        from okyaku.local.http_workers import default_http_workers
        from okyaku.local.runner import LocalRunner

        runner = LocalRunner(
            template,
            args.port,
            host=args.host,
            retry_delay_s=args.retry_delay,
            http_workers=args.http_workers or default_http_workers(),
        )
        try:
            runner.start()
        except OSError as error:
            raise BadRequest(f"cannot listen on {args.host}:{args.port}: {error.strerror}") from error
        except RuntimeError as error:  # an HTTP worker did not start; its log says why
            raise BadRequest(str(error)) from error
        first_run = None
        try:
            demo = _demo_organization(demo_file, seed=not args.no_demo, scale=args.demo_scale, publisher=runner)
            _print_banner(runner, demo, demo_file, catcher)
            if demo.demo_data:
                first_run = _start_first_run(runner, demo, data_dir)
            runner.serve_until_signal()
        finally:
            if first_run is not None:
                first_run.request_stop()
            runner.stop()
    except KeyboardInterrupt:
        print("\nStopping.", flush=True)
    finally:
        if catcher is not None:
            catcher.stop()
        if server is not None:
            _stop_postgres(server)
    print("Okyaku dev stopped.", flush=True)
    return 0


def _server_handle(pg_dir: Path) -> Any:
    import pgserver

    # The handle start_embedded_postgres made; from now on this process stops the server on exit.
    server = pgserver.get_server(str(pg_dir))  # type: ignore[attr-defined]
    server.cleanup_mode = "stop"
    return server


def _stop_postgres(server: Any) -> None:
    try:
        server.cleanup()
        print("  Postgres stopped.", flush=True)
    except Exception as error:  # stopping is best effort; the next start copes with a live server
        logger.warning("could not stop Postgres cleanly: %s", error)


def _reset(pg_dir: Path, demo_file: Path) -> None:
    from okyaku.local.first_run import STATE_FILE

    (demo_file.parent / STATE_FILE).unlink(missing_ok=True)
    if pg_dir.exists():
        import pgserver

        try:
            server = pgserver.get_server(str(pg_dir))  # type: ignore[attr-defined]
            server.cleanup_mode = "delete"
            server.cleanup()
        except Exception as error:  # a broken data dir is exactly what --reset is for
            logger.warning("could not stop the old server: %s", error)
        shutil.rmtree(pg_dir, ignore_errors=True)
    demo_file.unlink(missing_ok=True)


def _demo_organization(
    demo_file: Path, *, seed: bool, scale: float = 1.0, publisher: EventPublisher | None = None
) -> DemoOrganization:
    """The demo organization of an earlier start, or a new one (with demo data unless told not)."""
    from okyaku.db import Database
    from okyaku.local.demo import DEMO_ADMIN_EMAIL, DEMO_ORGANIZATION_NAME, DemoSize, seed_demo_data
    from okyaku.runtime import Runtime
    from okyaku.tenancy import create_organization, list_organization_ids

    runtime = Runtime(publisher=publisher)  # the runner's queues: it is already listening
    if demo_file.exists():
        saved = json.loads(demo_file.read_text())
        organization_id = uuid.UUID(saved["organization_id"])
        if organization_id in list_organization_ids(runtime.db):
            print(f"  Reusing the demo organization from {demo_file.name}", flush=True)
            runtime.db.dispose()
            return DemoOrganization(organization_id, saved["api_key"], saved["name"], saved.get("demo_data", True))
        print(f"  {demo_file.name} names an organization the database lacks; creating a new one", flush=True)

    db: Database = runtime.db
    with step(f"Creating the organization {DEMO_ORGANIZATION_NAME!r}"):
        org = create_organization(db, DEMO_ORGANIZATION_NAME, DEMO_ADMIN_EMAIL, "Demo Admin")
    if seed:
        with step("Creating demo data"):
            summary = seed_demo_data(
                runtime,
                org.organization_id,
                org.user_id,
                size=DemoSize().scaled(scale),
                progress=lambda what: print(f"    - {what}", flush=True),
            )
        print(
            f"    {summary.companies} companies, {summary.contacts} contacts, {summary.deals} deals "
            f"({summary.deals_won} won, {summary.deals_lost} lost, {summary.stage_changes} stage changes), "
            f"{summary.activities} activities, {summary.tasks} tasks",
            flush=True,
        )
    demo_file.write_text(
        json.dumps(
            {
                "organization_id": str(org.organization_id),
                "api_key": org.api_key,
                "name": DEMO_ORGANIZATION_NAME,
                "admin_email": DEMO_ADMIN_EMAIL,
                "demo_data": seed,
                "created_at": datetime.now(UTC).isoformat(),
            },
            indent=2,
        )
        + "\n"
    )
    demo_file.chmod(0o600)
    runtime.db.dispose()
    return DemoOrganization(org.organization_id, org.api_key, DEMO_ORGANIZATION_NAME, seed)


def _start_first_run(runner: Any, demo: DemoOrganization, data_dir: Path) -> Any:
    """The demo organization's first AI work (models, scan, insights, cards, analyses), in the
    background once the console serves; steps done at an earlier start are not done again."""
    from okyaku.local.first_run import STATE_FILE, start_first_run

    return start_first_run(runner.functions, demo.organization_id, data_dir / STATE_FILE)


def _local_mail(data_dir: Path) -> Any:
    """Without SMTP_HOST, a local SMTP catcher (aiosmtpd) takes every e-mail, so nothing reaches real
    people; the functions (and the HTTP worker processes, which inherit the environment) send to it.
    With SMTP_HOST set, that server is used and None is returned."""
    if os.environ.get("SMTP_HOST"):
        return None
    from okyaku.email.catcher import SmtpCatcher

    catcher = SmtpCatcher(folder=data_dir / "mail").start()
    os.environ.update(
        {"SMTP_HOST": catcher.host, "SMTP_PORT": str(catcher.port), "SMTP_STARTTLS": "false", "EMAIL_TRANSPORT": "smtp"}
    )
    # the anomaly notifications' sender; the CRM's e-mails go out from each user's address
    os.environ.setdefault("NOTIFICATIONS_EMAIL_FROM", "okyaku@localhost")
    return catcher


def _print_banner(runner: Any, demo: DemoOrganization, demo_file: Path, catcher: Any = None) -> None:
    template = runner.template
    if catcher is not None:
        mail = (
            f"  E-mail: caught on {catcher.host}:{catcher.port} and kept in {catcher.handler.folder}, "
            f"never delivered; see {runner.url}/console/outbox (set SMTP_HOST to send for real)"
        )
    else:
        mail = f"  E-mail: sent through {os.environ.get('SMTP_HOST')}:{os.environ.get('SMTP_PORT', '587')}"
    lines = [
        "",
        f"Okyaku is running at {runner.url} ({runner.http_workers} HTTP processes)",
        f"  Organization: {demo.name} ({demo.organization_id})",
        f"  API key: {demo.api_key}",
        f"  (saved in {demo_file}; a later start reuses the data and this key)",
        "",
        "  Try it:",
        f'    curl -H "Authorization: Bearer {demo.api_key}" "{runner.url}/api/v1/contacts?limit=5"',
        f"  API docs: {runner.url}/api/v1/docs",
        mail,
        f"  Runner token: {runner.admin_token}",
        "  Runner status (queues, dead letters, schedules), with the runner token:",
        f'    curl -H "Authorization: Bearer {runner.admin_token}" {runner.url}/_okyaku/status',
        "",
        "  Functions:",
    ]
    for logical_id in template.functions:
        triggers = []
        routes = [r for r in template.routes if r.function_id == logical_id]
        if routes:
            triggers.append(f"{len(routes)} HTTP routes")
        triggers += [f"SQS {q.queue}" for q in template.sqs_sources if q.function_id == logical_id]
        triggers += [f"schedule {s.expression}" for s in template.schedules if s.function_id == logical_id]
        lines.append(f"    {logical_id}: {', '.join(triggers) or 'no local trigger'}")
    lines += ["", "Press Ctrl-C to stop.", ""]
    print("\n".join(lines), flush=True)


def _ensure_mailbox_key(data_dir: Path) -> None:
    """The mailbox passwords' key, made once per data folder (kept beside the database it protects)
    unless MAILBOX_ENCRYPTION_KEY is set: connecting a mailbox works out of the box locally."""
    if os.environ.get("MAILBOX_ENCRYPTION_KEY"):
        return
    path = data_dir / "mailbox-encryption.key"
    if not path.exists():
        try:
            from cryptography.fernet import Fernet
        except ImportError:  # without okyaku[mailboxes] the Mailboxes page says what is missing
            return
        path.write_text(Fernet.generate_key().decode())
        path.chmod(0o600)
    os.environ["MAILBOX_ENCRYPTION_KEY"] = path.read_text().strip()
