"""Reading ``template.yaml`` (SAM) into what the local runner needs: functions, HTTP routes,
queues, SQS event sources, schedules, event buses with their rules and queue targets (their
schedule expressions and event patterns are read by ``schedule_expressions`` and ``event_patterns``).

Only the template drives the runner, so a function added to the template is served without
touching the runner. Parsing is permissive about CloudFormation tags (``!Ref``, ``!GetAtt``,
``!Sub``...): they become their JSON form (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from okyaku.lambda_events import ACCOUNT_ID, REGION
from okyaku.local.event_patterns import EventPatternError, check_event_pattern, event_pattern_matches
from okyaku.local.schedule_expressions import (
    CronExpression,
    RateExpression,
    ScheduleExpressionError,
    parse_schedule_expression,
)

logger = logging.getLogger(__name__)

PSEUDO_PARAMETERS = {
    "AWS::Region": REGION,
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": "okyaku-local",
}


class TemplateError(ValueError):
    """The template cannot be run locally as written."""


# --- YAML with CloudFormation tags ------------------------------------------------------------


class _CloudFormationLoader(yaml.SafeLoader):
    """SafeLoader that turns every ``!Tag`` into CloudFormation's JSON form."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        # !GetAtt Resource.Attribute (the attribute itself may contain dots)
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    if tag_suffix == "Condition":
        return {"Condition": value}
    return {f"Fn::{tag_suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


def load_template_dict(path: Path) -> dict[str, Any]:
    """The template as plain data, tags in JSON form (what aws-sam-translator accepts too)."""
    with path.open(encoding="utf-8") as stream:
        data = yaml.load(stream, Loader=_CloudFormationLoader)  # a SafeLoader subclass
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources)")
    return data


# --- typed description ------------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRoute:
    """One HttpApi event: ``ANY /api/v1/contacts/{proxy+}``."""

    function_id: str
    event_name: str
    method: str  # upper case, or ANY
    path: str
    payload_format_version: str = "2.0"

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def pattern(self) -> re.Pattern[str]:
        return _route_pattern(self.path)

    def specificity(self) -> tuple[tuple[int, ...], int]:
        """API Gateway picks the most specific route: literal > {param} > {greedy+}; a method > ANY."""
        ranks = []
        for segment in self.path.strip("/").split("/"):
            if segment.endswith("+}"):
                ranks.append(0)
            elif segment.startswith("{"):
                ranks.append(1)
            else:
                ranks.append(2)
        return tuple(ranks), 0 if self.method == "ANY" else 1

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """Path parameters when ``method path`` is served by this route, else None."""
        if self.method not in ("ANY", method.upper()):
            return None
        found = self.pattern.fullmatch(path)
        return None if found is None else dict(found.groupdict())


@functools.lru_cache(maxsize=1024)  # matched on every request: compile each route once
def _route_pattern(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.strip("/").split("/"):
        greedy = re.fullmatch(r"\{([A-Za-z0-9_]+)\+\}", segment)
        param = re.fullmatch(r"\{([A-Za-z0-9_]+)\}", segment)
        if greedy:
            parts.append(f"(?P<{greedy.group(1)}>.+)")
        elif param:
            parts.append(f"(?P<{param.group(1)}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/" + "/".join(parts))


@dataclass(frozen=True)
class SqsEventSource:
    function_id: str
    event_name: str
    queue: str  # the queue's logical id, or its ARN when the template names a queue it does not define
    batch_size: int = 10
    maximum_batching_window_s: float = 0.0
    report_batch_item_failures: bool = False
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleEvent:
    function_id: str
    event_name: str
    rule_name: str
    expression: str
    enabled: bool = True
    input: str | None = None  # a JSON string sent instead of the scheduled event

    @property
    def schedule(self) -> RateExpression | CronExpression:
        return parse_schedule_expression(self.expression)


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    visibility_timeout_s: int = 30
    dead_letter_queue: str | None = None  # logical id (or ARN) of the DLQ
    max_receive_count: int | None = None
    fifo: bool = False


@dataclass(frozen=True)
class EventRule:
    """An ``AWS::Events::Rule`` on a bus of the template that sends matching events to queues."""

    logical_id: str
    bus: str  # the bus's logical id, or "default"
    pattern: Mapping[str, Any]
    queue_targets: tuple[str, ...]  # logical ids of the template's queues
    enabled: bool = True

    def matches(self, event: Mapping[str, Any]) -> bool:
        return event_pattern_matches(self.pattern, event)


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str  # "module.function" as Lambda writes it, e.g. "app.handler"
    timeout_s: int = 3
    memory_mb: int = 128
    environment: Mapping[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def attribute(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def module_file(self) -> Path:
        return self.code_dir.joinpath(*self.module.split(".")).with_suffix(".py")


@dataclass(frozen=True)
class Template:
    path: Path
    functions: Mapping[str, FunctionSpec]
    routes: tuple[HttpRoute, ...]
    queues: Mapping[str, QueueSpec]
    sqs_sources: tuple[SqsEventSource, ...]
    schedules: tuple[ScheduleEvent, ...]
    parameters: Mapping[str, str | None]
    # Queues that change events are published to (the target of CHANGE_EVENTS_QUEUE_URL).
    change_event_queues: frozenset[str]
    # Event buses (logical ids), their rules, and the buses change events are put on
    # (the target of CHANGE_EVENTS_BUS_NAME).
    buses: frozenset[str] = frozenset()
    event_rules: tuple[EventRule, ...] = ()
    change_event_buses: frozenset[str] = frozenset()

    def rules_on(self, bus: str) -> tuple[EventRule, ...]:
        return tuple(rule for rule in self.event_rules if rule.bus == bus and rule.enabled)

    def function(self, name: str) -> FunctionSpec:
        """By logical id, or by code directory (``functions/crm_api`` or ``crm_api``)."""
        if name in self.functions:
            return self.functions[name]
        wanted = Path(name)
        for spec in self.functions.values():
            if spec.code_dir.name == wanted.name and (
                len(wanted.parts) == 1 or spec.code_dir == (Path.cwd() / wanted).resolve()
            ):
                return spec
        known = ", ".join(sorted(self.functions))
        raise TemplateError(f"no function {name!r} in {self.path} (functions: {known})")

    def match_route(self, method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self.routes:  # kept most specific first
            parameters = route.match(method, path)
            if parameters is not None:
                return route, parameters
        return None

    def resolve(self, value: Any) -> str | None:
        """A literal, or a Ref/Sub of parameters and pseudo parameters; None for resource refs."""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, str | int | float):
            return str(value)
        if isinstance(value, dict) and set(value) == {"Ref"}:
            name = value["Ref"]
            if name in PSEUDO_PARAMETERS:
                return PSEUDO_PARAMETERS[name]
            return self.parameters.get(name)
        if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            unresolved = False

            def substitute(found: re.Match[str]) -> str:
                nonlocal unresolved
                resolved = self.resolve({"Ref": found.group(1)})
                if resolved is None:
                    unresolved = True
                    return ""
                return resolved

            text = re.sub(r"\$\{([A-Za-z0-9:]+)\}", substitute, value["Fn::Sub"])
            return None if unresolved else text
        return None


def logical_id_of(value: Any) -> str | None:
    """``!Ref X``/``!GetAtt X.Arn`` -> ``X``; other forms -> None."""
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str):
            return value["Ref"]
        attribute = value.get("Fn::GetAtt")
        if isinstance(attribute, list) and attribute:
            return str(attribute[0])
        if isinstance(attribute, str):
            return attribute.split(".", 1)[0]
    return None


def _as_bool(value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() not in ("false", "0", "no", "disabled")


def parse_template(path: Path | str) -> Template:
    path = Path(path).resolve()
    data = load_template_dict(path)
    base = path.parent
    resources: dict[str, Any] = data["Resources"]
    globals_function: dict[str, Any] = (data.get("Globals") or {}).get("Function") or {}
    parameters = {
        name: None if spec.get("Default") is None else str(spec["Default"])
        for name, spec in (data.get("Parameters") or {}).items()
    }

    functions: dict[str, FunctionSpec] = {}
    routes: list[HttpRoute] = []
    sqs_sources: list[SqsEventSource] = []
    schedules: list[ScheduleEvent] = []
    queues: dict[str, QueueSpec] = {}
    buses = frozenset(i for i, r in resources.items() if r.get("Type") == "AWS::Events::EventBus")
    event_rules: list[EventRule] = []

    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        properties: dict[str, Any] = resource.get("Properties") or {}
        if kind == "AWS::SQS::Queue":
            queues[logical_id] = _queue_spec(logical_id, properties)
        elif kind == "AWS::Events::Rule":
            rule = _event_rule(logical_id, properties, buses, resources)
            if rule is not None:
                event_rules.append(rule)
        elif kind == "AWS::Serverless::Function":
            merged = {**globals_function, **properties}
            merged["Environment"] = {
                "Variables": {
                    **((globals_function.get("Environment") or {}).get("Variables") or {}),
                    **((properties.get("Environment") or {}).get("Variables") or {}),
                }
            }
            spec = _function_spec(logical_id, merged, base)
            if spec is None:
                continue
            functions[logical_id] = spec
            for event_name, event in (properties.get("Events") or {}).items():
                _add_event(logical_id, event_name, event, routes, sqs_sources, schedules)

    for source in sqs_sources:
        if source.queue not in queues and not source.queue.startswith("arn:"):
            raise TemplateError(f"{source.function_id}.{source.event_name}: no queue {source.queue!r}")

    change_event_queues = frozenset(
        queue_id
        for spec in functions.values()
        if (queue_id := logical_id_of(spec.environment.get("CHANGE_EVENTS_QUEUE_URL"))) in queues
    )
    change_event_buses = frozenset(
        bus_id
        for spec in functions.values()
        if (bus_id := logical_id_of(spec.environment.get("CHANGE_EVENTS_BUS_NAME"))) in buses
    )
    routes.sort(key=lambda r: r.specificity(), reverse=True)
    template = Template(
        path=path,
        functions=functions,
        routes=tuple(routes),
        queues=queues,
        sqs_sources=tuple(sqs_sources),
        schedules=tuple(schedules),
        parameters=parameters,
        change_event_queues=change_event_queues,
        buses=buses,
        event_rules=tuple(event_rules),
        change_event_buses=change_event_buses,
    )
    _check_unique_routes(template)
    return template


def _queue_spec(logical_id: str, properties: Mapping[str, Any]) -> QueueSpec:
    redrive = properties.get("RedrivePolicy") or {}
    max_receive = redrive.get("maxReceiveCount")
    return QueueSpec(
        logical_id=logical_id,
        visibility_timeout_s=int(properties.get("VisibilityTimeout", 30)),
        dead_letter_queue=logical_id_of(redrive.get("deadLetterTargetArn"))
        or (redrive.get("deadLetterTargetArn") if isinstance(redrive.get("deadLetterTargetArn"), str) else None),
        max_receive_count=None if max_receive is None else int(max_receive),
        fifo=_as_bool(properties.get("FifoQueue"), default=False),
    )


def _event_rule(
    logical_id: str, properties: Mapping[str, Any], buses: frozenset[str], resources: Mapping[str, Any]
) -> EventRule | None:
    """A pattern rule with SQS targets; schedule rules written as plain resources are not run."""
    pattern = properties.get("EventPattern")
    if pattern is None:
        logger.warning("%s has no EventPattern; the local runner does not run it", logical_id)
        return None
    if isinstance(pattern, str):  # CloudFormation accepts the pattern as a JSON string too
        pattern = json.loads(pattern)
    try:
        check_event_pattern(pattern, logical_id)
    except EventPatternError as error:
        raise TemplateError(str(error)) from error
    bus_value = properties.get("EventBusName", "default")
    bus = logical_id_of(bus_value) or (bus_value if isinstance(bus_value, str) else None)
    if bus is None or (bus != "default" and bus not in buses):
        raise TemplateError(f"{logical_id}: EventBusName must name a bus of the template (!GetAtt <Bus>.Name)")
    queue_targets = []
    for target in properties.get("Targets") or []:
        target_id = logical_id_of(target.get("Arn"))
        target_type = (resources.get(target_id) or {}).get("Type") if target_id else None
        if target_type != "AWS::SQS::Queue":
            logger.warning("%s: target %s is not a queue of the template; not run locally", logical_id, target_id)
            continue
        changed = sorted(key for key in ("Input", "InputPath", "InputTransformer") if key in target)
        if changed:
            raise TemplateError(f"{logical_id}: the local runner delivers whole events; {changed} is not supported")
        queue_targets.append(str(target_id))
    state = str(properties.get("State", "ENABLED")).upper()
    return EventRule(logical_id, bus, pattern, tuple(queue_targets), enabled=state == "ENABLED")


def _function_spec(logical_id: str, properties: Mapping[str, Any], base: Path) -> FunctionSpec | None:
    code_uri = properties.get("CodeUri")
    handler = properties.get("Handler")
    if properties.get("PackageType") == "Image" or not isinstance(code_uri, str) or not handler:
        logger.warning("%s has no local code (CodeUri/Handler); the local runner skips it", logical_id)
        return None
    if "." not in str(handler):
        raise TemplateError(f"{logical_id}: Handler must be 'module.function', not {handler!r}")
    code_dir = (base / code_uri).resolve()
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=code_dir,
        handler=str(handler),
        timeout_s=int(properties.get("Timeout", 3)),
        memory_mb=int(properties.get("MemorySize", 128)),
        environment=dict(properties["Environment"]["Variables"]),
    )


def _add_event(
    function_id: str,
    event_name: str,
    event: Mapping[str, Any],
    routes: list[HttpRoute],
    sqs_sources: list[SqsEventSource],
    schedules: list[ScheduleEvent],
) -> None:
    kind = event.get("Type")
    properties: Mapping[str, Any] = event.get("Properties") or {}
    where = f"{function_id}.{event_name}"
    if kind == "HttpApi":
        version = str(properties.get("PayloadFormatVersion", "2.0"))
        if version != "2.0":
            raise TemplateError(f"{where}: the local runner builds payload format 2.0 events only")
        path = properties.get("Path")
        method = str(properties.get("Method", "ANY")).upper()
        if path is None:  # an HttpApi event without Path is the $default route
            path, method = "/{proxy+}", "ANY"
        if not str(path).startswith("/"):
            raise TemplateError(f"{where}: Path must start with '/'")
        if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
            method = "ANY"
        routes.append(HttpRoute(function_id, event_name, method, str(path), version))
    elif kind == "SQS":
        queue = properties.get("Queue")
        queue_id = logical_id_of(queue) or (queue if isinstance(queue, str) else None)
        if queue_id is None:
            raise TemplateError(f"{where}: Queue must be !GetAtt <Queue>.Arn or an ARN")
        response_types = properties.get("FunctionResponseTypes") or []
        sqs_sources.append(
            SqsEventSource(
                function_id=function_id,
                event_name=event_name,
                queue=queue_id,
                batch_size=int(properties.get("BatchSize", 10)),
                maximum_batching_window_s=float(properties.get("MaximumBatchingWindowInSeconds", 0)),
                report_batch_item_failures="ReportBatchItemFailures" in response_types,
                enabled=_as_bool(properties.get("Enabled")),
            )
        )
    elif kind == "Schedule":
        expression = properties.get("Schedule")
        if not isinstance(expression, str):
            raise TemplateError(f"{where}: Schedule must be a rate(...) or cron(...) string")
        try:
            parse_schedule_expression(expression)
        except ScheduleExpressionError as error:
            raise TemplateError(f"{where}: {error}") from error
        enabled = _as_bool(properties.get("Enabled")) and str(properties.get("State", "ENABLED")) != "DISABLED"
        input_value = properties.get("Input")
        schedules.append(
            ScheduleEvent(
                function_id=function_id,
                event_name=event_name,
                rule_name=str(properties.get("Name") or f"{function_id}{event_name}"),
                expression=expression,
                enabled=enabled,
                input=input_value if isinstance(input_value, str) else None,
            )
        )
    else:
        logger.warning("%s: event type %s is not run by the local runner", where, kind)


def _check_unique_routes(template: Template) -> None:
    seen: set[str] = set()
    for route in template.routes:
        if route.route_key in seen:
            raise TemplateError(f"route {route.route_key!r} is declared more than once")
        seen.add(route.route_key)
