"""template.yaml parsing (what the local runner serves) and EventBridge schedule expressions."""

from __future__ import annotations

import re
import textwrap
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from okyaku.local.schedule_expressions import (
    ScheduleExpressionError,
    parse_cron,
    parse_rate,
    parse_schedule_expression,
)
from okyaku.local.template import TemplateError, load_template_dict, logical_id_of, parse_template

ROOT = Path(__file__).resolve().parents[2]
CRM_RESOURCES = ["companies", "contacts", "pipelines", "deals", "activities", "tasks", "imports"]


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


def write_template(tmp_path: Path, resources: str, extra: str = "") -> Path:
    (tmp_path / "fn").mkdir(exist_ok=True)
    (tmp_path / "fn" / "app.py").write_text("def handler(event, context):\n    return event\n")
    path = tmp_path / "template.yaml"
    path.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        + textwrap.dedent(extra)
        + "Resources:\n"
        + textwrap.indent(textwrap.dedent(resources), "  ")
    )
    return path


# --- the project's template --------------------------------------------------------------------


def test_cloudformation_tags_become_their_json_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent(
            """
            Resources:
              A:
                Type: X
                Properties:
                  Ref: !Ref Thing
                  Att: !GetAtt Queue.Arn
                  AttList: !GetAtt [Queue, QueueName]
                  Sub: !Sub "https://${Api}.example"
                  Join: !Join ["-", [a, !Ref B]]
                  If: !If [Cond, 1, 2]
            """
        )
    )
    properties = load_template_dict(path)["Resources"]["A"]["Properties"]
    assert properties["Ref"] == {"Ref": "Thing"}
    assert properties["Att"] == {"Fn::GetAtt": ["Queue", "Arn"]}
    assert properties["AttList"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert properties["Sub"] == {"Fn::Sub": "https://${Api}.example"}
    assert properties["Join"] == {"Fn::Join": ["-", ["a", {"Ref": "B"}]]}
    assert properties["If"] == {"Fn::If": ["Cond", 1, 2]}


FUNCTIONS = ROOT / "functions"
CHANGE_EVENTS_BUS = "ChangeEventsBus"


def function_dirs() -> set[str]:
    return {path.parent.name for path in FUNCTIONS.glob("*/app.py")}


def test_every_function_folder_is_a_function_of_the_template() -> None:
    """A function added under functions/ without its template.yaml entry fails here."""
    template = parse_template(ROOT / "template.yaml")
    assert {spec.code_dir.name for spec in template.functions.values()} == function_dirs()
    for spec in template.functions.values():
        assert spec.code_dir == FUNCTIONS / spec.code_dir.name
        assert spec.module_file.is_file(), spec.module_file
        assert spec.attribute == "handler"


def test_the_project_template_describes_the_crm_api_and_the_relay() -> None:
    template = parse_template(ROOT / "template.yaml")
    crm = template.functions["CrmApiFunction"]
    relay = template.functions["OutboxRelayFunction"]
    # Globals: an HTTP function stops before the HTTP API's 30 s; the relay has its own.
    assert crm.timeout_s == 29 and relay.timeout_s == 60

    crm_routes = {r.route_key for r in template.routes if r.function_id == "CrmApiFunction"}
    for resource in CRM_RESOURCES:
        assert f"ANY /api/v1/{resource}" in crm_routes
        assert f"ANY /api/v1/{resource}/{{proxy+}}" in crm_routes
    assert {"GET /api/v1/health", "GET /api/v1/openapi.json", "GET /api/v1/docs"} <= crm_routes

    relay_schedules = [s for s in template.schedules if s.function_id == "OutboxRelayFunction"]
    assert [(s.expression, s.enabled) for s in relay_schedules] == [("rate(1 minute)", True)]


def test_change_events_fan_out_from_the_bus_to_one_queue_per_consumer() -> None:
    template = parse_template(ROOT / "template.yaml")
    assert template.change_event_buses == frozenset({CHANGE_EVENTS_BUS})
    assert template.change_event_queues == frozenset()  # no function sends to a queue directly
    rules = template.rules_on(CHANGE_EVENTS_BUS)
    targets = [queue for rule in rules for queue in rule.queue_targets]
    assert len(targets) == len(set(targets)) == len(rules)  # one queue per rule, none shared
    consumers: dict[str, list[str]] = {}
    for source in template.sqs_sources:
        consumers.setdefault(source.queue, []).append(source.function_id)
    for rule in rules:
        (queue_id,) = rule.queue_targets
        assert len(consumers[queue_id]) == 1  # exactly one consumer: they never compete
        assert rule.pattern["source"] == ["okyaku.crm"]
        assert rule.pattern["detail-type"] == ["CRM Record Changed"]
    # Every consumer's queue is fed, by a rule or by a function that may send to it (its own
    # work queue): no consumer waits on a queue nobody sends to.
    senders = {
        queue_id
        for function in template.functions.values()
        for value in function.environment.values()
        if (queue_id := logical_id_of(value)) in template.queues
    }
    assert set(consumers) == set(targets) | senders
    assert set(targets).isdisjoint(senders)


def test_every_queue_consumer_is_wired_for_partial_failures_and_redrive() -> None:
    template = parse_template(ROOT / "template.yaml")
    assert template.sqs_sources, "the template has queue consumers"
    for source in template.sqs_sources:
        function = template.functions[source.function_id]
        queue = template.queues[source.queue]
        assert source.report_batch_item_failures, source
        assert 1 <= source.batch_size <= 100 and source.maximum_batching_window_s <= 10, source
        assert queue.dead_letter_queue in template.queues, queue
        assert queue.max_receive_count is not None and 3 <= queue.max_receive_count <= 10, queue
        # Lambda's advice for SQS sources: visibility timeout >= 6x the function's timeout.
        assert queue.visibility_timeout_s >= 6 * function.timeout_s, (queue, function.timeout_s)


def test_the_rules_send_each_consumer_the_records_it_handles() -> None:
    from okyaku.embeddings.models import EMBEDDABLE_TYPES

    template = parse_template(ROOT / "template.yaml")
    by_function = {
        source.function_id: rule
        for rule in template.event_rules
        for source in template.sqs_sources
        if source.queue in rule.queue_targets
    }
    assert set(by_function["EmbeddingsFunction"].pattern["detail"]["entity_type"]) == set(EMBEDDABLE_TYPES)
    for function_id in ("ScoringFunction", "ForecastingFunction"):
        assert {"deal", "activity", "task", "company"} <= set(by_function[function_id].pattern["detail"]["entity_type"])
    assert "contact" in by_function["ScoringFunction"].pattern["detail"]["entity_type"]


def _sample_path(path: str) -> str:
    """A concrete URL for a FastAPI path: every {parameter} filled in."""
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_route_of_every_http_function_is_routed_to_it() -> None:
    """The template's HttpApi events cover each function's API (its OpenAPI paths), method included."""
    from okyaku.local.lambda_host import load_handler_module

    template = parse_template(ROOT / "template.yaml")
    http_functions = sorted({route.function_id for route in template.routes})
    assert {"CrmApiFunction", "ContentFunction", "EmbeddingsFunction", "ScoringFunction"} <= set(http_functions)
    for function_id in http_functions:
        paths = load_handler_module(template.functions[function_id]).app.openapi()["paths"]
        assert paths, function_id
        for path, operations in paths.items():
            for method in operations:
                found = template.match_route(method.upper(), _sample_path(path))
                assert found is not None, f"{method.upper()} {path} of {function_id} has no HttpApi event"
                assert found[0].function_id == function_id, (method, path, found[0])


def test_environment_comes_from_parameters_and_globals() -> None:
    template = parse_template(ROOT / "template.yaml")
    environment = template.functions["CrmApiFunction"].environment
    assert template.resolve(environment["OLLAMA_MODEL"]) == "llama3.1"
    assert template.resolve(environment["OLLAMA_BASE_URL"]) == "http://localhost:11434/v1"
    assert template.resolve(environment["DATABASE_URL"]) == ""
    assert template.resolve(environment["AI_PREDICTIONS_ENABLED"]) == "true"
    # A resource reference has no local value: the runner's publisher stands for the bus.
    assert template.resolve(environment["CHANGE_EVENTS_BUS_NAME"]) is None
    assert template.resolve({"Fn::Sub": "${AWS::Region}-${OllamaModel}"}) == "us-east-1-llama3.1"
    assert template.resolve({"Fn::Sub": "${ChangeEventsBus}"}) is None
    content = template.functions["ContentFunction"].environment
    assert (content["LLM_TIMEOUT_S"], content["LLM_MAX_RETRIES"]) == ("12", "0")  # see test_llm_budgets.py


def test_every_environment_variable_is_a_setting() -> None:
    """A typo in a variable name would be ignored silently by pydantic-settings."""
    from okyaku.config import Settings

    known = {name.upper() for name in Settings.model_fields} | {"AWS_REGION"}
    template = parse_template(ROOT / "template.yaml")
    for spec in template.functions.values():
        assert set(spec.environment) <= known, (spec.logical_id, set(spec.environment) - known)


def test_functions_are_found_by_logical_id_or_code_directory() -> None:
    template = parse_template(ROOT / "template.yaml")
    assert template.function("OutboxRelayFunction").logical_id == "OutboxRelayFunction"
    assert template.function("outbox_relay").logical_id == "OutboxRelayFunction"
    assert template.function(str(ROOT / "functions" / "crm_api")).logical_id == "CrmApiFunction"
    with pytest.raises(TemplateError, match="no function"):
        template.function("NoSuchFunction")


def requirement_names(path: Path) -> set[str]:
    lines = [line.strip() for line in path.read_text().splitlines()]
    return {_name(line) for line in lines if line and not line.startswith("#")}


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_layer_requirements_match_the_package_dependencies() -> None:
    """Each layer ships what pyproject.toml declares for it: the lists must not drift apart."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    # boto3 comes with Lambda's Python runtime (see shared/requirements.txt).
    assert requirement_names(ROOT / "shared" / "requirements.txt") == declared - {"boto3"}
    extras = project["optional-dependencies"]
    layers = ROOT / "infrastructure" / "layers"
    assert requirement_names(layers / "requirements-ml.txt") == {_name(r) for r in extras["ml"]}
    # The anomalies layer: ruptures; numpy comes from the ML layer, statsmodels does not fit.
    anomalies = {_name(r) for r in extras["anomalies"]} - {"statsmodels", "numpy"}
    assert requirement_names(layers / "requirements-anomalies.txt") == anomalies
    # The mailboxes layer: cryptography (and what it needs, installed without resolving).
    assert {_name(r) for r in extras["mailboxes"]} <= requirement_names(layers / "requirements-mailboxes.txt")
    # The MCP layer: the SDK and what it needs beyond the common layer (installed without resolving).
    assert {_name(r) for r in extras["mcp"]} <= requirement_names(layers / "requirements-mcp.txt")
    assert not requirement_names(layers / "requirements-mcp.txt") & requirement_names(
        ROOT / "shared" / "requirements.txt"
    )


def test_the_runner_test_template_has_a_bus_rule_and_a_consumer_with_batch_item_failures() -> None:
    template = parse_template(ROOT / "tests" / "data" / "runner" / "template.yaml")
    (source,) = template.sqs_sources
    assert (source.function_id, source.queue, source.batch_size) == ("RecorderFunction", "RecorderQueue", 10)
    assert source.report_batch_item_failures
    assert template.queues["RecorderQueue"].max_receive_count == 3
    assert template.change_event_buses == frozenset({"ChangeEventsBus"})
    (rule,) = template.rules_on("ChangeEventsBus")
    assert rule.queue_targets == ("RecorderQueue",)
    assert template.functions["CrmApiFunction"].code_dir == ROOT / "functions" / "crm_api"


# --- routes ------------------------------------------------------------------------------------


def test_the_most_specific_route_wins(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Fn:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: fn
            Handler: app.handler
            Events:
              Greedy: {Type: HttpApi, Properties: {Path: "/items/{proxy+}", Method: ANY}}
              ById: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: ANY}}
              GetById: {Type: HttpApi, Properties: {Path: "/items/{id}", Method: get}}
              Special: {Type: HttpApi, Properties: {Path: /items/special, Method: ANY}}
              Root: {Type: HttpApi, Properties: {Path: /items, Method: POST}}
        """,
    )
    template = parse_template(path)

    def served(method: str, url: str) -> tuple[str, dict[str, str]] | None:
        found = template.match_route(method, url)
        return None if found is None else (found[0].event_name, found[1])

    assert served("GET", "/items/special") == ("Special", {})
    assert served("GET", "/items/42") == ("GetById", {"id": "42"})
    assert served("DELETE", "/items/42") == ("ById", {"id": "42"})
    assert served("GET", "/items/42/notes/7") == ("Greedy", {"proxy": "42/notes/7"})
    assert served("POST", "/items") == ("Root", {})
    assert served("GET", "/items") is None
    assert served("GET", "/other") is None


@pytest.mark.parametrize(
    ("events", "error"),
    [
        (
            '{E: {Type: HttpApi, Properties: {Path: /a, Method: GET, PayloadFormatVersion: "1.0"}}}',
            "payload format 2.0",
        ),
        ("{E: {Type: SQS, Properties: {Queue: !GetAtt Missing.Arn}}}", "no queue 'Missing'"),
        ("{E: {Type: Schedule, Properties: {Schedule: rate(1 minutes)}}}", r"rate\(1 minute\)"),
        (
            "{A: {Type: HttpApi, Properties: {Path: /a, Method: GET}}, "
            "B: {Type: HttpApi, Properties: {Path: /a, Method: get}}}",
            "declared more than once",
        ),
    ],
)
def test_templates_the_runner_cannot_serve_are_refused(tmp_path: Path, events: str, error: str) -> None:
    path = write_template(
        tmp_path,
        f"""
        Fn:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: fn
            Handler: app.handler
            Events: {events}
        """,
    )
    with pytest.raises(TemplateError, match=error):
        parse_template(path)


def test_schedule_names_inputs_and_disabled_rules(tmp_path: Path) -> None:
    path = write_template(
        tmp_path,
        """
        Fn:
          Type: AWS::Serverless::Function
          Properties:
            CodeUri: fn
            Handler: app.handler
            Events:
              Nightly:
                Type: Schedule
                Properties: {Schedule: "cron(0 2 * * ? *)", Name: nightly-train, Input: '{"job": "train"}'}
              Paused:
                Type: Schedule
                Properties: {Schedule: rate(5 minutes), Enabled: false}
        """,
    )
    nightly, paused = parse_template(path).schedules
    assert (nightly.rule_name, nightly.input, nightly.enabled) == ("nightly-train", '{"job": "train"}', True)
    assert (paused.rule_name, paused.enabled) == ("FnPaused", False)


# --- rate() ------------------------------------------------------------------------------------


def test_rate_fires_every_interval_from_its_start() -> None:
    start = utc(2026, 1, 1, 10, 0)
    rate = parse_rate("rate(5 minutes)")
    assert rate.interval == timedelta(minutes=5)
    assert rate.next_fire(start, start) == utc(2026, 1, 1, 10, 5)
    assert rate.next_fire(utc(2026, 1, 1, 10, 5), start) == utc(2026, 1, 1, 10, 10)
    assert rate.next_fire(utc(2026, 1, 1, 10, 7, 30), start) == utc(2026, 1, 1, 10, 10)
    assert parse_rate("rate(1 day)").interval == timedelta(days=1)
    assert parse_rate("rate(2 hours)").interval == timedelta(hours=2)


@pytest.mark.parametrize(
    "expression",
    ["rate(1 minutes)", "rate(5 minute)", "rate(0 minutes)", "rate(2 weeks)", "rate(five minutes)", "every 5m"],
)
def test_invalid_rates_are_refused(expression: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse_schedule_expression(expression)


# --- cron() ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(0 2 * * ? *)", utc(2026, 3, 10, 1, 59), utc(2026, 3, 10, 2, 0)),
        ("cron(0 2 * * ? *)", utc(2026, 3, 10, 2, 0), utc(2026, 3, 11, 2, 0)),  # strictly after
        ("cron(0/15 * * * ? *)", utc(2026, 3, 10, 8, 16), utc(2026, 3, 10, 8, 30)),
        ("cron(0 9 ? * MON-FRI *)", utc(2026, 3, 13, 9, 30), utc(2026, 3, 16, 9, 0)),  # Fri -> Mon
        ("cron(30 6 ? * 1 *)", utc(2026, 3, 10, 0, 0), utc(2026, 3, 15, 6, 30)),  # 1 = Sunday
        ("cron(0 0 1 JAN,JUL ? *)", utc(2026, 2, 1), utc(2026, 7, 1)),
        ("cron(0 12 L * ? *)", utc(2026, 2, 1), utc(2026, 2, 28, 12, 0)),  # last day of month
        ("cron(0 12 L * ? *)", utc(2028, 2, 1), utc(2028, 2, 29, 12, 0)),  # leap year
        ("cron(15 10 ? * 6L *)", utc(2026, 1, 1), utc(2026, 1, 30, 10, 15)),  # last Friday
        ("cron(0 8 ? * 2#1 *)", utc(2026, 3, 3), utc(2026, 4, 6, 8, 0)),  # first Monday
        ("cron(0 8 15W * ? *)", utc(2026, 8, 1), utc(2026, 8, 14, 8, 0)),  # 15th is a Saturday
        ("cron(0 8 1W * ? *)", utc(2026, 2, 1), utc(2026, 2, 2, 8, 0)),  # 1st Sunday -> Monday
        ("cron(0 0 29 2 ? *)", utc(2026, 3, 1), utc(2028, 2, 29)),
        ("cron(0 0 1 1 ? 2026-2027)", utc(2027, 6, 1), None),  # no year left
        ("cron(5,35 14-15 * * ? *)", utc(2026, 5, 5, 14, 40), utc(2026, 5, 5, 15, 5)),
    ],
)
def test_cron_next_fire(expression: str, after: datetime, expected: datetime | None) -> None:
    assert parse_cron(expression).next_fire(after) == expected


def test_cron_is_evaluated_in_utc() -> None:
    from zoneinfo import ZoneInfo

    after = datetime(2026, 3, 10, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 02:00 UTC
    assert parse_cron("cron(30 2 * * ? *)").next_fire(after) == utc(2026, 3, 10, 2, 30)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("cron(0 2 * * * *)", "must be '?'"),
        ("cron(0 2 ? * ? *)", "must be '?'"),
        ("cron(0 2 * * ?)", "6 fields"),
        ("cron(60 2 * * ? *)", "outside 0-59"),
        ("cron(0 25 * * ? *)", "outside 0-23"),
        ("cron(0 2 ? * FRI-MON *)", "backwards"),
        ("cron(0 2 ? * 2#6 *)", "#1 to #5"),
        ("cron(0 2 * FOO ? *)", "not a value"),
        ("cron(0/0 2 * * ? *)", "bad step"),
    ],
)
def test_invalid_crons_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ScheduleExpressionError, match=re.escape(message)):
        parse_cron(expression)


def test_the_anomalies_function_fans_out_through_its_own_queue() -> None:
    template = parse_template(ROOT / "template.yaml")
    function = template.functions["AnomaliesFunction"]
    (source,) = [s for s in template.sqs_sources if s.function_id == "AnomaliesFunction"]
    # its queue is fed by the function itself (the fan-out), never by the change-event bus
    assert logical_id_of(function.environment["ANOMALY_SCAN_QUEUE_URL"]) == source.queue
    assert all(source.queue not in rule.queue_targets for rule in template.event_rules)
    assert source.batch_size == 1 and source.report_batch_item_failures
    (schedule,) = [s for s in template.schedules if s.function_id == "AnomaliesFunction"]
    assert schedule.expression == "cron(0 6 * * ? *)"
    routes = {r.route_key for r in template.routes if r.function_id == "AnomaliesFunction"}
    assert {"ANY /api/v1/ai/anomalies", "ANY /api/v1/ai/insights", "ANY /api/v1/notifications"} <= routes


def test_big_imports_go_through_the_bucket_to_a_worker_with_the_time_and_memory_for_them() -> None:
    """crm_api (29 s, HTTP) signs uploads and queues jobs; import_jobs, the only consumer, runs them."""
    from okyaku.config import Settings

    template = parse_template(ROOT / "template.yaml")
    crm, worker = template.functions["CrmApiFunction"], template.functions["ImportJobsFunction"]
    assert logical_id_of(crm.environment["IMPORTS_BUCKET"]) == logical_id_of(worker.environment["IMPORTS_BUCKET"])
    assert logical_id_of(crm.environment["IMPORTS_BUCKET"]) == "ImportsBucket"
    assert logical_id_of(crm.environment["IMPORT_JOBS_QUEUE_URL"]) == "ImportJobsQueue"
    assert [(s.function_id, s.batch_size) for s in template.sqs_sources if s.queue == "ImportJobsQueue"] == [
        ("ImportJobsFunction", 1)
    ]
    assert crm.timeout_s == 29 and worker.timeout_s == 900
    # An import holds about 32x its file in memory (README): the cap must fit the worker.
    assert 32 * Settings().import_upload_max_bytes <= worker.memory_mb * 1024 * 1024
    bucket = load_template_dict(ROOT / "template.yaml")["Resources"]["ImportsBucket"]["Properties"]
    (expiry,) = bucket["LifecycleConfiguration"]["Rules"]
    assert (expiry["Prefix"], expiry["ExpirationInDays"]) == ("uploads/", 1)
    from okyaku.crm.import_uploads import UPLOAD_PREFIX

    assert expiry["Prefix"] == UPLOAD_PREFIX
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]


def test_the_mailboxes_function_fans_out_one_sync_per_mailbox_through_its_own_queue() -> None:
    template = parse_template(ROOT / "template.yaml")
    function = template.functions["MailboxesFunction"]
    (source,) = [s for s in template.sqs_sources if s.function_id == "MailboxesFunction"]
    assert logical_id_of(function.environment["MAILBOX_SYNC_QUEUE_URL"]) == source.queue
    assert all(source.queue not in rule.queue_targets for rule in template.event_rules)
    assert source.batch_size == 1 and source.report_batch_item_failures
    (schedule,) = [s for s in template.schedules if s.function_id == "MailboxesFunction"]
    assert schedule.expression == "rate(10 minutes)"
    routes = {r.route_key for r in template.routes if r.function_id == "MailboxesFunction"}
    assert {"ANY /api/v1/mailboxes", "ANY /api/v1/mailboxes/{proxy+}"} <= routes
