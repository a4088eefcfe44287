"""Every sample event in events/ drives its handler, in-process, against the test database.

events/<code dir>/http_*.json     -> the HTTP function with that CodeUri (API key put in at test time)
events/<code dir>/schedule*.json  -> the scheduled function with that CodeUri
events/<code dir>/sqs_*.json      -> the queue consumer with that CodeUri, its record shaped as
                                     deployed (EventBridge's envelope when a bus rule feeds the queue)
events/sqs_*.json                 -> every queue consumer: the raw change event, as one queue wired
                                     directly (CHANGE_EVENTS_QUEUE_URL) delivers it
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from okyaku.cli.invoke import with_api_key
from okyaku.config import Settings, get_settings
from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.events import decode_change_event
from okyaku.events.model import ChangeEvent
from okyaku.lambda_events import queue_arn, sqs_record
from okyaku.local.lambda_host import FunctionHost
from okyaku.local.postgres import LocalDatabase
from okyaku.local.sqs import QueuedMessage
from okyaku.local.template import Template, parse_template
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.support.publishers import CollectingPublisher

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TEMPLATE = parse_template(ROOT / "template.yaml")


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


def change_event_queues(template: Template) -> set[str]:
    """Queues that change events reach: targets of the change-event bus's rules, or direct."""
    routed = {q for bus in template.change_event_buses for rule in template.rules_on(bus) for q in rule.queue_targets}
    return routed | set(template.change_event_queues)


def functions_for(path: Path, template: Template) -> list[str]:
    """Which functions of the template a sample event is for: those of its folder; a change
    event at the top is for every change-event consumer."""
    relative = path.relative_to(EVENTS)
    if len(relative.parts) < 2:
        if kind_of(load(path)) != "sqs":
            return []
        return sorted({s.function_id for s in template.sqs_sources if s.queue in change_event_queues(template)})
    return [spec.logical_id for spec in template.functions.values() if spec.code_dir.name == relative.parts[0]]


def is_raw(path: Path) -> bool:
    return path.parent == EVENTS


def samples(kind: str) -> list[Path]:
    return sorted(p for p in EVENTS.rglob("*.json") if kind_of(load(p)) == kind)


def test_every_trigger_of_every_function_has_a_sample_event() -> None:
    """A function added to template.yaml without sample events fails here."""
    found = {(fn, kind_of(load(p))) for p in EVENTS.rglob("*.json") for fn in functions_for(p, TEMPLATE)}
    needed = {(r.function_id, "http") for r in TEMPLATE.routes}
    needed |= {(s.function_id, "schedule") for s in TEMPLATE.schedules}
    needed |= {(s.function_id, "sqs") for s in TEMPLATE.sqs_sources}
    assert needed - found == set()


def test_every_sample_event_belongs_to_a_trigger_of_its_function() -> None:
    for path in EVENTS.rglob("*.json"):
        event = load(path)
        kind = kind_of(event)
        if is_raw(path):
            assert kind == "sqs" and functions_for(path, TEMPLATE), path
            continue
        (function_id,) = functions_for(path, TEMPLATE)
        if kind == "http":
            route = TEMPLATE.match_route(event["requestContext"]["http"]["method"], event["rawPath"])
            assert route is not None and route[0].function_id == function_id, path
            assert route[0].route_key == event["routeKey"] == event["requestContext"]["routeKey"], path
        elif kind == "schedule":
            rules = {rule_arn(r.rule_name) for r in TEMPLATE.schedules if r.function_id == function_id}
            assert set(event["resources"]) <= rules, path
        else:
            queues = {queue_arn(s.queue) for s in TEMPLATE.sqs_sources if s.function_id == function_id}
            assert {r["eventSourceARN"] for r in event["Records"]} <= queues, path


def rule_arn(rule_name: str) -> str:
    return f"arn:aws:events:us-east-1:123456789012:rule/{rule_name}"


def test_sqs_samples_carry_what_the_deployed_wiring_delivers() -> None:
    """A queue fed by a bus rule gets EventBridge's envelope (matching the rule), one fed directly
    the raw event; either way the record has the shape Lambda (and the local runner) delivers."""
    for path in samples("sqs"):
        for record in load(path)["Records"]:
            queue = record["eventSourceARN"].rsplit(":", 1)[1]
            body = json.loads(record["body"])
            rules = [rule for rule in TEMPLATE.event_rules if queue in rule.queue_targets]
            if not is_raw(path) and queue not in change_event_queues(TEMPLATE):
                assert "organization_id" in body, path  # a function's own work queue (agent runs)
                continue
            change = decode_change_event(record["body"])
            if is_raw(path):
                assert body == json.loads(change.model_dump_json()), path
                assert record["messageAttributes"]["entity_type"]["stringValue"] == change.entity_type
            elif rules:
                assert any(rule.matches(body) for rule in rules), path
                assert body["detail-type"] == "CRM Record Changed" and body["detail"]["entity_id"] == str(
                    change.entity_id
                )
            else:
                assert queue in TEMPLATE.change_event_queues, path
                assert body == json.loads(change.model_dump_json())
            message = QueuedMessage(record["messageId"], record["body"], record["messageAttributes"], 0, 1)
            delivered = sqs_record(message, queue)
            assert set(record) == set(delivered), path
            assert set(record["attributes"]) == set(delivered["attributes"]), path
            assert record["md5OfBody"] == delivered["md5OfBody"], path


# --- the handlers, in-process ------------------------------------------------------------------


@pytest.fixture
def function_env(pg: LocalDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ChangeEvent]]:
    """The environment the functions read at import, and a local publisher that keeps what it gets."""
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("DATABASE_MIGRATION_URL", pg.owner_url)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    get_settings.cache_clear()
    published: list[ChangeEvent] = []
    monkeypatch.setattr(Runtime, "hosted_publisher", CollectingPublisher(published))
    yield published
    get_settings.cache_clear()


@pytest.fixture
def hosts() -> Iterator[dict[str, FunctionHost]]:
    """Each test imports the handlers afresh, so they read this test's environment."""
    started: dict[str, FunctionHost] = {}

    class Hosts(dict[str, FunctionHost]):
        def __missing__(self, logical_id: str) -> FunctionHost:
            host = FunctionHost(TEMPLATE.functions[logical_id], concurrency=1)
            started[logical_id] = host
            self[logical_id] = host
            return host

    yield Hosts()
    for host in started.values():
        host.shutdown()


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
    for path in samples("http"):
        (function_id,) = functions_for(path, TEMPLATE)
        response = hosts[function_id].invoke(with_api_key(load(path), org.api_key))
        assert response["statusCode"] < 400, (path, response)
        if function_id == "ConsoleFunction":  # the web console answers pages, redirects and assets
            assert response["headers"]["content-type"].startswith(("text/html", "text/javascript")), path
        else:
            assert response["headers"]["content-type"].startswith("application/json"), path


def test_the_schedule_sample_makes_the_relay_publish_pending_events(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], db: Database, settings: Settings
) -> None:
    org = create_organization(db, f"Relay {uuid.uuid4().hex[:6]}", "admin@relay.example")
    # Written with no publisher at all: the events stay pending in the outbox.
    Runtime.hosted_publisher = None
    offline = Runtime(settings, db=db, publisher=None)
    from okyaku.crm.api import contacts
    from okyaku.crm.schemas import ContactCreate

    with offline.transaction(org.organization_id) as session:
        contact = contacts.create(session, ContactCreate(first_name="Pending", email="pending@relay.example"))
    Runtime.hosted_publisher = CollectingPublisher(function_env)

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


def organization_of(body: str) -> uuid.UUID:
    """The organization a message is for: a change event's, or a work message's own field."""
    try:
        return decode_change_event(body).organization_id
    except ValueError:
        return uuid.UUID(json.loads(body)["organization_id"])


@pytest.mark.parametrize(
    ("path", "function_id"),
    [(path, function_id) for path in samples("sqs") for function_id in functions_for(path, TEMPLATE)],
    ids=lambda value: str(value.relative_to(EVENTS)) if isinstance(value, Path) else value,
)
def test_a_message_of_an_unknown_organization_is_nothing_to_do(
    path: Path, function_id: str, function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], db: Database
) -> None:
    """The samples' organization does not exist (RLS shows it nothing): acknowledged, not retried."""
    event = load(path)
    for record in event["Records"]:
        organization_id = organization_of(record["body"])
        with db.organization_scope(organization_id) as session:
            assert session.scalars(select(OutboxEvent).limit(1)).first() is None
    result = hosts[function_id].invoke(event)
    assert result == {"batchItemFailures": []}, result
    assert function_env == []  # a consumer writes no CRM record


def test_a_malformed_sqs_record_is_reported_for_redelivery(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost]
) -> None:
    """The other side: what cannot be decoded is not dropped silently (it ends in the DLQ)."""
    for path in samples("sqs"):
        event = load(path)
        record = {**event["Records"][0], "messageId": "broken", "body": '{"detail-type": "x", "detail": {}}'}
        for function_id in functions_for(path, TEMPLATE):
            result = hosts[function_id].invoke({"Records": [event["Records"][0], record]})
            assert result == {"batchItemFailures": [{"itemIdentifier": "broken"}]}, (path, function_id, result)


def test_the_schedule_samples_run_their_jobs(
    function_env: list[ChangeEvent], hosts: dict[str, FunctionHost], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The in-process embedder: no Ollama here, and no network probe for it.
    monkeypatch.setenv("OLLAMA_EMBEDDING_MODEL", "local:all-minilm-l6-v2")
    get_settings.cache_clear()
    for path in samples("schedule"):
        (function_id,) = functions_for(path, TEMPLATE)
        if function_id == "OutboxRelayFunction":
            continue  # test_the_schedule_sample_makes_the_relay_publish_pending_events
        spec = TEMPLATE.functions[function_id]
        if function_id == "EmbeddingsFunction":
            # The backfill works until 20 s before its timeout: 22 s leaves it a short budget.
            spec = dataclasses.replace(spec, timeout_s=22)
        host = FunctionHost(spec, concurrency=1)
        try:
            report = host.invoke(load(path))
        finally:
            host.shutdown()
        assert isinstance(report, dict) and "skipped" not in report, (path, report)
        assert not report.get("errors"), (path, report)
