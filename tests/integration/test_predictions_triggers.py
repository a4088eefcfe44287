"""The scoring and forecasting handlers driven by real event shapes: API Gateway HTTP API v2,
SQS change events (also through moto's SQS), and the nightly EventBridge schedule."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from okyaku.cli.invoke import with_api_key
from okyaku.config import Settings
from okyaku.crm import schemas
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import ACTIVITY_SPEC, CONTACT_SPEC, ActivityService, RecordService
from okyaku.entry import function_handler
from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import SqsPublisher
from okyaku.predictions.api import create_forecasting_app, create_scoring_app
from okyaku.predictions.models import CurrentPrediction, Prediction, PredictionModel
from okyaku.predictions.service import FORECASTING_TARGETS, SCORING_TARGETS, PredictionService
from okyaku.predictions.triggers import PredictionTriggers
from okyaku.runtime import Runtime
from okyaku.tenancy import NewOrganization, create_organization
from tests.conftest import STAGES

DATA = Path(__file__).resolve().parents[1] / "data" / "predictions"
contacts = RecordService(CONTACT_SPEC)
activities = ActivityService(ACTIVITY_SPEC)
deals = DealService()


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def sqs_event(changes: list[ChangeEvent], bodies: list[str] | None = None) -> dict[str, Any]:
    """Lambda's SQS event for these change events, one record each (the sample's exact shape)."""
    template = load("sqs_change_events.json")["Records"][0]
    records = []
    for change, body in zip(changes, bodies or [c.model_dump_json() for c in changes], strict=True):
        record = copy.deepcopy(template)
        record["messageId"] = str(uuid.uuid4())
        record["body"] = body
        record["md5OfBody"] = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
        record["messageAttributes"]["entity_type"]["stringValue"] = change.entity_type
        record["messageAttributes"]["operation"]["stringValue"] = change.operation
        records.append(record)
    return {"Records": records}


def prediction_handler(runtime: Runtime, create_app: Any, targets: Any) -> Any:
    """The function's handler, wired as functions/{scoring,forecasting}/app.py wire it."""
    service = PredictionService(runtime, writer=None)
    triggers = PredictionTriggers(service, targets)
    return function_handler(
        name="predictions",
        http=create_app(service=service),
        on_record=triggers.on_change_record,
        on_schedule=triggers.on_schedule,
    )


@dataclass
class Env:
    runtime: Runtime
    scoring: Any
    forecasting: Any
    published: list[ChangeEvent]


@pytest.fixture
def env(pg, db, publisher) -> Env:
    runtime = Runtime(Settings(database_url=pg.app_url), db=db, publisher=publisher)
    scoring = prediction_handler(runtime, create_scoring_app, SCORING_TARGETS)
    forecasting = prediction_handler(runtime, create_forecasting_app, FORECASTING_TARGETS)
    return Env(runtime, scoring, forecasting, publisher.events)


def organization(db) -> NewOrganization:
    return create_organization(db, f"Triggers {uuid.uuid4().hex[:6]}", "admin@triggers.example")


def add_lead(env: Env, org: NewOrganization, name: str = "Lead") -> uuid.UUID:
    with env.runtime.transaction(org.organization_id) as session:
        return contacts.create(session, schemas.ContactCreate(first_name=name, job_title="Director of Sales")).id


def history(env: Env, org: NewOrganization, entity_id: uuid.UUID) -> list[Prediction]:
    with env.runtime.transaction(org.organization_id) as session:
        statement = select(Prediction).where(Prediction.entity_id == entity_id).order_by(Prediction.created_at)
        return list(session.scalars(statement))


def events_for(env: Env, entity_id: uuid.UUID) -> list[ChangeEvent]:
    return [e for e in env.published if e.entity_id == entity_id]


def test_http_api_events_reach_the_routes_through_the_handler(env, db):
    org = organization(db)
    lead = add_lead(env, org)
    event = json.loads(
        (DATA / "http_api_v2_lead_score.json")
        .read_text()
        .replace("CONTACT_ID", str(lead))
        .replace("API_KEY", org.api_key)
    )
    response = env.scoring(event, None)
    assert response["statusCode"] == 200, response
    body = json.loads(response["body"])
    assert body["contact_id"] == str(lead) and body["method"] == "prior"

    listing = env.scoring(with_api_key(load("scoring/http_batch_score.json"), org.api_key), None)
    assert listing["statusCode"] == 200
    assert [item["contact_id"] for item in json.loads(listing["body"])["data"]] == [str(lead)]

    forecast = env.forecasting(with_api_key(load("forecasting/http_pipeline_forecast.json"), org.api_key), None)
    assert forecast["statusCode"] == 200 and json.loads(forecast["body"])["deals"] == 0
    refused = env.scoring(load("scoring/http_batch_score.json"), None)  # the sample's placeholder key
    assert refused["statusCode"] == 401 and json.loads(refused["body"])["error"]["code"] == "unauthorized"


def test_a_change_event_rescores_once_and_redelivery_changes_nothing(env, db):
    org = organization(db)
    lead = add_lead(env, org)
    (created,) = events_for(env, lead)
    assert env.scoring(sqs_event([created]), None) == {"batchItemFailures": []}
    assert len(history(env, org, lead)) == 1
    # At-least-once delivery: the same message again is absorbed.
    assert env.scoring(sqs_event([created]), None) == {"batchItemFailures": []}
    assert len(history(env, org, lead)) == 1
    with env.runtime.transaction(org.organization_id) as session:
        current = session.scalars(select(CurrentPrediction).where(CurrentPrediction.entity_id == lead)).one()
        assert current.last_event_id == created.event_id

    # A meeting changes the lead's inputs: its event rescores the contact it belongs to.
    with env.runtime.transaction(org.organization_id) as session:
        meeting = activities.create(
            session,
            schemas.ActivityCreate(type="meeting", contact_id=lead, occurred_at=datetime.now(UTC) - timedelta(days=1)),
        )
    (logged,) = events_for(env, meeting.id)
    assert env.scoring(sqs_event([logged]), None) == {"batchItemFailures": []}
    scores = history(env, org, lead)
    assert len(scores) == 2
    assert "had a meeting in the last 90 days" in [f["label"] for f in scores[1].payload["factors"]]
    assert scores[1].score > scores[0].score
    # Queue-scored rows keep their factors; the templated words are rendered when read.
    assert scores[1].payload["explanation"] is None
    (read, _) = PredictionService(env.runtime).history(org.organization_id, "contact", lead, target=None, limit=5)[
        "data"
    ]
    assert read["prediction_id"] == str(scores[1].id)
    assert f"{scores[1].score:.0f}/100" in read["payload"]["explanation"]
    assert "had a meeting in the last 90 days = 1 (+12.0 pts)" in read["payload"]["explanation"]

    # A burst of edits delivered together: scored once, from the state after all of them.
    for title in ("VP Sales", "Chief Revenue Officer"):
        with env.runtime.transaction(org.organization_id) as session:
            contacts.update(session, lead, schemas.ContactUpdate(job_title=title))
    burst = [e for e in events_for(env, lead) if e.operation == "updated"]
    assert len(burst) == 2
    assert env.scoring(sqs_event(burst), None) == {"batchItemFailures": []}
    assert len(history(env, org, lead)) == 3


def test_deleted_records_are_skipped_and_unreadable_messages_are_reported(env, db):
    org = organization(db)
    lead, gone = add_lead(env, org, "Kept"), add_lead(env, org, "Gone")
    with env.runtime.transaction(org.organization_id) as session:
        contacts.delete(session, gone)
    deleted = next(e for e in events_for(env, gone) if e.operation == "deleted")
    (created,) = events_for(env, lead)
    batch = sqs_event(
        [deleted, created, created], bodies=[deleted.model_dump_json(), "not json", created.model_dump_json()]
    )
    result = env.scoring(batch, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": batch["Records"][1]["messageId"]}]}
    assert history(env, org, gone) == []
    assert len(history(env, org, lead)) == 1


def test_the_deal_consumer_rescores_open_deals_only(env, db):
    org = organization(db)
    with env.runtime.transaction(org.organization_id) as session:
        pipeline = PipelineService().create(session, schemas.PipelineCreate(name="Sales", stages=STAGES))
        won_stage = next(s.id for s in pipeline.stages if s.is_won)
        open_deal = deals.create(session, schemas.DealCreate(name="Open", amount=2500))
        won_deal = deals.create(session, schemas.DealCreate(name="Won", amount=900, stage_id=won_stage))
    changes = [events_for(env, open_deal.id)[0], events_for(env, won_deal.id)[0]]
    assert env.forecasting(sqs_event(changes), None) == {"batchItemFailures": []}
    (forecast,) = history(env, org, open_deal.id)
    assert forecast.target == "deal_forecast" and forecast.payload["predicted_amount"] == 2500
    assert history(env, org, won_deal.id) == []
    # The scoring function ignores deals (not its targets); the forecasting one ignores leads.
    lead = add_lead(env, org)
    assert env.forecasting(sqs_event(events_for(env, lead)), None) == {"batchItemFailures": []}
    assert history(env, org, lead) == []


def test_change_events_delivered_through_sqs(env, db, sqs, moto_endpoint):
    queue_url = sqs.create_queue(QueueName=f"okyaku-scoring-{uuid.uuid4().hex[:6]}")["QueueUrl"]
    org = organization(db)
    leads = [add_lead(env, org, f"Queued {i}") for i in range(3)]
    SqsPublisher(queue_url, endpoint_url=moto_endpoint).publish([events_for(env, lead)[0] for lead in leads])
    received = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    )["Messages"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": m["Attributes"],
            "messageAttributes": {
                k: {
                    "stringValue": v["StringValue"],
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": "String",
                }
                for k, v in m["MessageAttributes"].items()
            },
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": arn,
            "awsRegion": "us-east-1",
        }
        for m in received
    ]
    assert len(records) == 3
    assert env.scoring({"Records": records}, None) == {"batchItemFailures": []}
    assert all(len(history(env, org, lead)) == 1 for lead in leads)


def test_the_nightly_schedule_retrains_and_rescores_every_organization(env, db):
    orgs = [organization(db), organization(db)]
    leads = {org.organization_id: add_lead(env, org) for org in orgs}
    report = env.scoring(load("scoring/schedule.json"), None)
    assert report["organizations"] >= 2
    assert not [e for e in report["errors"] if any(str(o.organization_id) in e for o in orgs)]
    for org in orgs:
        with env.runtime.transaction(org.organization_id) as session:
            trained = dict(
                session.execute(select(PredictionModel.target, func.count()).group_by(PredictionModel.target)).all()
            )
            assert trained == {"lead": 1, "churn": 1}
        (score,) = history(env, org, leads[org.organization_id])
        assert score.target == "lead_score" and score.method == "prior"
    report = env.forecasting(load("forecasting/schedule.json"), None)
    assert report["trained"].get("deal", 0) >= 2


def test_turned_off_predictions_leave_the_queue_and_the_schedule_alone(pg, db, publisher):
    runtime = Runtime(Settings(database_url=pg.app_url, ai_predictions_enabled=False), db=db, publisher=publisher)
    handler = prediction_handler(runtime, create_scoring_app, SCORING_TARGETS)
    org = organization(db)
    with runtime.transaction(org.organization_id) as session:
        lead = contacts.create(session, schemas.ContactCreate(first_name="Quiet")).id
    event = sqs_event([e for e in publisher.events if e.entity_id == lead])
    assert handler(event, None) == {"batchItemFailures": []}
    assert handler(load("scoring/schedule.json"), None) == {"skipped": "AI_PREDICTIONS_ENABLED=false"}
    with runtime.transaction(org.organization_id) as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 0


def test_the_nightly_schedule_fans_out_one_message_per_organization_each_retried_alone(pg, db, publisher, sqs):
    queue_url = sqs.create_queue(QueueName=f"scoring-jobs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    settings = Settings(
        database_url=pg.app_url, prediction_jobs_queue_url=queue_url, aws_endpoint_url=sqs.meta.endpoint_url
    )
    runtime = Runtime(settings, db=db, publisher=publisher)
    handler = prediction_handler(runtime, create_scoring_app, SCORING_TARGETS)
    env = Env(runtime, handler, handler, publisher.events)
    orgs = [organization(db), organization(db)]
    leads = {org.organization_id: add_lead(env, org) for org in orgs}

    report = handler(load("scoring/schedule.json"), None)
    assert report["not_queued"] == [] and report["queued"] == report["organizations"] >= 2
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        messages += batch
    bodies = {json.loads(m["Body"])["organization_id"]: m["Body"] for m in messages}
    assert len(messages) == report["queued"] and {str(o.organization_id) for o in orgs} <= set(bodies)
    nothing_trained_yet = history(env, orgs[0], leads[orgs[0].organization_id])
    assert nothing_trained_yet == []  # the schedule only queued the work

    # Each message is one organization's run; one that cannot run fails alone and is retried.
    ours = [bodies[str(o.organization_id)] for o in orgs]
    broken = json.dumps({"job": "nightly", "organization_id": "not-a-uuid"})
    shapes = [events_for(env, lead)[0] for lead in leads.values()]  # record attributes only
    event = sqs_event([*shapes, shapes[0]], bodies=[*ours, broken])
    response = handler(event, None)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [event["Records"][2]["messageId"]]
    for org in orgs:
        (score,) = history(env, org, leads[org.organization_id])
        assert score.target == "lead_score"
