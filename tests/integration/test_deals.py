"""Pipelines, deals, stage changes and their history."""

from __future__ import annotations

from tests.conftest import STAGES


def stage_id(pipeline, name):
    return next(s["id"] for s in pipeline["stages"] if s["name"] == name)


def test_pipeline_keeps_stage_order(pipeline):
    assert [s["name"] for s in pipeline["stages"]] == [s["name"] for s in STAGES]
    assert pipeline["is_default"] is True


def test_deal_defaults_to_first_stage_and_records_history(tenant, pipeline):
    client = tenant.client
    deal = client.post("/api/v1/deals", json={"name": "Big one", "amount": "12000.50"}).json()
    assert deal["stage_id"] == stage_id(pipeline, "Qualification")
    assert deal["status"] == "open"
    assert deal["currency"] == "USD"

    moved = client.patch(f"/api/v1/deals/{deal['id']}", json={"stage_id": stage_id(pipeline, "Proposal")}).json()
    won = client.patch(f"/api/v1/deals/{deal['id']}", json={"stage_id": stage_id(pipeline, "Closed Won")}).json()
    assert moved["closed_at"] is None
    assert won["status"] == "won" and won["closed_at"] is not None

    history = client.get(f"/api/v1/deals/{deal['id']}/stage-history").json()
    assert [(h["from_stage_id"], h["to_stage_id"]) for h in history] == [
        (None, stage_id(pipeline, "Qualification")),
        (stage_id(pipeline, "Qualification"), stage_id(pipeline, "Proposal")),
        (stage_id(pipeline, "Proposal"), stage_id(pipeline, "Closed Won")),
    ]
    reopened = client.patch(f"/api/v1/deals/{deal['id']}", json={"stage_id": stage_id(pipeline, "Negotiation")})
    assert reopened.json()["closed_at"] is None and reopened.json()["status"] == "open"


def test_stage_of_another_pipeline_is_refused(tenant, pipeline):
    other = tenant.client.post(
        "/api/v1/pipelines", json={"name": "Renewals", "stages": [{"name": "Due", "probability": 0.5}]}
    ).json()
    response = tenant.client.post("/api/v1/deals", json={"name": "X", "stage_id": other["stages"][0]["id"]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "stage_id"


def test_deal_filters_and_amount_sort(tenant, pipeline):
    client = tenant.client
    for amount in ("500", None, "9000", "42"):
        client.post("/api/v1/deals", json={"name": f"D{amount}", "amount": amount})
    ordered = client.get("/api/v1/deals", params={"sort": "-amount", "limit": 2}).json()
    assert [d["amount"] for d in ordered["data"]] == ["9000.00", "500.00"]
    rest = client.get("/api/v1/deals", params={"sort": "-amount", "cursor": ordered["next_cursor"]}).json()
    assert [d["amount"] for d in rest["data"]] == ["42.00", None]
    in_stage = client.get("/api/v1/deals", params={"stage_id": stage_id(pipeline, "Qualification")}).json()
    assert len(in_stage["data"]) == 4


def test_pipeline_stage_edits(tenant, pipeline):
    client = tenant.client
    stages = [
        {
            "id": s["id"],
            "name": s["name"],
            "probability": s["probability"],
            "is_won": s["is_won"],
            "is_lost": s["is_lost"],
        }
        for s in pipeline["stages"]
    ]
    deal = client.post("/api/v1/deals", json={"name": "Sticky"}).json()
    without_used = stages[1:]
    refused = client.patch(f"/api/v1/pipelines/{pipeline['id']}", json={"stages": without_used})
    assert refused.status_code == 409
    reordered = [stages[0], {"name": "Demo", "probability": 0.25}, *stages[1:]]
    updated = client.patch(f"/api/v1/pipelines/{pipeline['id']}", json={"stages": reordered})
    assert updated.status_code == 200, updated.text
    assert [s["name"] for s in updated.json()["stages"]][:3] == ["Qualification", "Demo", "Proposal"]
    assert updated.json()["version"] == 2
    assert client.get(f"/api/v1/deals/{deal['id']}").json()["stage_id"] == stages[0]["id"]
    assert client.delete(f"/api/v1/pipelines/{pipeline['id']}").status_code == 409


def test_stage_validation(tenant):
    both = tenant.client.post(
        "/api/v1/pipelines",
        json={
            "name": "Bad",
            "stages": [{"name": "Odd", "probability": 0.5, "is_won": True, "is_lost": True}],
        },
    )
    assert both.status_code == 422
    dupes = tenant.client.post(
        "/api/v1/pipelines",
        json={
            "name": "Bad",
            "stages": [{"name": "A", "probability": 0.1}, {"name": "a", "probability": 0.2}],
        },
    )
    assert dupes.status_code == 422


def test_deal_without_pipeline_is_explained(tenant):
    response = tenant.client.post("/api/v1/deals", json={"name": "Orphan"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "pipeline_id"


def test_the_database_allows_one_default_pipeline(db, tenant, pipeline):
    """Even a writer that skips the service's bookkeeping cannot make a second default."""
    import pytest
    from sqlalchemy import text

    from okyaku.errors import Conflict

    other = tenant.client.post(
        "/api/v1/pipelines", json={"name": "Second", "stages": [{"name": "Only", "probability": 0.5}]}
    ).json()
    assert other["is_default"] is False
    with pytest.raises(Conflict), db.organization_scope(tenant.id) as session:
        session.execute(text("UPDATE pipelines SET is_default = true WHERE id = :id"), {"id": other["id"]})
    switched = tenant.client.patch(f"/api/v1/pipelines/{other['id']}", json={"is_default": True})
    assert switched.status_code == 200 and switched.json()["is_default"] is True
    assert tenant.client.get(f"/api/v1/pipelines/{pipeline['id']}").json()["is_default"] is False
