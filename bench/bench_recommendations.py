"""Next-best actions: an offline replay (is the action that preceded a win in the top 3?) and the
latency of an entity's cards and of a whole organization's refresh.

**Replay.** leadforge (a synthetic B2B CRM with outcomes, not written by us) gives leads, their
opportunities and the reps' sales activities (call, meeting, demo, email) with dates. For every
won opportunity, the last sales activity of its lead is the action that preceded the win. The
lead, its account and its opportunity (an open deal, amount = estimated ACV) are written through
the CRM services with their real dates, every sales activity too; then, with the clock set to
the day before that last activity, the contact's cards are asked for (its deal's included: the
facts are read "as of" the clock, so later activities do not count). A hit: a card in the top 3
whose type the activity fulfils (call, meeting, demo: ``schedule_call`` or ``follow_up``; email:
``send_email``, ``send_proposal``, ``re_engage`` or ``follow_up``). Printed next to it: the same
cards in random order (the expected hit rate, exactly), and how often any card matched at all.
leadforge has no stage history, close dates, tasks or stored scores, so the rules on those do not
fire here; the figure measures the staleness rules and the ranking between them.

**Latency.** The demo generator's organization (``okyaku.local.demo``, ``BENCH_RECOMMENDATIONS_SCALE``
x its default size) refreshed whole (median of 3), and one deal's or contact's cards as the GET
serves them (refresh of that entity + ranked read), median and p95 over 40 of each.

``python -m bench recommendations``."""

from __future__ import annotations

import math
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import func, select, text, update

from bench._database import ROOT, bench_organization
from okyaku.config import Settings
from okyaku.crm import schemas as s
from okyaku.crm.pipelines import DealService, PipelineService
from okyaku.crm.records import ACTIVITY_SPEC, COMPANY_SPEC, CONTACT_SPEC, ActivityService, RecordService
from okyaku.db import Database
from okyaku.db.models import Contact, Deal, DealStageHistory
from okyaku.local.demo import DemoSize, seed_demo_data
from okyaku.recommendations.models import Recommendation
from okyaku.recommendations.service import RecommendationService
from okyaku.recommendations.settings import RecommendationSettings
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization

LEADFORGE_DIR = ROOT / ".okyaku" / "leadforge"
MATCHES = {
    "call": {"schedule_call", "follow_up"},
    "meeting": {"schedule_call", "follow_up"},
    "demo": {"schedule_call", "follow_up"},
    "email": {"send_email", "send_proposal", "re_engage", "follow_up"},
}
ACTIVITY_TYPE = {"call": "call", "meeting": "meeting", "demo": "meeting", "email": "email"}


class MovableClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _day(value: str) -> datetime:
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def leadforge_bundle(n_leads: int, seed: int) -> Path | None:
    try:
        from leadforge.api import Generator
    except ImportError:
        return None
    bundle = LEADFORGE_DIR / f"b2b-{n_leads}-{seed}"
    if not (bundle / "manifest.json").exists():
        generator = Generator.from_recipe("b2b_saas_procurement_v1", seed=seed, exposure_mode="student_public")
        generator.generate(n_leads=n_leads, difficulty="intermediate").save(str(bundle))
    return bundle


def load_won_cases(runtime: Runtime, organization_id: uuid.UUID, bundle: Path) -> list[dict[str, Any]]:
    """Write every won opportunity's lead, account, deal and sales activities; return the cases."""
    import pandas as pd

    tables = bundle / "tables"
    opportunities = pd.read_parquet(tables / "opportunities.parquet")
    won = opportunities[opportunities.stage == "closed_won"]
    leads = pd.read_parquet(tables / "leads.parquet").set_index("lead_id")
    accounts = pd.read_parquet(tables / "accounts.parquet").set_index("account_id")
    activities = pd.read_parquet(tables / "sales_activities.parquet")
    activities = activities[activities.lead_id.isin(set(won.lead_id))].sort_values(["lead_id", "activity_timestamp"])
    cases: list[dict[str, Any]] = []
    companies, contacts, deal_service = RecordService(COMPANY_SPEC), RecordService(CONTACT_SPEC), DealService()
    activity_service = ActivityService(ACTIVITY_SPEC)
    with runtime.transaction(organization_id) as session:
        pipeline = PipelineService().create(
            session,
            s.PipelineCreate(
                name="Replay",
                stages=[
                    s.StageIn(name="Qualification", probability=0.2),
                    s.StageIn(name="Negotiation", probability=0.6),
                    s.StageIn(name="Closed Won", probability=1.0, is_won=True),
                    s.StageIn(name="Closed Lost", probability=0.0, is_lost=True),
                ],
            ),
        )
        negotiation = next(stage for stage in pipeline.stages if stage.name == "Negotiation")
        for opportunity in won.itertuples():
            lead = leads.loc[opportunity.lead_id]
            acts = activities[activities.lead_id == opportunity.lead_id]
            if acts.empty:
                continue
            account = accounts.loc[lead.account_id]
            company = companies.create(
                session,
                s.CompanyCreate(name=f"{account.company_name} {opportunity.lead_id}", industry=account.industry),
            )
            contact = contacts.create(
                session,
                s.ContactCreate(
                    first_name="Lead",
                    last_name=str(opportunity.lead_id),
                    email=f"{opportunity.lead_id}@replay.example",
                    company_id=company.id,
                    lifecycle_stage="lead",
                ),
            )
            opened = _day(opportunity.created_at)
            deal = deal_service.create(
                session,
                s.DealCreate(
                    name=f"Replay {opportunity.opportunity_id}",
                    pipeline_id=pipeline.id,
                    stage_id=negotiation.id,
                    amount=int(opportunity.estimated_acv or 0) or None,
                    company_id=company.id,
                    contact_id=contact.id,
                ),
            )
            for act in acts.itertuples():
                activity_service.create(
                    session,
                    s.ActivityCreate(
                        type=ACTIVITY_TYPE[act.activity_type],
                        subject=f"{act.activity_type}: {act.activity_outcome}",
                        occurred_at=_day(act.activity_timestamp),
                        direction="outbound" if act.activity_type in ("call", "email") else None,
                        contact_id=contact.id,
                        deal_id=deal.id if _day(act.activity_timestamp) >= opened else None,
                    ),
                )
            created = _day(lead.lead_created_at)
            session.execute(update(Contact).where(Contact.id == contact.id).values(created_at=created))
            session.execute(update(Deal).where(Deal.id == deal.id).values(created_at=opened, stage_entered_at=opened))
            session.execute(
                update(DealStageHistory).where(DealStageHistory.deal_id == deal.id).values(changed_at=opened)
            )
            steps = list(acts.itertuples())
            for k, act in enumerate(steps[1:], start=1):
                cases.append(
                    {
                        "lead_id": str(opportunity.lead_id),
                        "contact_id": contact.id,
                        "action": str(act.activity_type),
                        "at": _day(act.activity_timestamp) - timedelta(seconds=1),
                        "last": k == len(steps) - 1,
                    }
                )
    return cases


def _random_top3(n: int, m: int) -> float:
    """P(at least one of m matching cards among n lands in a random top 3)."""
    if n == 0 or m == 0:
        return 0.0
    k = min(3, n)
    return 1.0 - math.comb(n - m, k) / math.comb(n, k)


def cadence_days(bundle: Path) -> int:
    """The organization's own rhythm: the median days between a lead's consecutive sales
    activities, over every lead (won or not: no outcome is used)."""
    import pandas as pd

    activities = pd.read_parquet(bundle / "tables" / "sales_activities.parquet")
    activities["at"] = pd.to_datetime(activities.activity_timestamp)
    gaps = activities.sort_values("at").groupby("lead_id")["at"].diff().dropna().dt.days
    return max(1, int(gaps.median()))


def evaluate(
    runtime: Runtime, organization_id: uuid.UUID, cases: list[dict[str, Any]], config: RecommendationSettings
) -> dict[str, Any]:
    clock = MovableClock()
    service = RecommendationService(runtime, clock=clock, config=config)
    result: dict[str, Any] = {"n": 0, "hits": 0, "top1": 0, "any_card": 0, "any_match": 0, "random": 0.0, "types": {}}
    for case in cases:
        clock.now = case["at"]
        cards = service.for_entity(organization_id, "contact", case["contact_id"], None)["data"]
        wanted = MATCHES[case["action"]]
        types = [c["type"] for c in cards]
        matching = sum(t in wanted for t in types)
        result["n"] += 1
        result["hits"] += any(t in wanted for t in types[:3])
        result["top1"] += bool(types) and types[0] in wanted
        result["any_card"] += bool(types)
        result["any_match"] += matching > 0
        result["random"] += _random_top3(len(types), matching)
        for t in types[:3]:
            result["types"][t] = result["types"].get(t, 0) + 1
    return result


def _rows(label: str, result: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = max(result["n"], 1)
    top = ", ".join(f"{t} {c}" for t, c in sorted(result["types"].items(), key=lambda kv: -kv[1])[:4]) or "none"
    return [
        (f"{label}: top-3 contains the action", f"{result['hits'] / n:.3f}", f"{result['hits']}/{result['n']}"),
        (f"{label}: top-1 is the action", f"{result['top1'] / n:.3f}", f"{result['top1']}/{result['n']}"),
        (f"{label}: random order, top 3", f"{result['random'] / n:.3f}", "same cards, exact expectation"),
        (f"{label}: any card / any match", f"{result['any_card'] / n:.2f} / {result['any_match'] / n:.2f}", top),
    ]


def replay(runtime: Runtime, organization_id: uuid.UUID) -> list[tuple[str, str, str]]:
    n_leads = int(os.environ.get("BENCH_RECOMMENDATIONS_LEADS", "1000"))
    bundle = leadforge_bundle(n_leads, seed=11)
    if bundle is None:
        return [("replay", "skipped", "leadforge is not installed (pip install leadforge)")]
    cases = load_won_cases(runtime, organization_id, bundle)
    last = [c for c in cases if c["last"]]
    cadence = cadence_days(bundle)
    defaults = RecommendationSettings()
    paced = replace(defaults, deal_stale_days=cadence, lead_stale_days=cadence)
    rows = [
        ("replay: won deals / decision points", f"{len(last)} / {len(cases)}", f"leadforge {n_leads} leads, seed 11"),
        ("organization cadence (median gap)", f"{cadence} d", "stale thresholds of the 'paced' runs"),
    ]
    rows += _rows("last action, default thresholds", evaluate(runtime, organization_id, last, defaults))
    rows += _rows("last action, paced", evaluate(runtime, organization_id, last, paced))
    rows += _rows("every step, paced", evaluate(runtime, organization_id, cases, paced))
    return rows


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _timed(call: Callable[[], Any]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def latency(runtime: Runtime, organization_id: uuid.UUID, admin_id: uuid.UUID) -> list[tuple[str, str, str]]:
    scale = float(os.environ.get("BENCH_RECOMMENDATIONS_SCALE", "4"))
    size = DemoSize().scaled(scale)
    seed_demo_data(runtime, organization_id, admin_id, size=size)
    scores = _score_demo(runtime, organization_id)
    service = RecommendationService(runtime)
    refresh = [_timed(lambda: service.refresh_organization(organization_id)) for _ in range(3)]
    counts = service.refresh_organization(organization_id)
    with runtime.db.organization_scope(organization_id) as session:
        deals = list(session.scalars(select(Deal.id).order_by(Deal.id).limit(40)))
        contacts = list(session.scalars(select(Contact.id).order_by(Contact.id).limit(40)))
    per_deal = [_timed(partial(service.for_entity, organization_id, "deal", d, admin_id)) for d in deals]
    per_contact = [_timed(partial(service.for_entity, organization_id, "contact", c, admin_id)) for c in contacts]
    with runtime.db.organization_scope(organization_id) as session:
        by_rule = list(
            session.execute(
                select(Recommendation.rule, func.count())
                .where(Recommendation.status == "open")
                .group_by(Recommendation.rule)
                .order_by(func.count().desc())
            ).tuples()
        )
    shown = f"{size.contacts} contacts, {size.deals} deals, {size.activities} activities, {size.tasks} tasks"
    rows = []
    median, p95 = _stats(refresh)
    rows.append(("whole-organization refresh", f"{median:.3f} s (p95 {p95:.3f})", f"{shown}; {counts.updated} cards"))
    for name, samples in (("one deal's cards (GET)", per_deal), ("one contact's cards (GET)", per_contact)):
        median, p95 = _stats(samples)
        rows.append((name, f"{median * 1000:.1f} ms (p95 {p95 * 1000:.1f})", f"{len(samples)} entities"))
    rows.append(
        ("demo cards per rule (open)", f"{sum(n for _, n in by_rule)}", ", ".join(f"{r} {n}" for r, n in by_rule))
    )
    rows.append(("demo scores stored first", f"{scores}", "lead score + churn risk (learnt or prior)"))
    return rows


def _score_demo(runtime: Runtime, organization_id: uuid.UUID) -> int:
    """The scoring function's nightly work, so that the hot-lead and churn rules have scores."""
    try:
        from okyaku.predictions.service import PredictionService
    except ImportError:
        return 0
    predictions = PredictionService(runtime)
    total = 0
    targets: tuple[Literal["lead"], Literal["churn"]] = ("lead", "churn")
    for target in targets:
        predictions.train(organization_id, target)
        total += predictions.rescore_all(organization_id, target)
    return total


def main() -> None:
    with bench_organization("Recommendations bench", "bench@recommendations.example") as bench:
        runtime = Runtime(Settings(database_url=bench.local.app_url), db=bench.db, publisher=None)
        rows = replay(runtime, bench.org.organization_id)
        # The latency runs in an organization of its own: the demo's data only.
        demo = create_organization(bench.db, f"Recommendations demo {uuid.uuid4().hex[:6]}", "demo@recs.example")
        try:
            rows += latency(runtime, demo.organization_id, demo.user_id)
        finally:
            owner = Database(bench.local.owner_url)
            with owner.session() as session:
                session.execute(text("DELETE FROM organizations WHERE id = :id"), {"id": demo.organization_id})
            owner.dispose()
        print(f"{'measured':<58}{'figure':>26}  note")
        for name, figure, note in rows:
            print(f"{name:<58}{figure:>26}  {note}")


if __name__ == "__main__":
    main()
