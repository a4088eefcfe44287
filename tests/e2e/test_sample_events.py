"""Every sample event in events/ drives its handler, in-process, against the test database.

events/<code dir>/http_*.json  -> the HTTP function with that CodeUri (API key put in at test time)
events/<code dir>/schedule*.json -> the scheduled function with that CodeUri
events/sqs_*.json              -> every consumer of the change-event queue
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from okyaku.cli.invoke import with_api_key
from okyaku.config import Settings, get_settings
from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import CallbackPublisher, decode_sqs_body, use_local_publisher
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import FunctionHost, QueuedMessage, sqs_record
from okyaku.local.template import Template, parse_template
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = parse_template(ROOT / "template.yaml")
RUNNER_TEMPLATE = parse_template(ROOT / "tests" / "data" / "runner" / "template.yaml")


def load(path: Path) -> Any:
    return json.loads(path.read_text())


def kind_of(event: Any) -> str:
    if isinstance(event, dict) and event.get("version") == "2.0" and "requestContext" in event:
        return "http"
    if isinstance(event, dict) and event.get("detail-type") == "Scheduled Event":
        return "schedule"
    if isinstance(event, dict) and event.get("Records", [{}])[0].get("eventSource") == "aws:sqs":
        return "sqs"
    raise AssertionError(f"unknown event shape: {str(event)[:200]}")


def functions_for(path: Path, template: Template) -> list[str]:
    """Which functions of the template a sample event is for."""
    relative = path.relative_to(EVENTS)
    if len(relative.parts) > 1:
        return [spec.logical_id for spec in template.functions.values() if spec.code_dir.name == relative.parts[0]]
    if kind_of(load(path)) == "sqs":
        return sorted({s.function_id for s in template.sqs_sources if s.queue in template.change_event_queues})
    return []


def test_every_trigger_of_every_function_has_a_sample_event() -> None:
    """A function added to template.yaml without sample events fails here."""
    samples = {(fn, kind_of(load(p))) for p in EVENTS.rglob("*.json") for fn in functions_for(p, TEMPLATE)}
    needed = {(r.function_id, "http") for r in TEMPLATE.routes}
    needed |= {(s.function_id, "schedule") for s in TEMPLATE.schedules}
    needed |= {(s.function_id, "sqs") for s in TEMPLATE.sqs_sources}
    assert needed - samples == set()


def test_every_sample_event_belongs_to_a_function_or_the_change_event_queue() -> None:
    for path in EVENTS.rglob("*.json"):
        kind = kind_of(load(path))
        if kind == "sqs" and path.parent == EVENTS:
            continue  # the change-event queue's shape; consumers may come and go
        assert functions_for(path, TEMPLATE), f"{path} names no function of template.yaml"


# --- the handlers, in-process ------------------------------------------------------------------


@pytest.fixture
def function_env(pg: LocalDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ChangeEvent]]:
    """The environment the functions read at import, and a local publisher that keeps what it gets."""
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("DATABASE_MIGRATION_URL", pg.owner_url)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    get_settings.cache_clear()
    published: list[ChangeEvent] = []
    use_local_publisher(CallbackPublisher(published.extend))
    yield published
    use_local_publisher(None)
    get_settings.cache_clear()


@pytest.fixture
def hosts() -> Iterator[dict[str, FunctionHost]]:
    """Each test imports the handlers afresh, so they read this test's environment."""
    started: dict[str, FunctionHost] = {}

    class Hosts(dict[str, FunctionHost]):
        def __missing__(self, logical_id: str) -> FunctionHost:
            template = TEMPLATE if logical_id in TEMPLATE.functions else RUNNER_TEMPLATE
            host = FunctionHost(template.functions[logical_id], concurrency=1)
            started[logical_id] = host
            self[logical_id] = host
            return host

    yield Hosts()
    for host in started.values():
        host.shutdown()


def http_samples() -> list[Path]:
    return sorted(p for p in EVENTS.rglob("*.json") if kind_of(load(p)) == "http")


def test_the_http_samples_create_then_list_a_contact(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], db: Database
) -> None:
    org = create_organization(db, f"Samples {uuid.uuid4().hex[:6]}", "admin@samples.example")
    (crm_api,) = functions_for(EVENTS / "crm_api" / "http_create_contact.json", TEMPLATE)

    create = with_api_key(load(EVENTS / "crm_api" / "http_create_contact.json"), org.api_key)
    sent = json.loads(create["body"])
    response = hosts[crm_api].invoke(create)
    assert response["statusCode"] == 201, response
    created = json.loads(response["body"])
    assert {k: created[k] for k in ("first_name", "last_name", "email", "lifecycle_stage", "source")} == {
        k: sent[k] for k in ("first_name", "last_name", "email", "lifecycle_stage", "source")
    }
    assert created["custom_properties"] == sent["custom_properties"]
    assert response["headers"]["location"] == f"/api/v1/contacts/{created['id']}"
    assert [(e.entity_type, e.operation, str(e.entity_id)) for e in function_env] == [
        ("contact", "created", created["id"])
    ]

    listing = with_api_key(load(EVENTS / "crm_api" / "http_list_contacts.json"), org.api_key)
    response = hosts[crm_api].invoke(listing)
    assert response["statusCode"] == 200, response
    page = json.loads(response["body"])
    assert [c["id"] for c in page["data"]] == [created["id"]]  # this organization's only lead

    # The sample's placeholder key is refused with the project's error shape.
    response = hosts[crm_api].invoke(load(EVENTS / "crm_api" / "http_list_contacts.json"))
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]["code"] == "unauthorized"


def test_every_http_sample_answers_with_a_real_key(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], db: Database
) -> None:
    org = create_organization(db, f"Samples {uuid.uuid4().hex[:6]}", "admin@samples.example")
    for path in http_samples():
        for function_id in functions_for(path, TEMPLATE):
            event = with_api_key(load(path), org.api_key)
            route = TEMPLATE.match_route(event["requestContext"]["http"]["method"], event["rawPath"])
            assert route is not None and route[0].route_key == event["routeKey"], path
            response = hosts[function_id].invoke(event)
            assert response["statusCode"] < 400, (path, response)


def test_the_schedule_sample_makes_the_relay_publish_pending_events(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], db: Database, settings: Settings
) -> None:
    org = create_organization(db, f"Relay {uuid.uuid4().hex[:6]}", "admin@relay.example")
    # Written with no publisher at all: the events stay pending in the outbox.
    use_local_publisher(None)
    offline = Runtime(settings, db=db, publisher=None)
    from okyaku.crm.api import contacts
    from okyaku.crm.schemas import ContactCreate

    with offline.transaction(org.organization_id) as session:
        contact = contacts.create(session, ContactCreate(first_name="Pending", email="pending@relay.example"))
    use_local_publisher(CallbackPublisher(function_env.extend))

    (relay,) = functions_for(EVENTS / "outbox_relay" / "schedule.json", TEMPLATE)
    summary = hosts[relay].invoke(load(EVENTS / "outbox_relay" / "schedule.json"))
    assert summary["published"] == len(function_env) >= 1
    assert summary["failed"] == 0
    mine = [e for e in function_env if e.organization_id == org.organization_id]
    assert [(e.entity_type, e.entity_id, e.operation) for e in mine] == [("contact", contact.id, "created")]
    with db.organization_scope(org.organization_id) as session:
        rows = session.scalars(select(OutboxEvent)).all()
        assert [row.published_at is not None for row in rows] == [True]

    # A second run finds nothing left to publish for this organization.
    function_env.clear()
    hosts[relay].invoke(load(EVENTS / "outbox_relay" / "schedule.json"))
    assert [e for e in function_env if e.organization_id == org.organization_id] == []


def consumers_of_change_events() -> Sequence[tuple[Template, str]]:
    """The change-event consumers of template.yaml, plus the runner tests' recorder (always one)."""
    found = [(TEMPLATE, fn) for fn in functions_for(EVENTS / "sqs_change_event.json", TEMPLATE)]
    return [*found, (RUNNER_TEMPLATE, "RecorderFunction")]


@pytest.mark.parametrize(("template", "function_id"), consumers_of_change_events(), ids=lambda v: str(v)[:40])
def test_the_sqs_sample_drives_every_change_event_consumer(
    template: Template,
    function_id: str,
    function_env: list[ChangeEvent],
    hosts: dict[str, FunctionHost],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RECORDER_OUTPUT", str(tmp_path / "recorded.jsonl"))
    sample = load(EVENTS / "sqs_change_event.json")
    result = hosts[function_id].invoke(sample)
    # A consumer that reports batch item failures must not fail the sample's valid records.
    assert not (result or {}).get("batchItemFailures"), result
    if function_id == "RecorderFunction":
        (line,) = (tmp_path / "recorded.jsonl").read_text().splitlines()
        (record,) = json.loads(line)["records"]
        change = decode_sqs_body(sample["Records"][0]["body"])
        assert (record["entity_type"], record["entity_id"], record["operation"]) == (
            change.entity_type,
            str(change.entity_id),
            change.operation,
        )


def test_the_sqs_sample_has_the_shape_the_runner_delivers() -> None:
    (sample,) = load(EVENTS / "sqs_change_event.json")["Records"]
    change = decode_sqs_body(sample["body"])
    message = QueuedMessage("id", sample["body"], sample["messageAttributes"], 0, 1)
    delivered = sqs_record(message, "ChangeEventsQueue")
    assert set(sample) == set(delivered)
    assert set(sample["attributes"]) == set(delivered["attributes"])
    assert sample["eventSourceARN"] == delivered["eventSourceARN"]
    assert sample["messageAttributes"]["entity_type"]["stringValue"] == change.entity_type
    assert sample["md5OfBody"] == delivered["md5OfBody"]
