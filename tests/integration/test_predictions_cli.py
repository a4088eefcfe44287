"""``okyaku model train|evaluate --org``: an organization's own history, through the CLI."""

from __future__ import annotations

import json
import uuid

import pytest

from okyaku.cli import main
from okyaku.config import Settings, get_settings
from okyaku.crm import schemas
from okyaku.crm.records import CONTACT_SPEC, RecordService
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization


@pytest.fixture
def database_env(pg, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", pg.app_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_train_and_evaluate_an_organization(pg, db, database_env, capsys):
    org = create_organization(db, f"CLI {uuid.uuid4().hex[:6]}", "admin@cli.example")
    runtime = Runtime(Settings(database_url=pg.app_url), db=db, publisher=None)
    with runtime.transaction(org.organization_id) as session:
        for i in range(6):
            contact = RecordService(CONTACT_SPEC).create(session, schemas.ContactCreate(first_name=f"C{i}"))
            if i % 2:
                RecordService(CONTACT_SPEC).update(
                    session, contact.id, schemas.ContactUpdate(lifecycle_stage="customer")
                )

    assert main(["model", "evaluate", "--target", "lead", "--org", str(org.organization_id), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "prior" and report["n_examples"] == 3 and report["n_positive"] == 3
    assert {"auc", "brier", "n_train", "n_test"} <= set(report)

    assert main(["model", "train", "--org", str(org.organization_id), "--rescore", "--json"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert {m["target"] for m in trained["models"]} == {"lead", "churn", "deal", "deal_amount", "deal_cycle"}
    assert trained["rescored"] == {"lead": 3, "churn": 3, "deal": 0}
    assert main(["model", "train", "--org", str(org.organization_id), "--target", "lead"]) == 0
    assert "lead         v2   prior" in capsys.readouterr().out
