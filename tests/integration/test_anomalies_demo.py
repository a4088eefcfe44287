"""The demo organization's scan finds its stale deals and the anomalies planted in its history;
notifications appear and the weekly summary e-mail is rendered (HTML and text)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from okyaku.anomalies.mail import Email
from okyaku.anomalies.service import AnomalyService
from okyaku.db import Database
from okyaku.local.demo import seed_demo_data
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization


class RecordingMailer:
    """A fake SES: keeps what it is given (the SES path itself is tested on moto)."""

    def __init__(self) -> None:
        self.sent: list[Email] = []

    def send(self, email: Email) -> str:
        self.sent.append(email)
        return f"message-{len(self.sent)}"


def test_the_demo_scan_finds_what_was_planted(db: Database, runtime: Runtime) -> None:
    org = create_organization(db, f"Demo {uuid.uuid4().hex[:6]}", "admin@demo.example")
    now = datetime.now(UTC)
    summary = seed_demo_data(runtime, org.organization_id, org.user_id, now=now)
    planted = summary.planted
    mailer = RecordingMailer()
    service = AnomalyService(runtime, mailer=mailer)
    report = service.scan(org.organization_id)
    print(f"\ndemo scan: {report.as_dict()}")

    def found(type_: str) -> dict[str, Any]:
        rows, _ = service.list_anomalies(org.organization_id, type_=type_, limit=200)
        return {str(a.entity_id) if a.entity_id else a.entity_key: a for a in rows}

    assert set(planted["stale_deal"]) <= set(found("stale_deal"))
    changes = found("deal_change")
    assert set(planted["deal_change"]) <= set(changes)
    kinds = {c["kind"] for deal_id in planted["deal_change"] for c in changes[deal_id].evidence["changes"]}
    assert kinds == {"close_date_pushed", "amount_cut", "stage_regression"}
    assert set(planted["data_gap"]) <= set(found("data_gap"))
    (owner,) = planted["unusual_pattern"]
    spikes = found("unusual_pattern")
    assert owner in spikes and spikes[owner].evidence["kind"] in ("spike", "level_shift_up")
    assert "metric:emails" in spikes

    notifications = service.list_notifications(org.organization_id, org.user_id)
    assert notifications  # the admin gets the organization-wide ones at least
    weekly = service.weekly(org.organization_id)
    assert weekly["summaries_queued"] >= 1 and weekly["emails"]["sent"] >= 1
    summaries = [e for e in mailer.sent if e.subject.startswith("[Okyaku] Weekly summary")]
    assert summaries and all(e.html.startswith("<!doctype html>") and e.text for e in summaries)
    assert "Your anomalies this week" in summaries[0].text
