"""Input that used to reach the database or numpy unchecked (a 500) is a 422 with the error shape."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from fastapi.testclient import TestClient

from okyaku.agents.api import create_agents_app
from okyaku.predictions.api import create_forecasting_app, create_scoring_app


def cursor(*parts: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


ZERO = str(uuid.UUID(int=0))


def assert_invalid(response, field: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [d["field"] for d in error["details"]] == [field]


@pytest.mark.parametrize(
    "value",
    [
        cursor("-created_at", 1, ZERO),  # a number where the sort value's text belongs
        cursor("-created_at", None, 7),
        cursor(["-created_at"], "2026-01-01", ZERO),
        cursor("-created_at", {"a": 1}, ZERO),
        "WyItY3JlYXRlZF9hdCIsIDEsICIwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDAiXQ",  # from the report
    ],
)
def test_a_cursor_with_values_of_another_type_is_refused(tenant, value):
    assert_invalid(tenant.client.get("/api/v1/contacts", params={"cursor": value}), "cursor")


def test_approvals_and_prediction_cursors_are_checked_too(runtime, tenant):
    auth = {"Authorization": f"Bearer {tenant.org.api_key}"}
    with TestClient(create_agents_app(runtime), headers=auth) as agents:
        for value in (
            "WyItY3JlYXRlZF9hdCIsICJ4IiwgIjAwMDAwMDAwLTAwMDAtMDAwMC0wMDAwLTAwMDAwMDAwMDAwMCJd",  # from the report
            cursor("-created_at", None, ZERO),
            cursor("-created_at", 5, ZERO),
        ):
            assert_invalid(agents.get("/api/v1/ai/approvals", params={"cursor": value}), "cursor")
    with TestClient(create_scoring_app(runtime, writer=None), headers=auth) as scoring:
        for value in (cursor("-score", 1.5, ZERO), cursor("-score", "high", ZERO)):
            response = scoring.get("/api/v1/ai/predictions/batch-score", params={"cursor": value})
            assert_invalid(response, "cursor")


@pytest.mark.parametrize("seed", ["-1", str(2**32), "x"])
def test_a_simulation_seed_out_of_range_is_refused(runtime, tenant, seed):
    auth = {"Authorization": f"Bearer {tenant.org.api_key}"}
    with TestClient(create_forecasting_app(runtime, writer=None), headers=auth) as forecasting:
        response = forecasting.get("/api/v1/ai/predictions/pipeline-forecast", params={"seed": seed})
    assert_invalid(response, "seed")
