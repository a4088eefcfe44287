"""The scan on a real Postgres: stale deals against the organization's own rhythm, every close-date
push / amount cut / stage regression flagged with before and after, dedup (one open anomaly per
entity and type, updated), data gaps, notifications per owner, status transitions over HTTP."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from okyaku.anomalies.api import create_anomalies_app
from okyaku.anomalies.service import AnomalyService
from okyaku.runtime import Runtime


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def service(runtime: Runtime, clock: Clock) -> AnomalyService:
    return AnomalyService(runtime, None, clock=clock)


@pytest.fixture
def api(service: AnomalyService, tenant: Any) -> TestClient:
    app = create_anomalies_app(service)
    return TestClient(app, headers={"Authorization": f"Bearer {tenant.org.api_key}"})


def stage_ids(pipeline: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["id"] for s in pipeline["stages"]}


def create_deal(tenant: Any, pipeline: dict[str, Any], name: str, **fields: Any) -> dict[str, Any]:
    body = {"name": name, "pipeline_id": pipeline["id"], "amount": "10000", "expected_close_date": "2027-03-01"}
    body.update(fields)
    response = tenant.client.post("/api/v1/deals", json=body)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def patch_deal(tenant: Any, deal_id: str, **changes: Any) -> dict[str, Any]:
    response = tenant.client.patch(f"/api/v1/deals/{deal_id}", json=changes)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def log_activity(tenant: Any, deal_id: str, at: datetime) -> None:
    response = tenant.client.post(
        "/api/v1/activities",
        json={"type": "call", "subject": "check-in", "deal_id": deal_id, "occurred_at": at.isoformat()},
    )
    assert response.status_code == 201, response.text


def anomalies(api: TestClient, **filters: Any) -> list[dict[str, Any]]:
    response = api.get("/api/v1/ai/anomalies", params={"limit": 200, **filters})
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def test_a_deal_quiet_for_longer_than_its_stage_usually_is_stale(
    tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient, clock: Clock
) -> None:
    start = clock.now
    busy = [create_deal(tenant, pipeline, f"Busy {i}") for i in range(6)]
    quiet = create_deal(tenant, pipeline, "Quiet", amount="90000")
    for deal in busy:  # touched every two days for a month: the stage's rhythm
        for day in range(2, 31, 2):
            log_activity(tenant, deal["id"], start + timedelta(days=day))
    for day in range(2, 11, 2):
        log_activity(tenant, quiet["id"], start + timedelta(days=day))

    clock.now = start + timedelta(days=31)
    report = service.scan(tenant.id)
    assert report.found.get("stale_deal") == 1
    (stale,) = anomalies(api, type="stale_deal")
    assert stale["entity_id"] == quiet["id"] and stale["status"] == "open"
    evidence = stale["evidence"]
    assert evidence["threshold_basis"] == "stage_p90"
    assert evidence["threshold_days"] == pytest.approx(3.0)  # 2-day gaps, floored at three quiet days
    assert evidence["idle_days"] == pytest.approx(21, abs=0.1)
    assert stale["owner_id"] == str(tenant.org.user_id)

    # Touched again: the next scan resolves it by itself.
    log_activity(tenant, quiet["id"], clock.now - timedelta(hours=1))
    report = service.scan(tenant.id)
    assert report.resolved == 1
    assert anomalies(api, type="stale_deal", status="open") == []
    assert [a["status"] for a in anomalies(api, type="stale_deal")] == ["resolved"]


def test_with_too_few_gaps_the_fallback_bar_is_used(
    tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient, clock: Clock
) -> None:
    deal = create_deal(tenant, pipeline, "Lonely")
    clock.advance(days=10)
    service.scan(tenant.id)
    assert anomalies(api, type="stale_deal") == []  # 10 quiet days < the 14-day fallback
    clock.advance(days=5)
    service.scan(tenant.id)
    (stale,) = anomalies(api, type="stale_deal")
    assert stale["entity_id"] == deal["id"]
    assert stale["evidence"]["threshold_basis"] == "fallback" and stale["evidence"]["threshold_days"] == 14.0


def test_every_push_cut_and_regression_is_flagged_with_before_and_after(
    tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient, clock: Clock
) -> None:
    stages = stage_ids(pipeline)
    order = ["Qualification", "Proposal", "Negotiation"]
    rng = random.Random(5)
    deals = {}
    for i in range(8):
        deal = create_deal(
            tenant,
            pipeline,
            f"Deal {i}",
            amount=str(rng.randrange(5_000, 100_000, 500)),
            expected_close_date=(date(2027, 1, 1) + timedelta(days=rng.randrange(0, 90))).isoformat(),
            stage_id=stages[rng.choice(order)],
        )
        deals[deal["id"]] = deal
    service.scan(tenant.id)  # the baseline: nothing changed yet
    assert anomalies(api, type="deal_change") == []

    expected: dict[str, list[tuple[str, Any, Any]]] = {}
    rounds: dict[str, int] = {}  # scans that saw a flagged change, per deal
    for _round in range(3):
        clock.advance(days=1)
        before = {deal_id: len(changes) for deal_id, changes in expected.items()}
        for deal_id, deal in deals.items():
            change = rng.choice(["push", "pull", "cut", "raise", "back", "forward", "none"])
            current_stage = next(name for name, sid in stages.items() if sid == deal["stage_id"])
            position = order.index(current_stage)
            if change == "push":
                after = (
                    date.fromisoformat(deal["expected_close_date"]) + timedelta(days=rng.randint(1, 60))
                ).isoformat()
                expected.setdefault(deal_id, []).append(("close_date_pushed", deal["expected_close_date"], after))
                deal.update(patch_deal(tenant, deal_id, expected_close_date=after))
            elif change == "pull":
                after = (
                    date.fromisoformat(deal["expected_close_date"]) - timedelta(days=rng.randint(1, 20))
                ).isoformat()
                deal.update(patch_deal(tenant, deal_id, expected_close_date=after))
            elif change == "cut":
                after_amount = round(float(deal["amount"]) * rng.uniform(0.3, 0.95), 2)
                expected.setdefault(deal_id, []).append(("amount_cut", float(deal["amount"]), after_amount))
                deal.update(patch_deal(tenant, deal_id, amount=str(after_amount)))
            elif change == "raise":
                deal.update(patch_deal(tenant, deal_id, amount=str(float(deal["amount"]) + 1000)))
            elif change == "back" and position > 0:
                target = order[rng.randrange(0, position)]
                expected.setdefault(deal_id, []).append(("stage_regression", current_stage, target))
                deal.update(patch_deal(tenant, deal_id, stage_id=stages[target]))
            elif change == "forward" and position < len(order) - 1:
                deal.update(patch_deal(tenant, deal_id, stage_id=stages[order[position + 1]]))
        service.scan(tenant.id)
        for deal_id, changes in expected.items():
            rounds[deal_id] = rounds.get(deal_id, 0) + (len(changes) > before.get(deal_id, 0))

    found = {a["entity_id"]: a for a in anomalies(api, type="deal_change")}
    assert set(found) == set(expected)  # every changed deal flagged; forward moves, pulls, raises are not
    for deal_id, changes in expected.items():
        anomaly = found[deal_id]
        seen = [(c["kind"], c["before"], c["after"]) for c in anomaly["evidence"]["changes"]]
        assert seen == changes  # in order, each once, with before and after
        assert anomaly["detection_count"] == rounds[deal_id]  # the open anomaly was updated, not re-created
    # one open anomaly per deal however many scans saw changes
    assert len(found) == len(anomalies(api, type="deal_change"))


def test_an_open_anomaly_is_updated_not_re_created_and_a_dismissed_one_stays_quiet(
    tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient, clock: Clock
) -> None:
    deal = create_deal(tenant, pipeline, "Dedup")
    service.scan(tenant.id)
    for days in (10, 20):
        clock.advance(days=1)
        patch_deal(tenant, deal["id"], expected_close_date=(date(2027, 3, 1) + timedelta(days=days)).isoformat())
        service.scan(tenant.id)
    (anomaly,) = anomalies(api, type="deal_change")
    assert anomaly["detection_count"] == 2
    assert [c["after"] for c in anomaly["evidence"]["changes"]] == ["2027-03-11", "2027-03-21"]

    assert api.post(f"/api/v1/ai/anomalies/{anomaly['id']}/acknowledge").json()["status"] == "acknowledged"
    conflict = api.post(f"/api/v1/ai/anomalies/{anomaly['id']}/acknowledge")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "invalid_transition"
    dismissed = api.post(f"/api/v1/ai/anomalies/{anomaly['id']}/dismiss", json={"note": "customer asked"})
    assert dismissed.json()["status"] == "dismissed" and dismissed.json()["status_note"] == "customer asked"
    assert api.post(f"/api/v1/ai/anomalies/{anomaly['id']}/resolve").status_code == 409

    clock.advance(days=1)
    patch_deal(tenant, deal["id"], expected_close_date="2027-06-01")
    report = service.scan(tenant.id)
    assert report.suppressed == 1
    assert [a["status"] for a in anomalies(api, type="deal_change")] == ["dismissed"]

    assert api.post(f"/api/v1/ai/anomalies/{anomaly['id']}/explode").status_code == 422
    assert api.post(f"/api/v1/ai/anomalies/{uuid.uuid4()}/resolve").status_code == 404


def test_data_gaps_and_owner_notifications(
    tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient, clock: Clock
) -> None:
    incomplete = create_deal(tenant, pipeline, "No numbers", amount=None, expected_close_date=None)
    for i in range(3):
        tenant.client.post("/api/v1/contacts", json={"first_name": f"Nomail{i}"})
    tenant.client.post("/api/v1/contacts", json={"first_name": "Has", "email": "has@example.com"})
    service.scan(tenant.id)
    gaps = {a["entity_key"]: a for a in anomalies(api, type="data_gap")}
    deal_gap = gaps[f"deal:{incomplete['id']}"]
    assert deal_gap["evidence"]["missing"] == ["amount", "expected_close_date"]
    email_gap = gaps["missing:contact.email"]
    assert (email_gap["evidence"]["missing"], email_gap["evidence"]["total"]) == (3, 4)
    assert email_gap["severity"] == "high"  # 75 % of contacts cannot be emailed

    notifications = api.get("/api/v1/notifications").json()
    assert {n["anomaly_id"] for n in notifications} == {deal_gap["id"], email_gap["id"]}
    assert all(n["email_status"] == "digest" for n in notifications)  # not critical: the weekly e-mail
    first = notifications[0]
    read = api.post(f"/api/v1/notifications/{first['id']}/read")
    assert read.status_code == 200 and read.json()["read_at"] is not None
    assert {n["id"] for n in api.get("/api/v1/notifications", params={"unread": "true"}).json()} == {
        n["id"] for n in notifications[1:]
    }
    # a second scan notifies nobody again
    assert service.scan(tenant.id).notifications == 0


def test_filters_and_isolation(
    make_tenant: Any, tenant: Any, pipeline: dict[str, Any], service: AnomalyService, api: TestClient
) -> None:
    create_deal(tenant, pipeline, "Gap", amount=None)
    service.scan(tenant.id)
    (gap,) = anomalies(api, type="data_gap", entity_type="deal")
    assert anomalies(api, type="data_gap", severity="critical") == []
    assert anomalies(api, entity_id=gap["entity_id"])[0]["id"] == gap["id"]
    assert api.get("/api/v1/ai/anomalies", params={"severity": "huge"}).status_code == 422
    other = make_tenant("Other")
    other_api = TestClient(api.app, headers={"Authorization": f"Bearer {other.org.api_key}"})
    assert other_api.get(f"/api/v1/ai/anomalies/{gap['id']}").status_code == 404
    assert other_api.post(f"/api/v1/ai/anomalies/{gap['id']}/resolve").status_code == 404
    assert other_api.get("/api/v1/ai/anomalies").json()["total"] == 0


def test_scan_now_over_http_and_the_feature_switch(tenant: Any, pipeline: dict[str, Any], runtime: Runtime) -> None:
    create_deal(tenant, pipeline, "Gap", amount=None)
    app = create_anomalies_app(AnomalyService(runtime))
    client = TestClient(app, headers={"Authorization": f"Bearer {tenant.org.api_key}"})
    report = client.post("/api/v1/ai/anomalies/scan").json()
    assert report["found"]["data_gap"] == 1 and report["created"] >= 1
    off = Runtime(runtime.settings.model_copy(update={"ai_anomalies_enabled": False}), db=runtime.db)
    disabled = TestClient(create_anomalies_app(AnomalyService(off)), headers=client.headers)
    response = disabled.get("/api/v1/ai/anomalies")
    assert response.status_code == 503 and response.json()["error"]["code"] == "feature_disabled"
