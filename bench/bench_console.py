"""Web console page render times on the demo data (200 companies, 350 contacts, 150 deals, 1000
activities): each page requested in-process through the console app (sessions, CSRF, templates,
the services and their SQL), p50 and p95 over repeated requests after one warm-up.

Embeddings for semantic search come from the in-process MiniLM model (contacts and deals
backfilled first); score explanations are templated (no LLM), as with Ollama down. Record pages
and Today include the next-best-action cards (a record's refreshed from its facts on each view)."""

from __future__ import annotations

import re
import statistics
import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bench._database import bench_organization
from okyaku.anomalies.models import Anomaly
from okyaku.anomalies.service import AnomalyService
from okyaku.config import Settings
from okyaku.console.app import create_console_app
from okyaku.console.services import console_services
from okyaku.console.sessions import SessionSigner
from okyaku.db.models import Activity, Company, Contact, Deal
from okyaku.local.demo import seed_demo_data
from okyaku.runtime import Runtime

REPEATS = 15


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    from okyaku.embeddings.indexer import EmbeddingIndexer
    from okyaku.embeddings.llm_adapter import LocalModelEmbedder

    with bench_organization("Console bench", "bench@console.example") as bench:
        runtime = Runtime(Settings(database_url=bench.local.app_url), db=bench.db)
        org = bench.org.organization_id
        started = time.perf_counter()
        seed_demo_data(runtime, org, bench.org.user_id)
        embedder = LocalModelEmbedder()
        EmbeddingIndexer(bench.db, embedder).backfill(organization_ids=[org], entity_types=("contact", "deal"))
        print(f"demo data seeded and embedded in {time.perf_counter() - started:.1f} s")
        # An anomaly scan and a weekly insight (the template's narrative: no LLM) first, so that the
        # Anomalies, Insights and Notifications pages and the bell have the demo's rows. The
        # timeline's conversation insights are the rules floor (nothing analysed by a model).
        anomalies = AnomalyService(runtime)
        anomalies.scan(org, deliver=False)
        anomalies.weekly(org)
        with bench.db.organization_scope(org) as session:
            contact = session.scalar(select(Contact.id).order_by(Contact.created_at).limit(1))
            company = session.scalar(select(Company.id).order_by(Company.created_at).limit(1))
            deal = session.scalar(select(Deal.id).order_by(Deal.created_at).limit(1))
            customer = session.scalar(
                select(Contact.id).where(Contact.lifecycle_stage == "customer").order_by(Contact.created_at).limit(1)
            )
        services = console_services(
            runtime, signer=SessionSigner(uuid.uuid4().hex, ttl_s=3600), embedder=embedder, explanations="template"
        )
        with bench.db.organization_scope(org) as session:
            busiest_deal = session.scalar(
                select(Activity.deal_id)
                .where(Activity.deal_id.is_not(None))
                .group_by(Activity.deal_id)
                .order_by(func.count().desc())
                .limit(1)
            )
            anomaly = session.scalar(select(Anomaly.id).order_by(Anomaly.created_at).limit(1))
        pages = [
            ("dashboard, forecast computed", "/console"),
            ("dashboard, forecast reused", "/console"),
            ("contacts list", "/console/contacts"),
            ("contacts keyword search", "/console/contacts?q=a"),
            ("deals semantic search", "/console/deals?q=renewal+of+a+large+contract&mode=semantic"),
            ("search everything", "/console/search?q=pricing+question"),
            ("contact page (score card)", f"/console/contacts/{contact}"),
            ("customer page (churn card)", f"/console/contacts/{customer}"),
            ("company page", f"/console/companies/{company}"),
            ("deal page (forecast card)", f"/console/deals/{deal}"),
            ("deal cards refreshed (htmx)", f"/console/deals/{deal}/next-best-actions"),
            ("contact cards refreshed (htmx)", f"/console/contacts/{contact}/next-best-actions"),
            ("company cards refreshed (htmx)", f"/console/companies/{company}/next-best-actions"),
            ("today (landing page)", "/console/today"),
            ("pipeline board", "/console/pipeline"),
            ("tasks, mine", "/console/tasks"),
            ("tasks, everyone's", "/console/tasks?who=everyone"),
            ("new deal form", "/console/deals/new"),
            ("related-record search (as you type)", "/console/refs/company?field=company_id&q_company_id=a"),
            ("edit contact form", f"/console/contacts/{contact}/edit"),
            ("edit deal form", f"/console/deals/{deal}/edit"),
            ("delete company (confirm)", f"/console/companies/{company}/delete"),
            ("approval queue", "/console/approvals"),
            ("agent runs", "/console/runs"),
            ("deal, most activities (insights)", f"/console/deals/{busiest_deal}"),
            ("anomalies (open)", "/console/anomalies"),
            ("anomalies, any status", "/console/anomalies?status=any"),
            ("one anomaly", f"/console/anomalies/{anomaly}"),
            ("insights (weekly)", "/console/insights"),
            ("notifications", "/console/notifications"),
        ]
        with TestClient(create_console_app(services), follow_redirects=False) as client:
            login = client.get("/console/login").text
            token = re.search(r'name="csrf_token" value="([^"]+)"', login)
            assert token is not None
            answer = client.post("/console/login", data={"api_key": bench.org.api_key, "csrf_token": token.group(1)})
            assert answer.status_code == 303, answer.text
            rows = []
            for name, url in pages:
                first = client.get(url)
                assert first.status_code == 200, (url, first.status_code)
                times, renders = [], []
                for _ in range(REPEATS):
                    if name == "dashboard, forecast computed":
                        services.forecasts.clear()  # the Monte Carlo forecast runs in every request
                    t0 = time.perf_counter()
                    response = client.get(url)
                    times.append(time.perf_counter() - t0)
                    renders.append(float(response.headers["server-timing"].split("dur=")[1]))
                rows.append((name, len(first.content), times, renders))
    print(f"in-process (TestClient), {REPEATS} requests per page after one warm-up; template = Jinja2 render only")
    print(f"{'page':<32}{'bytes':>8}{'p50':>10}{'p95':>10}{'template p50':>14}")
    for name, size, times, renders in rows:
        print(
            f"{name:<32}{size:>8}{_percentile(times, 0.5) * 1000:>8.1f}ms{_percentile(times, 0.95) * 1000:>8.1f}ms"
            f"{statistics.median(renders):>12.1f}ms"
        )


if __name__ == "__main__":
    main()
