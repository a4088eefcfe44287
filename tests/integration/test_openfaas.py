"""OpenFaaS: stack.yml in step with template.yaml, the function folders build.py assembles, and the
adapters called in-process with OpenFaaS-shaped requests (HTTP through the gateway, the
cron-connector, a queue connector) in front of the same Lambda handlers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.events.envelope import eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.local.lambda_host import FunctionHost
from okyaku.local.postgres import LocalDatabase
from okyaku.local.template import parse_template
from okyaku.openfaas import CRON_TOPIC, Request, adapt, signed_trigger_headers, unix_cron
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.support.publishers import CollectingPublisher

ROOT = Path(__file__).resolve().parents[2]
OPENFAAS = ROOT / "infrastructure" / "openfaas"
TEMPLATE = parse_template(ROOT / "template.yaml")
TRIGGER_SECRET = "openfaas-trigger-secret-for-tests"


def load_build_module() -> Any:
    spec = importlib.util.spec_from_file_location("okyaku_openfaas_build", OPENFAAS / "build.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stack() -> dict[str, Any]:
    data = yaml.safe_load((OPENFAAS / "stack.yml").read_text())
    assert isinstance(data, dict)
    return data


def name_of(logical_id: str) -> str:
    return str(TEMPLATE.functions[logical_id].code_dir.name.replace("_", "-"))


# --- stack.yml ---------------------------------------------------------------------------------


def test_stack_yml_has_every_function_of_the_template_with_its_triggers() -> None:
    functions = stack()["functions"]
    assert set(functions) == {name_of(i) for i in TEMPLATE.functions}
    shared_environment = yaml.safe_load((OPENFAAS / "env.yml").read_text())["environment"]
    for logical_id, spec in TEMPLATE.functions.items():
        function = functions[name_of(logical_id)]
        assert function["lang"] == "python3-http-debian"
        assert function["handler"] == f"./build/{name_of(logical_id)}"
        assert function["environment_file"] == ["env.yml"]
        assert "okyaku-trigger-secret" in function.get("secrets", []), "triggers are verified with it"
        environment = {**shared_environment, **function["environment"]}
        assert environment["OKYAKU_FUNCTION"] == logical_id
        assert environment["OKYAKU_TIMEOUT_S"] == str(spec.timeout_s)
        for watchdog in ("exec_timeout", "read_timeout", "write_timeout"):
            assert environment[watchdog] == f"{spec.timeout_s}s"
        # The template's variables: parameters (the cluster's values) and the function's own
        # literals (the same values); AWS resources made by the stack (its run queue) excepted.
        for name, value in spec.environment.items():
            if isinstance(value, str | int | float):
                assert str(environment[name]) == str(value), (logical_id, name)
            elif not (isinstance(value, dict) and TEMPLATE.resolve(value) is None and name != "CHANGE_EVENTS_BUS_NAME"):
                assert name in environment, (logical_id, name)

        annotations = function.get("annotations", {})
        topics = set(annotations.get("topic", "").split(",")) - {""}
        schedules = [s for s in TEMPLATE.schedules if s.function_id == logical_id]
        queues = {s.queue for s in TEMPLATE.sqs_sources if s.function_id == logical_id}
        if schedules:
            (schedule,) = schedules  # the cron-connector gives a function one schedule
            assert CRON_TOPIC in topics
            assert annotations["schedule"] == unix_cron(schedule.expression)
            assert environment["OKYAKU_SCHEDULE_RULE"] == schedule.rule_name
        else:
            assert CRON_TOPIC not in topics and "schedule" not in annotations
        assert topics - {CRON_TOPIC} == queues, logical_id


@pytest.mark.parametrize(
    ("expression", "cron"),
    [
        ("rate(1 minute)", "* * * * *"),
        ("rate(15 minutes)", "*/15 * * * *"),
        ("rate(1 hour)", "0 * * * *"),
        ("rate(6 hours)", "0 */6 * * *"),
        ("rate(1 day)", "0 0 * * *"),
        ("cron(0 2 * * ? *)", "0 2 * * *"),
        ("cron(0 9 ? * MON-FRI *)", "0 9 * * MON-FRI"),
        ("cron(0 9 ? * 2-6 *)", "0 9 * * 1-5"),  # EventBridge's 1 is Sunday, cron's 0
        ("cron(0 12 1 JAN,JUL ? *)", "0 12 1 JAN,JUL *"),
    ],
)
def test_eventbridge_schedules_become_five_field_crons(expression: str, cron: str) -> None:
    assert unix_cron(expression) == cron


@pytest.mark.parametrize("expression", ["rate(7 minutes)", "cron(0 2 * * ? 2027)", "cron(0 2 L * ? *)", "every day"])
def test_schedules_five_field_cron_cannot_say_are_refused(expression: str) -> None:
    with pytest.raises(ValueError):
        unix_cron(expression)


# --- build.py ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folders: dict[str, Path] = load_build_module().build(tmp_path_factory.mktemp("openfaas"))
    return folders


def test_build_assembles_one_folder_per_function(built: dict[str, Path]) -> None:
    assert set(built) == set(stack()["functions"])
    for logical_id, spec in TEMPLATE.functions.items():
        folder = built[name_of(logical_id)]
        assert (folder / "app.py").read_text() == (spec.code_dir / "app.py").read_text()
        assert (folder / "handler.py").read_text() == (OPENFAAS / "handler.py").read_text()
        assert (folder / "okyaku" / "openfaas.py").is_file()
        assert not list(folder.rglob("__pycache__"))
        requirements = (folder / "requirements.txt").read_text()
        assert "fastapi" in requirements and "boto3" in requirements
        ml_layer = {"ScoringFunction", "ForecastingFunction", "AnomaliesFunction", "ConsoleFunction"}
        assert ("scikit-learn" in requirements) == (logical_id in ml_layer)
        assert ("ruptures" in requirements and "statsmodels" in requirements) == (logical_id == "AnomaliesFunction")
        assert ("mcp>=" in requirements) == (logical_id == "McpFunction")


def test_a_built_handler_answers_in_a_fresh_interpreter(built: dict[str, Path], pg: LocalDatabase) -> None:
    """handler.py as the template imports it: ``from function import handler`` in /home/app."""
    folder = built["crm-api"]
    home = folder.parent / "home-app"
    home.mkdir(exist_ok=True)
    if not (home / "function").exists():
        (home / "function").symlink_to(folder)
    script = (
        "import json\n"
        "from function import handler\n"
        "from okyaku.openfaas import Request\n"
        "response = handler.handle(Request(method='GET', path='/api/v1/health'), None)\n"
        "print(json.dumps(response))\n"
    )
    environment = {**os.environ, "DATABASE_URL": pg.app_url, "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=home, env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    response = json.loads(result.stdout.strip().splitlines()[-1])
    assert response["statusCode"] == 200 and json.loads(response["body"])["status"] == "ok"


# --- the adapters, in-process ---------------------------------------------------------------------


@pytest.fixture
def handlers(pg: LocalDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Each function's OpenFaaS handle(), wrapping its real Lambda handler."""
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.delenv("CHANGE_EVENTS_BUS_NAME", raising=False)
    monkeypatch.setenv("OPENFAAS_TRIGGER_SECRET", TRIGGER_SECRET)
    get_settings.cache_clear()
    published: list[ChangeEvent] = []
    monkeypatch.setattr(Runtime, "hosted_publisher", CollectingPublisher(published))
    hosts = {i: FunctionHost(spec, concurrency=1) for i, spec in TEMPLATE.functions.items()}
    adapted = {name_of(i): adapt(invoker(host), function_name=i) for i, host in hosts.items()}
    yield {"handle": adapted, "published": published}
    for host in hosts.values():
        host.shutdown()
    get_settings.cache_clear()


def signed(topic: str, body: bytes = b"") -> dict[str, str]:
    """The headers of a trigger as ``python -m okyaku.openfaas fire`` (or a signing connector) sends it."""
    return signed_trigger_headers(TRIGGER_SECRET, topic, body)


def invoker(host: FunctionHost) -> Any:
    """The handler on its host's worker thread (the host makes the Lambda context)."""
    return lambda event, _context: host.invoke(event)


def change(organization_id: uuid.UUID, entity_type: str = "deal") -> ChangeEvent:
    return ChangeEvent(
        event_id=uuid.uuid4(),
        organization_id=organization_id,
        entity_type=entity_type,
        entity_id=uuid.uuid4(),
        operation="updated",
        changed_fields=["amount"],
        version=2,
        occurred_at=datetime.now(UTC),
    )


def test_http_requests_through_the_gateway_reach_the_api(handlers: dict[str, Any], db: Database) -> None:
    handle = handlers["handle"]["crm-api"]
    org = create_organization(db, f"Faas {uuid.uuid4().hex[:6]}", "admin@faas.example")
    auth = {"Authorization": f"Bearer {org.api_key}", "Content-Type": "application/json", "Host": "gw:8080"}
    created = handle(
        Request(
            "POST", "/api/v1/contacts", json.dumps({"first_name": "Ada", "email": "ada@faas.example"}).encode(), auth
        ),
        None,
    )
    assert created["statusCode"] == 201, created
    contact = json.loads(created["body"])
    assert ("location", f"/api/v1/contacts/{contact['id']}") in created["headers"]
    assert [(e.entity_type, str(e.entity_id)) for e in handlers["published"]] == [("contact", contact["id"])]

    listing = handle(Request("GET", "/api/v1/contacts", headers=auth, query={"limit": "5"}), None)
    assert listing["statusCode"] == 200 and [c["id"] for c in json.loads(listing["body"])["data"]] == [contact["id"]]
    invalid = handle(Request("POST", "/api/v1/contacts", b'{"email": "nope"}', auth), None)
    assert invalid["statusCode"] == 422 and json.loads(invalid["body"])["error"]["details"]
    anonymous = handle(Request("GET", "/api/v1/contacts"), None)
    assert anonymous["statusCode"] == 401 and json.loads(anonymous["body"])["error"]["code"] == "unauthorized"


def test_the_cron_connector_runs_the_scheduled_job(handlers: dict[str, Any]) -> None:
    response = handlers["handle"]["outbox-relay"](Request("POST", "/", headers=signed(CRON_TOPIC)), None)
    assert response["statusCode"] == 200, response
    report = json.loads(response["body"])
    assert report["failed"] == 0 and "published" in report


def test_an_unsigned_trigger_reaches_no_handler(handlers: dict[str, Any]) -> None:
    # What the stock cron-connector (or anyone reaching the gateway) sends: no signature.
    for name, topic in (("outbox-relay", CRON_TOPIC), ("embeddings", "EmbeddingsQueue")):
        response = handlers["handle"][name](Request("POST", "/", b"{}", {"X-Topic": topic}), None)
        assert response["statusCode"] == 401, (name, response)
        assert json.loads(response["body"])["error"]["code"] == "invalid_trigger_signature"
    plain = handlers["handle"]["outbox-relay"](Request("GET", "/"), None)
    assert plain["statusCode"] == 404 and json.loads(plain["body"])["error"]["code"] == "not_found"


def test_a_queue_connector_delivers_change_events_to_the_consumers(handlers: dict[str, Any]) -> None:
    unknown = uuid.uuid4()  # no such organization: nothing to do, acknowledged
    bodies = {
        "raw": change(unknown).model_dump_json().encode(),
        "eventbridge": json.dumps(eventbridge_envelope(change(unknown), account="1", region="us-east-1")).encode(),
    }
    # the consumers of the change-event bus (not the functions' own work queues: agent runs, scans)
    routed = {queue for rule in TEMPLATE.event_rules for queue in rule.queue_targets}
    for function_id in {s.function_id for s in TEMPLATE.sqs_sources if s.queue in routed}:
        (queue,) = [s.queue for s in TEMPLATE.sqs_sources if s.function_id == function_id and s.queue in routed]
        handle = handlers["handle"][name_of(function_id)]
        for shape, body in bodies.items():
            response = handle(Request("POST", "/", body, signed(queue, body) | {"X-Call-Id": shape}), None)
            assert response["statusCode"] == 200, (function_id, shape, response)
        broken_body = b'{"not": "an event"}'
        broken = handle(Request("POST", "/", broken_body, signed(queue, broken_body) | {"X-Call-Id": "m-1"}), None)
        # Not acknowledged: the connector leaves the message for redelivery (then its DLQ).
        assert broken["statusCode"] == 500 and json.loads(broken["body"])["failed"] == ["m-1"], function_id


def test_a_queue_connector_delivers_agent_runs(handlers: dict[str, Any]) -> None:
    body = json.dumps({"organization_id": str(uuid.uuid4()), "execution_id": str(uuid.uuid4())}).encode()
    response = handlers["handle"]["agents"](Request("POST", "/", body, signed("AgentRunsQueue", body)), None)
    assert response["statusCode"] == 200, response  # an unknown run is nothing to do


class TemplateEvent:
    """The event python3-http-debian's index.py builds from Flask's request (werkzeug)."""

    def __init__(self, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> None:
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request as WerkzeugRequest

        request = WerkzeugRequest(EnvironBuilder(path=url, method=method, headers=headers, data=body).get_environ())
        self.body = request.get_data()
        self.headers = request.headers
        self.method = request.method
        self.query = request.args
        self.path = request.path


def test_werkzeug_requests_as_the_template_passes_them(handlers: dict[str, Any], db: Database) -> None:
    from okyaku.openfaas import http_event

    org = create_organization(db, f"Faas {uuid.uuid4().hex[:6]}", "admin@faas.example")
    event = TemplateEvent(
        "GET",
        "/api/v1/contacts?limit=5&tag=a&tag=b",
        {"Authorization": f"Bearer {org.api_key}", "Cookie": "a=1; b=2", "X-Forwarded-For": "203.0.113.9"},
    )
    lambda_event = http_event(event)
    assert lambda_event["rawQueryString"] == "limit=5&tag=a&tag=b"
    assert lambda_event["queryStringParameters"] == {"limit": "5", "tag": "a,b"}
    assert lambda_event["cookies"] == ["a=1", "b=2"]
    assert lambda_event["requestContext"]["http"]["sourceIp"] == "203.0.113.9"
    assert lambda_event["routeKey"] == "$default"
    event = TemplateEvent("GET", "/api/v1/contacts?limit=5", {"Authorization": f"Bearer {org.api_key}"})
    response = handlers["handle"]["crm-api"](event, None)
    assert response["statusCode"] == 200 and json.loads(response["body"])["data"] == []
    cron = handlers["handle"]["outbox-relay"](TemplateEvent("POST", "/", signed(CRON_TOPIC)), None)
    assert cron["statusCode"] == 200
