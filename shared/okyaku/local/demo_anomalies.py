"""Anomalies planted in the demo organization's history, for its anomaly scan to find."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import update

from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService
from okyaku.db.models import Activity, Contact, Deal, PipelineStage, User
from okyaku.local.demo_rows import bulk_create
from okyaku.runtime import Runtime


def plant_anomalies(runtime: Runtime, organization_id: uuid.UUID, *, seed: int, now: datetime) -> dict[str, list[str]]:
    """Anomalies for the demo's scan to find (``POST /api/v1/ai/anomalies/scan``): three open deals
    left quiet for months, a baseline snapshot of every open deal followed by a close date pushed
    out, an amount cut and a stage moved back, a deal without a close date, and a burst of e-mails
    logged yesterday by one owner. Its own random stream: the rest of the demo is unchanged."""
    from sqlalchemy import select, text

    from okyaku.anomalies import loaders  # the anomaly scan's own snapshot of the deals

    rng = random.Random(seed + 1)
    deals = DealService()
    planted: dict[str, list[str]] = {"stale_deal": [], "deal_change": [], "stage_regression": [], "data_gap": []}
    with runtime.transaction(organization_id, publish_inline_limit=None) as session:  # a seed: consumers get it all now
        open_deals = [
            d for d in session.scalars(select(Deal).order_by(Deal.stage_entered_at, Deal.name)) if d.status == "open"
        ]
        stale, changed = open_deals[:3], open_deals[3:]
        for deal in stale:  # their activities squeezed into the first fifth of the time since stage entry
            session.execute(
                text(
                    "UPDATE activities SET occurred_at = :entered + (occurred_at - :entered) * 0.2 "
                    "WHERE deal_id = :deal AND occurred_at > :entered"
                ),
                {"entered": deal.stage_entered_at, "deal": deal.id},
            )
            planted["stale_deal"].append(str(deal.id))
        states = loaders.load_deals(session)
        loaders.save_snapshots(session, [d for d in states if d.is_open], loaders.load_stage_changes(session), now)
        positions = {stage.id: stage.position for stage in session.scalars(select(PipelineStage))}
        pushed, cut = changed[0], changed[1]
        if pushed.expected_close_date is not None:
            later = pushed.expected_close_date + timedelta(days=rng.randint(30, 60))
            deals.update(session, pushed.id, s.DealUpdate(expected_close_date=later))
            planted["deal_change"].append(str(pushed.id))
        if cut.amount is not None:
            deals.update(session, cut.id, s.DealUpdate(amount=(cut.amount * Decimal("0.6")).quantize(Decimal("1"))))
            planted["deal_change"].append(str(cut.id))
        by_position = {position: stage_id for stage_id, position in positions.items()}
        for deal in changed[2:]:
            if positions[deal.stage_id] > 0:
                moved = deals.update(session, deal.id, s.DealUpdate(stage_id=by_position[positions[deal.stage_id] - 1]))
                moment = now - timedelta(hours=2)  # a timestamp no API sets: before "now", as the rest
                session.execute(
                    update(Deal)
                    .where(Deal.id == moved.id)
                    .values(stage_entered_at=moment)
                    .execution_options(synchronize_session=False)
                )
                session.execute(
                    text(
                        "UPDATE deal_stage_history SET changed_at = :m "
                        "WHERE id = (SELECT max(id) FROM deal_stage_history WHERE deal_id = :d)"
                    ),
                    {"m": moment, "d": moved.id},
                )
                planted["deal_change"].append(str(deal.id))
                planted["stage_regression"].append(str(deal.id))
                break
        gap = changed[-1]
        deals.update(session, gap.id, s.DealUpdate(expected_close_date=None))
        planted["data_gap"].append(str(gap.id))

        owner = session.scalar(select(User.id).where(User.role != "admin").order_by(User.email))
        people = list(session.scalars(select(Contact).where(Contact.owner_id == owner).order_by(Contact.email)))
        if owner is not None and people:
            burst = []
            for i in range(30):
                person = rng.choice(people)
                burst.append(
                    s.ActivityCreate(
                        type="email",
                        subject=f"Renewal reminder to {person.first_name} {person.last_name}",
                        body="Sent from the bulk renewal campaign: the price change note and a booking link.",
                        occurred_at=now - timedelta(days=1, minutes=10 * i),
                        direction="outbound",
                        owner_id=owner,
                        contact_id=person.id,
                        company_id=person.company_id,
                    )
                )
            bulk_create(session, "activity", Activity, burst)
            planted["unusual_pattern"] = [str(owner)]
    return planted
