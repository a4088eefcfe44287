"""template.yaml deployed into moto's CloudFormation, then checked against what the template declares.

moto ignores the SAM transform, so the template is translated first with aws-sam-translator (code
and layers zipped to moto's S3, their CodeUri/ContentUri pointed there), then created as a stack.
Every expectation is derived by walking template.yaml: a function, queue, schedule or rule added
later without its wiring fails here. Then a change event travels the deployed wiring: the crm_api
handler writes a contact and its runtime puts the event on the deployed bus; each consumer's
deployed queue gets it (or not, by its rule's pattern), and the handler consumes it as Lambda
would deliver it (the local runner's SQS record builder).

What moto cannot run (listed in the README): AWS::ApiGatewayV2::* and AWS::SQS::QueuePolicy are
skipped (checked here in the translated template instead), functions come up without their
Layers, and invoking a function does not run its code (the handlers run in-process here).
"""

from __future__ import annotations

import ast
import io
import json
import re
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from sqlalchemy import text

from okyaku.cli.invoke import with_api_key
from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.events import decode_change_event
from okyaku.lambda_events import sqs_record
from okyaku.local.lambda_host import FunctionHost
from okyaku.local.postgres import LocalDatabase
from okyaku.local.sqs import QueuedMessage
from okyaku.local.template import Template, load_template_dict, parse_template
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization

ROOT = Path(__file__).resolve().parents[2]
STACK = "okyaku-ci"
REGION = "us-east-1"
# Resource types of the translated template that moto's CloudFormation skips (README: "What the
# AWS emulator cannot run"). A new gap, or moto closing one, fails the test so the list stays true.
EMULATOR_GAPS = {"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage", "AWS::SQS::QueuePolicy"}


@dataclass
class Deployment:
    sam: dict[str, Any]  # template.yaml as written
    spec: Template  # template.yaml as the local runner reads it
    translated: dict[str, Any]
    physical: dict[str, str]  # logical id -> physical id
    outputs: dict[str, str]
    endpoint: str

    def client(self, service: str) -> Any:
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION)

    def resources(self, kind: str) -> dict[str, Any]:
        return {i: r for i, r in self.sam["Resources"].items() if r["Type"] == kind}

    def queue_url(self, logical_id: str) -> str:
        return self.physical[logical_id]

    def queue_arn(self, logical_id: str) -> str:
        attributes = self.client("sqs").get_queue_attributes(
            QueueUrl=self.queue_url(logical_id), AttributeNames=["QueueArn"]
        )
        return str(attributes["Attributes"]["QueueArn"])

    def function(self, logical_id: str) -> dict[str, Any]:
        return self.client("lambda").get_function(FunctionName=self.physical[logical_id])["Configuration"]  # type: ignore[no-any-return]

    @property
    def bus_name(self) -> str:
        return self.outputs["ChangeEventsBusName"]


def zip_directory(path: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_file() and "__pycache__" not in file.parts and ".egg-info" not in str(file):
                archive.write(file, file.relative_to(path))
    return buffer.getvalue()


def package(sam: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """What `sam package` does: code to S3, CodeUri/ContentUri pointing there."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    bucket = f"okyaku-artifacts-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    packaged = json.loads(json.dumps(sam))
    for logical_id, resource in packaged["Resources"].items():
        key = {"AWS::Serverless::Function": "CodeUri", "AWS::Serverless::LayerVersion": "ContentUri"}.get(
            resource["Type"]
        )
        if key is None:
            continue
        s3.put_object(Bucket=bucket, Key=f"{logical_id}.zip", Body=zip_directory(ROOT / resource["Properties"][key]))
        resource["Properties"][key] = f"s3://{bucket}/{logical_id}.zip"
    return packaged


@pytest.fixture(scope="module")
def deployed(moto_endpoint: str) -> Iterator[Deployment]:
    from samtranslator.public.translator import ManagedPolicyLoader
    from samtranslator.translator.transform import transform

    sam = load_template_dict(ROOT / "template.yaml")
    iam = boto3.client("iam", endpoint_url=moto_endpoint, region_name=REGION)
    translated = transform(package(sam, moto_endpoint), {}, ManagedPolicyLoader(iam))
    cloudformation = boto3.client("cloudformation", endpoint_url=moto_endpoint, region_name=REGION)
    cloudformation.create_stack(
        StackName=STACK,
        TemplateBody=json.dumps(translated),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
    )
    cloudformation.get_waiter("stack_create_complete").wait(
        StackName=STACK, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    (stack,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack
    summaries = cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK)
    physical = {
        s["LogicalResourceId"]: s.get("PhysicalResourceId", "")
        for page in summaries
        for s in page["StackResourceSummaries"]
    }
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    yield Deployment(sam, parse_template(ROOT / "template.yaml"), translated, physical, outputs, moto_endpoint)
    cloudformation.delete_stack(StackName=STACK)


# --- what came up ------------------------------------------------------------------------------


def test_the_stack_comes_up_with_every_resource_but_the_known_emulator_gaps(deployed: Deployment) -> None:
    from moto.cloudformation.parsing import get_model_map

    translated = deployed.translated["Resources"]
    skipped = {r["Type"] for r in translated.values()} - set(get_model_map())
    assert skipped == EMULATOR_GAPS
    # Every other resource is listed, CREATE_COMPLETE (moto lists the skipped ones without a name).
    assert set(deployed.physical) - {""} == {i for i, r in translated.items() if r["Type"] not in EMULATOR_GAPS}
    assert {"ApiUrl", "ChangeEventsBusName", "ChangeEventsBusArn"} <= set(deployed.outputs)
    for logical_id in deployed.resources("AWS::SQS::Queue"):
        assert deployed.outputs[f"{logical_id}Url"] == deployed.queue_url(logical_id)
    assert deployed.bus_name == f"{STACK}-change-events"


def test_every_function_is_deployed_as_declared(deployed: Deployment) -> None:
    lambda_ = deployed.client("lambda")
    iam = deployed.client("iam")
    functions = deployed.resources("AWS::Serverless::Function")
    assert set(functions) == set(deployed.spec.functions) and functions
    deployed_names = {f["FunctionName"] for f in lambda_.list_functions()["Functions"]}
    for logical_id, spec in deployed.spec.functions.items():
        assert deployed.physical[logical_id] in deployed_names
        configuration = deployed.function(logical_id)
        assert configuration["Runtime"] == "python3.11"
        assert configuration["Handler"] == spec.handler
        assert configuration["Architectures"] == ["x86_64"]
        assert (configuration["Timeout"], configuration["MemorySize"]) == (spec.timeout_s, spec.memory_mb)
        variables = configuration["Environment"]["Variables"]
        assert set(variables) == set(spec.environment)
        for name, value in spec.environment.items():
            resolved = deployed.spec.resolve(value)
            if resolved is not None:  # parameters: their defaults
                assert variables[name] == resolved, (logical_id, name)
        assert variables["CHANGE_EVENTS_BUS_NAME"] == deployed.bus_name
        role_name = configuration["Role"].rsplit("/", 1)[1]
        trust = iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"]
        assert trust["Statement"][0]["Principal"]["Service"] == ["lambda.amazonaws.com"]


def test_every_layer_version_is_published_and_attached_where_declared(deployed: Deployment) -> None:
    layers = deployed.resources("AWS::Serverless::LayerVersion")
    assert {"OkyakuLayer", "OkyakuMlLayer"} <= set(layers)
    translated = deployed.translated["Resources"]
    # SAM names a layer version's resource after the layer and a hash of its content.
    layer_of = {
        version_id: layer_id
        for version_id, resource in translated.items()
        if resource["Type"] == "AWS::Lambda::LayerVersion"
        for layer_id in layers
        if version_id.startswith(layer_id) and version_id[len(layer_id) :].isalnum()
    }
    assert sorted(layer_of.values()) == sorted(layers)
    # moto names layers after the resource (it ignores LayerName).
    published = {
        layer["LayerName"]: layer["LatestMatchingVersion"]
        for layer in deployed.client("lambda").list_layers()["Layers"]
        if layer["LayerName"].startswith(f"{STACK}-")
    }
    for version_id, layer_id in layer_of.items():
        (version,) = [v for name, v in published.items() if name.startswith(f"{STACK}-{version_id}-")]
        assert version["CompatibleRuntimes"] == ["python3.11"], layer_id
        assert version["Description"] == layers[layer_id]["Properties"]["Description"]
    # moto drops Layers from deployed functions: the translated template says what AWS attaches.
    global_layers = [ref["Ref"] for ref in deployed.sam["Globals"]["Function"]["Layers"]]
    for logical_id, function in deployed.resources("AWS::Serverless::Function").items():
        declared = global_layers + [ref["Ref"] for ref in function["Properties"].get("Layers", [])]
        attached = [layer_of[ref["Ref"]] for ref in translated[logical_id]["Properties"]["Layers"]]
        assert attached == declared, logical_id


def test_every_queue_has_its_visibility_timeout_and_redrive_policy(deployed: Deployment) -> None:
    sqs = deployed.client("sqs")
    queues = deployed.resources("AWS::SQS::Queue")
    for logical_id, queue in queues.items():
        properties = queue["Properties"]
        attributes = sqs.get_queue_attributes(QueueUrl=deployed.queue_url(logical_id), AttributeNames=["All"])[
            "Attributes"
        ]
        if "VisibilityTimeout" in properties:
            assert int(attributes["VisibilityTimeout"]) == properties["VisibilityTimeout"]
        redrive = properties.get("RedrivePolicy")
        if redrive is None:
            assert "RedrivePolicy" not in attributes
            continue
        deployed_redrive = json.loads(attributes["RedrivePolicy"])
        dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
        assert deployed_redrive["deadLetterTargetArn"] == deployed.queue_arn(dlq)
        assert int(deployed_redrive["maxReceiveCount"]) == redrive["maxReceiveCount"]
    # Every consumed queue has a DLQ and outlasts its consumer 6 times.
    for source in deployed.spec.sqs_sources:
        assert "RedrivePolicy" in queues[source.queue]["Properties"], source.queue
        timeout = deployed.function(source.function_id)["Timeout"]
        visibility = sqs.get_queue_attributes(
            QueueUrl=deployed.queue_url(source.queue), AttributeNames=["VisibilityTimeout"]
        )["Attributes"]["VisibilityTimeout"]
        assert int(visibility) >= 6 * timeout, (source.queue, visibility, timeout)


def test_every_sqs_event_is_an_event_source_mapping_reporting_batch_item_failures(deployed: Deployment) -> None:
    lambda_ = deployed.client("lambda")
    assert deployed.spec.sqs_sources
    for function_id in {s.function_id for s in deployed.spec.sqs_sources}:
        mappings = lambda_.list_event_source_mappings(FunctionName=deployed.physical[function_id])[
            "EventSourceMappings"
        ]
        sources = [s for s in deployed.spec.sqs_sources if s.function_id == function_id]
        assert len(mappings) == len(sources), function_id
        for source in sources:
            (mapping,) = [m for m in mappings if m["EventSourceArn"] == deployed.queue_arn(source.queue)]
            assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            assert mapping["BatchSize"] == source.batch_size
            assert mapping.get("MaximumBatchingWindowInSeconds", 0) == source.maximum_batching_window_s
            assert mapping["State"] == "Enabled"
            assert mapping["FunctionArn"] == deployed.function(function_id)["FunctionArn"]


def test_every_schedule_is_a_rule_that_may_invoke_its_function(deployed: Deployment) -> None:
    events = deployed.client("events")
    lambda_ = deployed.client("lambda")
    assert deployed.spec.schedules
    for schedule in deployed.spec.schedules:
        rule_name = deployed.physical[f"{schedule.function_id}{schedule.event_name}"]
        rule = events.describe_rule(Name=rule_name)
        assert rule["ScheduleExpression"] == schedule.expression
        assert rule["State"] == ("ENABLED" if schedule.enabled else "DISABLED")
        function_arn = deployed.function(schedule.function_id)["FunctionArn"]
        (target,) = events.list_targets_by_rule(Rule=rule_name)["Targets"]
        assert target["Arn"] == function_arn
        # EventBridge invokes through the function's resource policy (no role on a Lambda target).
        policy = json.loads(lambda_.get_policy(FunctionName=deployed.physical[schedule.function_id])["Policy"])
        allowed = [
            s
            for s in policy["Statement"]
            if s["Principal"] == {"Service": "events.amazonaws.com"}
            and s.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn") == rule["Arn"]
        ]
        assert allowed and allowed[0]["Action"] == "lambda:InvokeFunction", schedule


def test_the_bus_rules_route_change_events_to_each_consumers_queue(deployed: Deployment) -> None:
    events = deployed.client("events")
    rules = deployed.spec.rules_on("ChangeEventsBus")
    deployed_rules = {r["Name"]: r for r in events.list_rules(EventBusName=deployed.bus_name)["Rules"]}
    assert set(deployed_rules) == {deployed.physical[r.logical_id] for r in rules}
    for rule in rules:
        name = deployed.physical[rule.logical_id]
        assert json.loads(deployed_rules[name]["EventPattern"]) == rule.pattern
        assert deployed_rules[name]["State"] == "ENABLED"
        targets = events.list_targets_by_rule(Rule=name, EventBusName=deployed.bus_name)["Targets"]
        assert [t["Arn"] for t in targets] == [deployed.queue_arn(q) for q in rule.queue_targets]
        declared = deployed.sam["Resources"][rule.logical_id]["Properties"]["Targets"]
        for target, declared_target in zip(targets, declared, strict=True):
            dlq = declared_target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0]
            assert target["DeadLetterConfig"]["Arn"] == deployed.queue_arn(dlq)


def policy_document(policy: dict[str, Any]) -> dict[str, Any]:
    document = policy["PolicyDocument"]
    if isinstance(document, dict):
        return document
    # moto's CloudFormation stores an inline policy as the Python text of the dict.
    parsed = ast.literal_eval(document)
    assert isinstance(parsed, dict)
    return parsed


def test_only_the_writers_may_put_change_events_on_the_bus(deployed: Deployment) -> None:
    iam = deployed.client("iam")
    bus_arn = deployed.outputs["ChangeEventsBusArn"]
    # The functions that write CRM records (agents and the console apply approved changes;
    # recommendations apply low-risk cards at once when approval is switched off).
    writers = {
        "CrmApiFunction",
        "ImportJobsFunction",  # imports uploaded to S3
        "OutboxRelayFunction",
        "AgentsFunction",
        "RecommendationsFunction",
        "ConsoleFunction",
        "EmailsFunction",  # an e-mail's activity and its delivery status
        "MailboxesFunction",  # synced e-mails become activities
    }
    for logical_id in deployed.spec.functions:
        role = deployed.function(logical_id)["Role"].rsplit("/", 1)[1]
        statements = [
            statement
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
            for statement in policy_document(iam.get_role_policy(RoleName=role, PolicyName=name))["Statement"]
        ]
        puts = [s for s in statements if "events:PutEvents" in json.dumps(s["Action"])]
        if logical_id in writers:
            assert [s["Resource"] for s in puts] == [bus_arn], logical_id
        else:
            assert puts == [], logical_id


def test_the_imports_bucket_is_private_encrypted_expiring_and_only_the_import_functions_use_it(
    deployed: Deployment,
) -> None:
    s3 = deployed.client("s3")
    iam = deployed.client("iam")
    bucket = deployed.physical["ImportsBucket"]
    assert deployed.outputs["ImportsBucketName"] == bucket
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto's CloudFormation applies only the encryption: the rest as AWS gets it, translated.
    properties = deployed.translated["Resources"]["ImportsBucket"]["Properties"]
    blocked = properties["PublicAccessBlockConfiguration"]
    assert all(
        blocked[k] for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    (expiry,) = properties["LifecycleConfiguration"]["Rules"]
    assert (expiry["Status"], expiry["ExpirationInDays"], expiry["Prefix"]) == ("Enabled", 1, "uploads/")
    (cors,) = properties["CorsConfiguration"]["CorsRules"]
    assert "POST" in cors["AllowedMethods"] and "*" not in json.dumps(cors["AllowedOrigins"])

    bucket_arn = f"arn:aws:s3:::{bucket}"
    users = {"CrmApiFunction", "ImportJobsFunction"}
    for logical_id in deployed.spec.functions:
        configuration = deployed.function(logical_id)
        variables = configuration["Environment"]["Variables"]
        role = configuration["Role"].rsplit("/", 1)[1]
        s3_statements = [
            statement
            for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
            for statement in policy_document(iam.get_role_policy(RoleName=role, PolicyName=name))["Statement"]
            if "s3:" in json.dumps(statement["Action"])
        ]
        if logical_id in users:
            assert variables["IMPORTS_BUCKET"] == bucket, logical_id
            resources = {
                r for s in s3_statements for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
            }
            assert resources and resources <= {bucket_arn, f"{bucket_arn}/*"}, (logical_id, resources)
        else:
            assert "IMPORTS_BUCKET" not in variables and s3_statements == [], logical_id
    # crm_api queues completed uploads on the queue import_jobs consumes.
    crm_variables = deployed.function("CrmApiFunction")["Environment"]["Variables"]
    assert crm_variables["IMPORT_JOBS_QUEUE_URL"] == deployed.queue_url("ImportJobsQueue")
    (source,) = [s for s in deployed.spec.sqs_sources if s.function_id == "ImportJobsFunction"]
    assert source.queue == "ImportJobsQueue"


# --- what moto skips, checked in the translated template -----------------------------------------


def test_the_http_api_routes_every_declared_route_to_its_function(deployed: Deployment) -> None:
    translated = deployed.translated["Resources"]
    (api,) = [r for r in translated.values() if r["Type"] == "AWS::ApiGatewayV2::Api"]
    routes: set[tuple[str, str, str]] = set()
    for path, methods in api["Properties"]["Body"]["paths"].items():
        for method, operation in methods.items():
            uri = operation["x-amazon-apigateway-integration"]["uri"]["Fn::Sub"]
            (function_id,) = re.findall(r"\$\{(\w+)\.Arn\}", uri)
            assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"
            verb = "ANY" if method == "x-amazon-apigateway-any-method" else method.upper()
            routes.add((verb, path, function_id))
    assert routes == {(r.method, r.path, r.function_id) for r in deployed.spec.routes}


def test_each_rule_may_send_to_its_queue_and_to_the_undelivered_dlq(deployed: Deployment) -> None:
    translated = deployed.translated["Resources"]
    statements = [
        (statement, policy["Properties"]["Queues"])
        for policy in translated.values()
        if policy["Type"] == "AWS::SQS::QueuePolicy"
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    for rule in deployed.spec.event_rules:
        (statement, queues) = next(
            (s, q)
            for s, q in statements
            if s["Condition"]["ArnEquals"]["aws:SourceArn"] == {"Fn::GetAtt": [rule.logical_id, "Arn"]}
        )
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage" and statement["Effect"] == "Allow"
        resources = {r["Fn::GetAtt"][0] for r in statement["Resource"]}
        declared = deployed.sam["Resources"][rule.logical_id]["Properties"]["Targets"]
        dead_letters = {t["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0] for t in declared}
        assert resources == set(rule.queue_targets) | dead_letters
        assert resources <= {q["Ref"] for q in queues}


# --- driving it ----------------------------------------------------------------------------------


@pytest.fixture
def functions_env(deployed: Deployment, pg: LocalDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment a deployed function gets, pointed at moto and the test database."""
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    monkeypatch.setenv("CHANGE_EVENTS_BUS_NAME", deployed.bus_name)
    monkeypatch.setenv("AWS_ENDPOINT_URL", deployed.endpoint)
    monkeypatch.delenv("CHANGE_EVENTS_QUEUE_URL", raising=False)
    monkeypatch.setenv("OLLAMA_EMBEDDING_MODEL", "local:all-minilm-l6-v2")  # in-process, no Ollama here
    monkeypatch.setattr(Runtime, "hosted_publisher", None)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def receive_all(deployed: Deployment, queue: str) -> list[dict[str, Any]]:
    sqs = deployed.client("sqs")
    response = sqs.receive_message(
        QueueUrl=deployed.queue_url(queue), MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    )
    return list(response.get("Messages", []))


def test_a_contact_written_by_the_crm_api_reaches_its_consumers_through_the_deployed_bus(
    deployed: Deployment, functions_env: None, db: Database
) -> None:
    org = create_organization(db, f"Deploy {uuid.uuid4().hex[:6]}", "admin@deploy.example")
    hosts = {logical_id: FunctionHost(spec, concurrency=1) for logical_id, spec in deployed.spec.functions.items()}
    try:
        sample = json.loads((ROOT / "events" / "crm_api" / "http_create_contact.json").read_text())
        response = hosts["CrmApiFunction"].invoke(with_api_key(sample, org.api_key))
        assert response["statusCode"] == 201, response
        contact_id = json.loads(response["body"])["id"]

        consumed: dict[str, int] = {}
        change_event_sources = [
            (source, rule)
            for source in deployed.spec.sqs_sources
            for rule in deployed.spec.event_rules
            if source.queue in rule.queue_targets
        ]
        assert change_event_sources
        for source, rule in change_event_sources:
            messages = receive_all(deployed, source.queue)
            if "contact" not in rule.pattern["detail"]["entity_type"]:
                assert messages == [], source  # its rule does not want contacts
                continue
            (message,) = messages
            change = decode_change_event(message["Body"])
            assert (change.entity_type, str(change.entity_id), change.operation) == ("contact", contact_id, "created")
            queued = QueuedMessage(
                message["MessageId"],
                message["Body"],
                {},
                int(message["Attributes"]["SentTimestamp"]),
                int(message["Attributes"]["ApproximateReceiveCount"]),
            )
            record = sqs_record(queued, deployed.queue_arn(source.queue))
            result = hosts[source.function_id].invoke({"Records": [record]})
            assert result == {"batchItemFailures": []}, (source.function_id, result)
            deployed.client("sqs").delete_message(
                QueueUrl=deployed.queue_url(source.queue), ReceiptHandle=message["ReceiptHandle"]
            )
            consumed[source.function_id] = 1
        assert {"EmbeddingsFunction", "ScoringFunction"} <= set(consumed)
    finally:
        for host in hosts.values():
            host.shutdown()

    with db.organization_scope(org.organization_id) as session:
        embedded = session.scalar(text("SELECT count(*) FROM embeddings WHERE entity_id = :id"), {"id": contact_id})
        scored = session.scalar(text("SELECT count(*) FROM predictions WHERE entity_id = :id"), {"id": contact_id})
    assert embedded == 1 and scored == 1
