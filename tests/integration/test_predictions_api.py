"""The predictions API over a real organization's history (real Postgres, RLS, the CRM services)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from okyaku.config import Settings
from okyaku.crm import schemas
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import ACTIVITY_SPEC, CONTACT_SPEC, ActivityService, RecordService
from okyaku.predictions.api import create_forecasting_app, create_scoring_app
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.conftest import STAGES
from tests.support.synthetic_crm import CrmHistory, create_crm_history

contacts = RecordService(CONTACT_SPEC)
activities = ActivityService(ACTIVITY_SPEC)
deals = DealService()


@dataclass
class World:
    runtime: Runtime
    organization_id: uuid.UUID
    history: CrmHistory
    scoring: TestClient
    forecasting: TestClient
    open_deals: list[uuid.UUID]
    closed_deal: uuid.UUID
    stage_probability: dict[uuid.UUID, float]


@pytest.fixture(scope="module")
def world(pg, db):
    runtime = Runtime(Settings(database_url=pg.app_url), db=db, publisher=None)
    org = create_organization(db, f"Predictions {uuid.uuid4().hex[:6]}", "admin@predictions.example")
    today = datetime.now(UTC).date()
    with runtime.transaction(org.organization_id) as session:
        # 300 labelled leads (the service path, in one transaction so that setup stays quick).
        history = create_crm_history(session, labelled=300, open_leads=25, seed=7, leak_property=True)
        pipeline = PipelineService().create(session, schemas.PipelineCreate(name="Sales", stages=STAGES))
        stage = {s.name: s for s in pipeline.stages}
        open_deals, probability = [], {}
        for i, (name, amount, days) in enumerate(
            [("Qualification", 1000, 20), ("Proposal", 5000, 45), ("Negotiation", 12000, 10), ("Proposal", 800, 90)]
        ):
            deal = deals.create(
                session,
                schemas.DealCreate(
                    name=f"Open {i}",
                    amount=amount,
                    stage_id=stage[name].id,
                    contact_id=history.open_leads[i],
                    expected_close_date=today + timedelta(days=days),
                ),
            )
            open_deals.append(deal.id)
            probability[deal.id] = float(stage[name].probability)
        for i in range(12):
            deal = deals.create(session, schemas.DealCreate(name=f"Closed {i}", amount=1000 + 100 * i))
            outcome = "Closed Won" if i % 3 else "Closed Lost"
            deals.update(session, deal.id, schemas.DealUpdate(stage_id=stage[outcome].id))
        closed_deal = deal.id
    auth = {"Authorization": f"Bearer {org.api_key}"}
    scoring = TestClient(create_scoring_app(runtime, writer=None), headers=auth)
    forecasting = TestClient(create_forecasting_app(runtime, writer=None), headers=auth)
    yield World(runtime, org.organization_id, history, scoring, forecasting, open_deals, closed_deal, probability)
    scoring.close()
    forecasting.close()


def new_lead(world: World, *, meetings: int, industry: str = "software", title: str = "VP Finance") -> uuid.UUID:
    now = datetime.now(UTC)
    with world.runtime.transaction(world.organization_id) as session:
        contact = contacts.create(
            session,
            schemas.ContactCreate(
                first_name="Probe", last_name=industry, job_title=title, company_id=world.history.companies[industry]
            ),
        )
        for day in range(meetings):
            activities.create(
                session,
                schemas.ActivityCreate(
                    type="meeting", contact_id=contact.id, occurred_at=now - timedelta(days=day + 2)
                ),
            )
    return contact.id


def test_training_finds_the_known_signal_and_leaves_out_the_leak(world):
    response = world.scoring.post("/api/v1/ai/predictions/models/lead/train")
    assert response.status_code == 200, response.text
    lead = response.json()[0]
    assert lead["method"] == "model" and lead["n_examples"] == 300
    metrics = lead["metrics"]
    assert metrics["auc"] > 0.65 and metrics["holdout"].startswith("time-based")
    assert len(metrics["calibration_by_decile"]) == 10
    top = [f["feature"] for f in metrics["top_factors"][:5]]
    assert {"seniority", "company_industry"} <= set(top)
    assert any(name.startswith("meetings_") for name in top)
    excluded = {e["feature"]: e["reason"] for e in lead["excluded_features"]}
    assert excluded["custom.signed_contract"].startswith("leak")
    assert {"lifecycle_stage", "lead_status"} <= set(excluded)
    assert "custom.signed_contract" not in [f["name"] for f in lead["features"]]

    models = world.scoring.get("/api/v1/ai/predictions/models").json()
    assert {m["target"]: m["version"] for m in models}["lead"] == lead["version"]


def test_a_lead_score_names_what_moves_it_and_is_kept_in_history(world):
    keen = new_lead(world, meetings=3)
    response = world.scoring.post(f"/api/v1/ai/predictions/lead-score/{keen}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "model" and 0 <= body["score"] <= 100
    assert body["score"] == pytest.approx(100 * body["probability"], abs=0.051)
    assert body["score"] > body["typical_score"]
    raising = [f["feature"] for f in body["factors"] if f["direction"] == "up"]
    assert any(name.startswith("meetings_") for name in raising) and "seniority" in raising
    for factor in body["factors"]:
        assert (factor["impact"] > 0) == (factor["direction"] == "up")
    assert set(body["sub_scores"]) == {"engagement", "fit", "timing"}
    assert body["sub_scores"]["engagement"]["impact"] > 0
    # No LLM configured: the template explains, and says the answer is degraded.
    assert body["explanation_source"] == "template" and body["degraded"] is True
    assert f"{body['score']:.0f}/100" in body["explanation"]

    cold = new_lead(world, meetings=0, industry="retail", title="Analyst")
    colder = world.scoring.post(f"/api/v1/ai/predictions/lead-score/{cold}").json()
    assert colder["score"] < body["score"]

    again = world.scoring.post(f"/api/v1/ai/predictions/lead-score/{keen}").json()
    history = world.scoring.get(f"/api/v1/ai/predictions/history/contact/{keen}").json()
    assert [h["prediction_id"] for h in history["data"]] == [again["prediction_id"], body["prediction_id"]]
    assert history["data"][1]["payload"]["factors"] == body["factors"]


def test_lead_scores_refuse_what_they_do_not_apply_to(world, make_tenant):
    customer = next(c for c, label in world.history.labels.items() if label == 1)
    response = world.scoring.post(f"/api/v1/ai/predictions/lead-score/{customer}")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "contact_id"
    missing = world.scoring.post(f"/api/v1/ai/predictions/lead-score/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert world.scoring.post("/api/v1/ai/predictions/lead-score/not-a-uuid").status_code == 422
    # Another organization's lead does not exist for this one (row-level security).
    other = make_tenant("Other")
    theirs = other.client.post("/api/v1/contacts", json={"first_name": "Theirs"}).json()["id"]
    assert world.scoring.post(f"/api/v1/ai/predictions/lead-score/{theirs}").status_code == 404
    assert world.scoring.get(f"/api/v1/ai/predictions/history/contact/{theirs}").status_code == 404
    unauthenticated = TestClient(world.scoring.app).post(f"/api/v1/ai/predictions/lead-score/{theirs}")
    assert unauthenticated.status_code == 401


def test_churn_risk_below_the_history_threshold_uses_the_transparent_prior(world):
    customer = next(c for c, label in world.history.labels.items() if label == 1)
    response = world.scoring.post(f"/api/v1/ai/predictions/churn-risk/{customer}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "prior" and body["algorithm"] == "rules"
    assert body["level"] in ("low", "medium", "high")
    # The prior's score is its starting rate plus exactly its rules' points (kept within 1-99).
    points = body["typical_score"] + sum(f["impact"] for f in body["factors"])
    assert body["score"] == pytest.approx(min(max(points, 1.0), 99.0), abs=0.11)
    assert "not yet enough history" in body["explanation"]
    churn = next(m for m in world.scoring.get("/api/v1/ai/predictions/models").json() if m["target"] == "churn")
    assert churn["method"] == "prior" and "a model needs 200" in churn["metrics"]["reason"]
    lead = next(c for c in world.history.open_leads)
    assert world.scoring.post(f"/api/v1/ai/predictions/churn-risk/{lead}").status_code == 422


def test_batch_score_lists_every_open_lead_by_score_in_pages(world):
    first = world.scoring.get("/api/v1/ai/predictions/batch-score", params={"limit": 10})
    assert first.status_code == 200, first.text
    page = first.json()
    seen = list(page["data"])
    while page["next_cursor"]:
        page = world.scoring.get(
            "/api/v1/ai/predictions/batch-score", params={"limit": 10, "cursor": page["next_cursor"]}
        ).json()
        seen += page["data"]
    ids = [item["contact_id"] for item in seen]
    assert len(ids) == len(set(ids))
    assert set(map(str, world.history.open_leads)) <= set(ids)
    assert not {str(c) for c in world.history.contacts} & set(ids)  # converted or disqualified: not leads
    scores = [item["score"] for item in seen]
    assert scores == sorted(scores, reverse=True)
    assert all(len(item["top_factors"]) <= 3 for item in seen)
    # Everything is scored now: a second listing scores nothing new.
    again = world.scoring.get("/api/v1/ai/predictions/batch-score", params={"sort": "score", "limit": 5}).json()
    assert again["freshly_scored"] == 0
    assert [i["score"] for i in again["data"]] == sorted(scores)[:5]
    high = world.scoring.get("/api/v1/ai/predictions/batch-score", params={"min_score": 50, "limit": 200}).json()
    assert all(i["score"] >= 50 for i in high["data"]) and len(high["data"]) == sum(s >= 50 for s in scores)
    bad = world.scoring.get("/api/v1/ai/predictions/batch-score", params={"sort": "name"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "sort"
    wrong = world.scoring.get("/api/v1/ai/predictions/batch-score", params={"cursor": first.json()["next_cursor"]})
    assert wrong.status_code == 200  # the cursor matches the default sort
    mismatch = world.scoring.get(
        "/api/v1/ai/predictions/batch-score", params={"sort": "score", "cursor": first.json()["next_cursor"]}
    )
    assert mismatch.status_code == 422


def test_deal_forecast_and_the_pipeline_forecast(world):
    deal_id = world.open_deals[2]  # Negotiation, 12,000, closing in 10 days
    response = world.forecasting.post(f"/api/v1/ai/predictions/deal-forecast/{deal_id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["method"] == "prior"  # 12 closed deals: far below the threshold
    assert body["close_probability"] == pytest.approx(body["score"] / 100, abs=0.001)
    rules = sum(f["impact"] for f in body["factors"])
    assert body["score"] == pytest.approx(100 * world.stage_probability[deal_id] + rules, abs=0.11)
    assert body["predicted_amount"] == 12000 and body["amount_source"] == "deal"
    assert body["expected_value"] == pytest.approx(12000 * body["close_probability"], abs=0.01)
    assert body["predicted_close_date"] == (date.today() + timedelta(days=10)).isoformat()
    assert body["close_date_source"] == "expected_close_date"
    assert body["confidence"] == "low" and body["stage"] == "Negotiation"
    assert all(f["direction"] == "down" for f in body["risk_factors"])
    closed = world.forecasting.post(f"/api/v1/ai/predictions/deal-forecast/{world.closed_deal}")
    assert closed.status_code == 422

    forecast = world.forecasting.get("/api/v1/ai/predictions/pipeline-forecast", params={"simulations": 2000})
    assert forecast.status_code == 200, forecast.text
    pipeline = forecast.json()
    assert pipeline["deals"] == 4 and len(pipeline["by_month"]) == 6
    total = pipeline["total"]
    assert total["p10"] <= total["p50"] <= total["p90"]
    forecasts = [world.forecasting.post(f"/api/v1/ai/predictions/deal-forecast/{d}").json() for d in world.open_deals]
    expected = sum(f["expected_value"] for f in forecasts)
    # Each figure is rounded to cents, so sums may differ by half a cent per rounded term.
    assert total["expected"] + pipeline["later"]["expected"] == pytest.approx(
        expected, abs=0.005 * (len(forecasts) + 2)
    )
    assert {s["stage"] for s in pipeline["by_stage"]} == {"Qualification", "Proposal", "Negotiation"}
    by_month = [m["expected"] for m in pipeline["by_month"]]
    assert sum(by_month) == pytest.approx(total["expected"], abs=0.005 * (len(by_month) + 1))


def test_turned_off_predictions_answer_503(world):
    settings = Settings(database_url=world.runtime.settings.database_url, ai_predictions_enabled=False)
    runtime = Runtime(settings, db=world.runtime.db, publisher=None)
    client = TestClient(create_scoring_app(runtime, writer=None), headers=world.scoring.headers)
    response = client.get("/api/v1/ai/predictions/batch-score")
    assert response.status_code == 503 and response.json()["error"]["code"] == "feature_disabled"
    assert client.get("/api/v1/ai/scoring/health").status_code == 200
