"""One handler per function tells the three event shapes apart (okyaku.entry.classify_event)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from okyaku.entry import classify_event as event_kind
from okyaku.events import decode_change_event

DATA = Path(__file__).resolve().parents[1] / "data" / "predictions"
ROOT_EVENTS = Path(__file__).resolve().parents[2] / "events"


def load(path: Path):
    return json.loads(path.read_text())


def test_the_sample_events_are_told_apart():
    assert event_kind(load(DATA / "http_api_v2_lead_score.json")) == "http"
    assert event_kind(load(DATA / "scoring" / "http_batch_score.json")) == "http"
    assert event_kind(load(DATA / "scoring" / "schedule.json")) == "schedule"
    assert event_kind(load(DATA / "forecasting" / "schedule.json")) == "schedule"
    assert event_kind(load(DATA / "sqs_change_events.json")) == "sqs"
    assert event_kind(load(ROOT_EVENTS / "sqs_change_event.json")) == "sqs"
    assert event_kind({"job": "nightly"}) == "schedule"  # a rule's constant Input


def test_change_events_are_read_plain_or_wrapped_by_eventbridge():
    body = load(ROOT_EVENTS / "sqs_change_event.json")["Records"][0]["body"]
    plain = decode_change_event(body)
    wrapped = decode_change_event(
        json.dumps({"version": "0", "detail-type": "okyaku.change", "source": "okyaku.crm", "detail": json.loads(body)})
    )
    assert plain == wrapped and plain.entity_type == "contact" and plain.version == 3
    with pytest.raises(ValueError):
        decode_change_event(json.dumps({"event_id": str(uuid.uuid4())}))
