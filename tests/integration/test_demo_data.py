"""The demo data: realistic, deterministic, and written like any API write (outbox included)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from okyaku.db import Database
from okyaku.db.models import Activity, Company, Contact, Deal, DealStageHistory, OutboxEvent, Task
from okyaku.local.demo import DemoSize, seed_demo_data
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.conftest import RecordingPublisher

ENTITY_MODELS = {"company": Company, "contact": Contact, "deal": Deal, "activity": Activity, "task": Task}


def test_demo_data_is_realistic_and_every_record_has_its_change_event(
    db: Database, runtime: Runtime, publisher: RecordingPublisher
) -> None:
    org = create_organization(db, f"Demo {uuid.uuid4().hex[:6]}", "admin@demo.example")
    now = datetime.now(UTC)
    summary = seed_demo_data(runtime, org.organization_id, org.user_id, now=now)
    print(f"\ndemo data: {summary}")  # the time it took, for the record (not asserted)
    size = DemoSize()
    assert (summary.companies, summary.contacts, summary.deals, summary.tasks) == (
        200,
        350 + size.customers,
        150 + size.closed_deals,
        120,
    )
    assert summary.activities > 1000  # the present's, and the past's that led to each outcome

    with db.organization_scope(org.organization_id) as session:
        outbox = session.scalars(select(OutboxEvent)).all()
        created = {(e.entity_type, e.entity_id) for e in outbox if e.operation == "created"}
        for entity_type, model in ENTITY_MODELS.items():
            ids = set(session.scalars(select(model.id)))
            assert {(entity_type, i) for i in ids} <= created, f"a {entity_type} without its event"
        assert len(outbox) == len(publisher.events)  # published after commit, all of them
        assert all(e.published_at is not None for e in outbox)

        deals = session.scalars(select(Deal)).all()
        outcomes = Counter(d.status for d in deals)
        assert outcomes["won"] == summary.deals_won > 0 and outcomes["lost"] == summary.deals_lost > 0
        for deal in deals:
            history = session.scalars(
                select(DealStageHistory).where(DealStageHistory.deal_id == deal.id).order_by(DealStageHistory.id)
            ).all()
            assert history[0].from_stage_id is None and history[-1].to_stage_id == deal.stage_id
            moments = [h.changed_at for h in history]
            assert moments == sorted(moments) and moments[-1] <= now
            assert deal.stage_entered_at == moments[-1]
            if deal.status == "open":
                assert deal.closed_at is None and deal.lost_reason is None
            else:
                assert deal.closed_at is not None and deal.created_at < deal.closed_at <= now
                assert (deal.lost_reason is not None) == (deal.status == "lost")
        stage_changes = session.scalars(select(DealStageHistory).where(DealStageHistory.from_stage_id.is_not(None)))
        assert len(stage_changes.all()) == summary.stage_changes

        contacts_created = sorted(session.scalars(select(Contact.created_at)))
        assert contacts_created[0] < now - timedelta(days=200) and contacts_created[-1] < now

        activities = session.scalars(select(Activity)).all()
        assert set(Counter(a.type for a in activities)) == {"call", "meeting", "email", "note"}
        assert all(a.body and a.subject and a.contact_id and a.occurred_at <= now for a in activities)
        assert len({a.body for a in activities}) > 900  # varied, not one sentence repeated

        done = session.scalars(select(Task).where(Task.status == "done")).all()
        assert done and all(t.completed_at is not None for t in done)

        # Enough history for the organization's own models (200 labelled examples, 20 of each
        # outcome: okyaku.predictions.training), with the outcomes visible in the activity history.
        assert outcomes["won"] >= 20 and outcomes["lost"] >= 20 and outcomes["won"] + outcomes["lost"] >= 200
        stages = Counter(c.lifecycle_stage for c in session.scalars(select(Contact)))
        assert stages["churned"] >= 20 and stages["customer"] + stages["evangelist"] + stages["churned"] >= 200
        assert summary.churned > 0
        touches = Counter(a.deal_id for a in activities if a.deal_id is not None)

        def touches_a_month(status: str) -> float:
            closed = [d for d in deals if d.status == status]
            days = sum(max((d.closed_at - d.created_at).days, 1) for d in closed)
            return 30 * sum(touches[d.id] for d in closed) / days

        assert touches_a_month("won") > 1.1 * touches_a_month("lost")  # engagement drives the outcome


def test_demo_data_is_deterministic(db: Database, runtime: Runtime) -> None:
    small = DemoSize().scaled(0.1)
    now = datetime(2026, 6, 1, tzinfo=UTC)
    snapshots = []
    for _ in range(2):
        org = create_organization(db, f"Demo {uuid.uuid4().hex[:6]}", "admin@demo.example")
        seed_demo_data(runtime, org.organization_id, org.user_id, size=small, seed=42, now=now)
        with db.organization_scope(org.organization_id) as session:
            snapshots.append(
                (
                    sorted(session.scalars(select(Company.name))),
                    sorted(session.scalars(select(Contact.email))),
                    sorted((d.name, d.amount, d.closed_at) for d in session.scalars(select(Deal))),
                    sorted(session.scalars(select(Activity.body))),
                )
            )
    assert snapshots[0] == snapshots[1]
    assert len(snapshots[0][0]) == small.companies == 20
