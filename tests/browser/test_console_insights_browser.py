"""The AI where the work happens, in real headless Chromium: an activity's conversation insights
with their quotes highlighted; "Analyze now" while the language model is down (the rules floor and
"waiting for the language model"), then up; "Summarize" on a draft; the Anomalies page (evidence,
the series chart, acknowledge and dismiss with a note, the badge on the record); the weekly
Insights page; the notifications bell and mark read. axe-core clean, phone width.

The console is served on a loopback port over a real Postgres; the language model is the scripted
OpenAI-compatible server (made to fail with ``fault``); data goes in through the CRM API and the
conversation and anomalies services."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from okyaku.anomalies import detectors
from okyaku.anomalies.series import SeriesSettings, judge_recent
from okyaku.anomalies.store import notify_new, upsert_findings
from okyaku.conversation.responses import CompetitorIn
from okyaku.db import Database
from okyaku.db.models import Activity
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.tenancy import create_organization
from tests.browser.conftest import (
    ConsoleWorld as World,
)
from tests.browser.conftest import (
    accessible_at_both_widths,
    api_client,
    axe_violations,
    console_runtime,
    console_server,
    laptop_tab,
    shot,
)
from tests.browser.test_console_browser import sign_in
from tests.conftest import STAGES
from tests.support.fixtures import llm_settings_for
from tests.support.openai_server import Reply, ScriptedOpenAIServer

CALL = (
    "Call with Priya Raman. Budget is $45,000 for year one and they also looked at Salesforce.\n"
    "I'll send the revised proposal by Friday. Priya will book a security review with IT next Tuesday."
)
MEETING = (
    "Met the CFO. She worries the price is too high compared with Salesforce. We will send the ROI model by 2026-12-20."
)


def call_analysis() -> dict[str, Any]:
    return {
        "summary": "Priya has a $45k budget, is also looking at Salesforce, and expects our revised proposal.",
        "action_items": [
            {
                "description": "Send the revised proposal",
                "owner": "us",
                "due_date": "2026-12-11",
                "quote": "I'll send the revised proposal by Friday",
            },
            {
                "description": "Book a security review with IT",
                "owner": "named",
                "owner_name": "Priya",
                "due_date": "2026-12-15",
                "quote": "Priya will book a security review with IT next Tuesday",
            },
        ],
        "objections": [],
        "competitors": [{"name": "Salesforce", "quote": "they also looked at Salesforce"}],
        "pricing": [{"detail": "Budget for year one", "amount": 45000, "currency": "USD", "quote": "$45,000"}],
        "sentiment": {"score": 0.5, "label": "positive", "quotes": ["Budget is $45,000 for year one"]},
        "deal": {"amount": {"amount": 45000, "currency": "USD", "quote": "Budget is $45,000 for year one"}},
    }


def meeting_analysis() -> dict[str, Any]:
    return {
        "summary": "The CFO finds the price too high against Salesforce; we owe an ROI model.",
        "action_items": [
            {
                "description": "Send the ROI model",
                "owner": "us",
                "due_date": "2026-12-20",
                "quote": "We will send the ROI model by 2026-12-20",
            }
        ],
        "objections": [{"objection": "Price too high", "quote": "the price is too high compared with Salesforce"}],
        "competitors": [{"name": "Salesforce", "quote": "Salesforce"}],
        "sentiment": {"score": -0.4, "label": "negative", "quotes": ["She worries the price is too high"]},
    }


def seed(client: TestClient) -> dict[str, str]:
    pipeline = client.post("/api/v1/pipelines", json={"name": "Sales", "stages": STAGES, "is_default": True}).json()
    stages = {s["name"]: s["id"] for s in pipeline["stages"]}
    company = client.post("/api/v1/companies", json={"name": "Raman Robotics"}).json()
    priya = client.post(
        "/api/v1/contacts",
        json={"first_name": "Priya", "last_name": "Raman", "email": "priya@raman.example", "company_id": company["id"]},
    ).json()
    deal = client.post(
        "/api/v1/deals",
        json={
            "name": "Raman welding cells",
            "amount": "40000",
            "stage_id": stages["Proposal"],
            "company_id": company["id"],
            "contact_id": priya["id"],
        },
    ).json()
    call = client.post(
        "/api/v1/activities",
        json={"type": "call", "subject": "Budget call", "body": CALL, "deal_id": deal["id"], "contact_id": priya["id"]},
    ).json()
    meeting = client.post(
        "/api/v1/activities",
        json={"type": "meeting", "subject": "CFO meeting", "body": MEETING, "deal_id": deal["id"]},
    ).json()
    return {"deal": deal["id"], "priya": priya["id"], "call": call["id"], "meeting": meeting["id"]}


def plant_anomalies(world: World) -> dict[str, str]:
    """Three anomalies as the scan writes them (the store's upsert and notifications): a critical
    stalled deal, a high churn risk on Priya, and a spike judged on a real daily series."""
    today = datetime.now(UTC).date()
    values = [10.0, 12.0, 11.0, 9.0, 10.0, 3.0, 2.0] * 5 + [60.0]
    series = detectors.MetricSeries("activities", "Activities logged", today - timedelta(days=len(values) - 1), values)
    judged = judge_recent(values, series.first_day, days=2, settings=SeriesSettings())
    spike = detectors.series_finding(series, judged[-1], 3.5, judged)
    assert spike is not None
    findings = [
        detectors.Finding(
            type="stale_deal",
            entity_type="deal",
            entity_id=uuid.UUID(world.ids["deal"]),
            entity_key=f"deal:{world.ids['deal']}",
            title="No activity on Raman welding cells for 30 days",
            description="Raman welding cells has been quiet for 30 days at stage Proposal.",
            severity="critical",
            evidence={"idle_days": 30.0, "stage": "Proposal", "threshold_days": 9.5},
            money_at_stake=Decimal("45000"),
        ),
        detectors.Finding(
            type="churn_risk",
            entity_type="contact",
            entity_id=uuid.UUID(world.ids["priya"]),
            entity_key=f"contact:{world.ids['priya']}",
            title="Priya Raman: churn risk 81/100",
            description="The churn model scores Priya Raman at 81/100 (alert threshold 70).",
            severity="high",
            evidence={"score": 81.0, "threshold": 70.0},
        ),
        dataclasses.replace(spike, severity="medium"),
    ]
    now = datetime.now(UTC)
    with world.runtime.db.organization_scope(world.organization_id) as session:
        result = upsert_findings(session, findings, now, dismiss_snooze_days=30)
        notify_new(session, result.created, now)
    rows, _ = world.services.anomalies.list_anomalies(world.organization_id)  # type: ignore[union-attr]
    return {row.type: str(row.id) for row in rows}


@pytest.fixture(scope="module")
def world(pg: LocalDatabase, db: Database) -> Iterator[World]:
    runtime = console_runtime(pg, db)
    org = create_organization(db, f"Insights {uuid.uuid4().hex[:6]}", "rep@insights.example")
    with api_client(runtime, org.api_key) as client:
        ids = seed(client)
    with ScriptedOpenAIServer() as openai:
        # No retries, and a breaker that does not open: "down, then up" is the next request.
        config = dataclasses.replace(
            LLMConfig.from_settings(llm_settings_for(openai.base_url)), max_retries=0, breaker_failure_threshold=1000
        )
        llm = LLMGateway(config)
        with console_server(runtime, llm, "ai-browser-secret") as (url, services):
            assert services.conversation is not None and services.anomalies is not None
            services.conversation.replace_competitors(org.organization_id, [CompetitorIn(name="Salesforce")])
            world = World(url, services, runtime, openai, org, ids)
            world.ids.update({f"anomaly:{k}": v for k, v in plant_anomalies(world).items()})
            yield world
        llm.close()


@pytest.fixture
def page(browser: Any, world: World) -> Iterator[Any]:
    with laptop_tab(browser, world.url) as tab:
        yield tab
    world.openai.fault = None


def activity_item(page: Any, subject: str) -> Any:
    return page.locator("ol.timeline > li").filter(has=page.get_by_text(subject, exact=True))


def test_an_activity_s_analysis_with_its_quotes_highlighted(page, world, screenshots, axe_source) -> None:
    sign_in(page, world)
    page.goto(f"/console/deals/{world.ids['deal']}")
    call = activity_item(page, "Budget call")
    assert "Not analysed yet" in call.inner_text()  # nothing analysed it yet: said so, not an empty analysis
    world.openai.script(Reply.json_object(call_analysis()))
    call.get_by_role("button", name="Analyze now").click()
    call.get_by_role("status").filter(has_text="Analysed.").wait_for()
    assert "Sentiment: positive (+0.5)" in call.inner_text()
    assert "Priya has a $45k budget" in call.inner_text()

    call.get_by_text("Insights:").click()  # the disclosure: 2 action items, 1 competitors, ...
    items = call.locator("ul.insight-items li")
    assert "owner: us · due 2026-12-11" in items.nth(0).inner_text()
    assert "owner: Priya · due 2026-12-15" in items.nth(1).inner_text()
    marks = call.locator("blockquote.quoted-text mark")
    quoted = marks.all_inner_texts()
    for quote in ("I'll send the revised proposal by Friday", "they also looked at Salesforce", "$45,000"):
        assert quote in quoted, quoted
    assert call.locator("blockquote.quoted-text").inner_text() == CALL  # the whole text, marks inside it
    # An item links to its quote in the text.
    call.get_by_role("link", name="Book a security review with IT").click()
    anchor = page.evaluate("location.hash").lstrip("#")
    assert page.locator(f"mark#{anchor}").inner_text() == "Priya will book a security review with IT next Tuesday"
    # What it proposed (the budget as the deal's amount, a task per dated action item) waits in the
    # approval queue, linked from here.
    proposals = call.locator("ul.insight-items").last.get_by_role("link")
    assert sorted(proposals.all_inner_texts()) == ["create task", "create task", "update deal"]
    proposals.filter(has_text="update deal").click()
    page.wait_for_url("**/console/approvals?status=pending#action-*")
    action_id = page.evaluate("location.hash").lstrip("#")
    assert (
        "45,000" in page.locator(f"#{action_id}").inner_text() or "45000" in page.locator(f"#{action_id}").inner_text()
    )
    page.go_back()

    page.reload()  # stored: the page render shows it without asking the model again
    requests = len(world.openai.requests_to("chat"))
    call = activity_item(page, "Budget call")
    assert "Priya has a $45k budget" in call.inner_text()
    assert call.get_by_role("button", name="Analyze again").is_visible()
    assert len(world.openai.requests_to("chat")) == requests
    accessible_at_both_widths(page, axe_source, screenshots, "40-activity-insights")


def test_analyze_now_while_the_model_is_down_then_up(page, world, screenshots, axe_source) -> None:
    sign_in(page, world)
    page.goto(f"/console/deals/{world.ids['deal']}")
    meeting = activity_item(page, "CFO meeting")
    world.openai.fault = Reply.error(500, "model crashed")
    meeting.get_by_role("button", name="Analyze now").click()
    meeting.get_by_role("status").filter(has_text="Not analysed").wait_for()
    text = meeting.inner_text()
    assert "Waiting for the language model" in text and "Sentiment" not in text  # no analysis pretended
    meeting.get_by_text("Rules' findings:").click()
    # The rules floor: the competitor on the organization's list, the date, the commitment, quoted.
    findings = meeting.locator("ul.insight-items").all_inner_texts()
    assert any("Salesforce" in f for f in findings) and any("2026-12-20" in f for f in findings), findings
    marks = meeting.locator("blockquote.quoted-text mark").all_inner_texts()
    assert any("Salesforce" in m for m in marks) and any("2026-12-20" in m for m in marks), marks
    assert "without the language model" in meeting.inner_text()
    assert axe_violations(page, axe_source) == []
    shot(page, screenshots, "41-activity-waiting-for-the-model")

    page.reload()  # the waiting state is stored: it survives the page
    meeting = activity_item(page, "CFO meeting")
    assert "Waiting for the language model" in meeting.inner_text() and "1 attempt" in meeting.inner_text()

    world.openai.fault = None
    world.openai.script(Reply.json_object(meeting_analysis()))
    meeting.get_by_role("button", name="Analyze now").click()
    meeting.get_by_role("status").filter(has_text="Analysed.").wait_for()
    assert "Sentiment: negative (-0.4)" in meeting.inner_text()
    assert "Waiting for the language model" not in meeting.inner_text()
    meeting.get_by_text("Insights:").click()
    assert any("Price too high" in t for t in meeting.locator("ul.insight-items").all_inner_texts())
    assert meeting.get_by_role("button", name="Analyze again").is_visible()


def test_summarize_a_draft_stores_nothing(page, world, screenshots, axe_source) -> None:
    def activities() -> int:
        with world.runtime.db.organization_scope(world.organization_id) as session:
            return int(session.scalar(select(func.count()).select_from(Activity)) or 0)

    before = activities()
    sign_in(page, world)
    page.goto(f"/console/deals/{world.ids['deal']}")
    page.get_by_text("Log activity", exact=True).first.click()
    page.get_by_label("Notes").fill(MEETING)
    world.openai.script(Reply.json_object(meeting_analysis()))
    page.get_by_role("button", name="Summarize").click()
    summary = page.locator("#draft-summary")
    summary.get_by_text("Summary of the draft").wait_for()
    assert "The CFO finds the price too high" in summary.inner_text()
    assert "Send the ROI model" in summary.inner_text()
    assert "We will send the ROI model by 2026-12-20" in summary.locator("mark").all_inner_texts()
    assert activities() == before
    assert page.get_by_label("Notes").input_value() == MEETING  # the draft is still there to log
    assert axe_violations(page, axe_source) == []
    shot(page, screenshots, "42-draft-summary")


def test_anomalies_acknowledge_and_dismiss_with_a_note(page, world, screenshots, axe_source) -> None:
    sign_in(page, world)
    # The deal page carries a badge of its open anomaly, linking to it.
    page.goto(f"/console/deals/{world.ids['deal']}")
    badge = page.locator("p.anomaly-badge a")
    assert "No activity on Raman welding cells" in badge.inner_text() and "critical" in badge.inner_text()
    badge.click()
    page.wait_for_url(f"**/console/anomalies/{world.ids['anomaly:stale_deal']}")
    page.get_by_text("Evidence").first.wait_for()
    assert "Idle days" in page.locator("details.evidence").inner_text()

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Anomalies").click()
    page.wait_for_url("**/console/anomalies")
    cards = page.locator("article.anomaly")
    assert cards.count() == 3
    assert "critical" in cards.first.inner_text()  # worst first
    chart = page.get_by_role("img", name="activities per day: the series, its baseline (dashed) and flagged days (red)")
    assert chart.locator("circle.flagged").count() >= 1 and chart.locator("polyline.baseline").count() == 1
    accessible_at_both_widths(page, axe_source, screenshots, "43-anomalies")

    page.get_by_label("Severity").select_option("critical")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**severity=critical**")
    assert page.locator("article.anomaly").count() == 1

    stale = page.locator("article.anomaly").first
    stale.get_by_label("Note").fill("Called Priya, she is back next week")
    stale.get_by_role("button", name="Acknowledge").click()
    assert page.locator("p.message.success").inner_text() == "Anomaly acknowledged."
    stale = page.locator("article.anomaly").first  # still active: open or acknowledged
    assert "acknowledged" in stale.inner_text() and "Called Priya, she is back next week" in stale.inner_text()
    assert stale.get_by_role("button", name="Acknowledge").count() == 0  # resolve or dismiss from here

    page.goto("/console/anomalies?type=churn_risk")
    churn = page.locator("article.anomaly").first
    churn.get_by_label("Note").fill("Renewal signed yesterday")
    churn.get_by_role("button", name="Dismiss").click()
    assert "dismissed" in page.locator("p.message.success").inner_text()
    assert page.locator("article.anomaly").count() == 0  # no longer active
    page.goto("/console/anomalies?status=dismissed")
    dismissed = page.locator("article.anomaly")
    assert dismissed.count() == 1 and "Renewal signed yesterday" in dismissed.first.inner_text()
    anomaly = world.services.anomalies.get(world.organization_id, uuid.UUID(world.ids["anomaly:churn_risk"]))  # type: ignore[union-attr]
    assert (anomaly.status, anomaly.status_note) == ("dismissed", "Renewal signed yesterday")
    # A dismissed anomaly no longer badges its record.
    page.goto(f"/console/contacts/{world.ids['priya']}")
    assert page.locator("p.anomaly-badge").count() == 0


def test_the_weekly_insights_week_by_week(page, world, screenshots, axe_source) -> None:
    service = world.services.anomalies
    assert service is not None
    this_monday = date.today() - timedelta(days=date.today().weekday())
    older, newer = this_monday - timedelta(days=14), this_monday - timedelta(days=7)
    world.openai.fault = Reply.error(500)
    assert service.weekly(world.organization_id, older)["degraded"] is True
    world.openai.fault = None
    world.openai.script(Reply.json_object({"narrative": "A busy week: the pipeline held up and one deal needs care."}))
    assert service.weekly(world.organization_id, newer)["degraded"] is False

    sign_in(page, world)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Insights").click()
    page.wait_for_url("**/console/insights")
    assert page.get_by_role("heading", name=f"Week of {newer.isoformat()}", exact=False).is_visible()
    narrative = page.get_by_role("region", name="The week in a few sentences")
    assert "A busy week: the pipeline held up" in narrative.inner_text() and "Degraded" not in narrative.inner_text()
    trends = page.get_by_role("region", name="Trends")
    header = trends.locator("thead").inner_text()
    assert "This week" in header and "Last week" in header
    assert trends.locator("tbody tr").count() == 6  # five trends and the win rate
    attention = page.get_by_role("region", name="Deals needing attention")
    assert "No activity on Raman welding cells" in attention.inner_text()  # the open anomaly of the deal
    assert page.get_by_role("region", name="Top performers").is_visible()
    accessible_at_both_widths(page, axe_source, screenshots, "44-insights")

    page.get_by_role("link", name=f"Week of {older.isoformat()}").click()
    page.wait_for_url(f"**week={older.isoformat()}")
    narrative = page.get_by_role("region", name="The week in a few sentences")
    assert "Degraded" in narrative.inner_text() and "without the language model" in narrative.inner_text()


def test_the_bell_and_mark_read(page, world, screenshots, axe_source) -> None:
    service = world.services.anomalies
    assert service is not None
    unread = len(service.list_notifications(world.organization_id, world.ours.user_id, unread=True))
    assert unread >= 3  # the three anomalies (and any weekly summaries)
    sign_in(page, world)
    bell = page.locator("a.bell")
    label = bell.get_attribute("aria-label")
    assert label.startswith(f"Notifications: {unread} unread") and "1 critical" in label
    assert "critical" in (bell.get_attribute("class") or "")
    bell.click()
    page.wait_for_url("**/console/notifications")
    critical = page.locator("li.notification.severity-critical")
    assert critical.count() == 1 and "No activity on Raman welding cells" in critical.inner_text()
    accessible_at_both_widths(page, axe_source, screenshots, "45-notifications")

    critical.get_by_role("button", name="Mark read").click()
    assert page.get_by_role("status").first.inner_text() == "Marked read."
    label = page.locator("a.bell").get_attribute("aria-label")
    assert label == f"Notifications: {unread - 1} unread"  # the critical one is read: no longer called out
    page.get_by_role("button", name="Mark all read").click()
    page.get_by_text("All notifications marked read.").wait_for()
    assert page.locator("a.bell").get_attribute("aria-label") == "Notifications: 0 unread"
    assert page.locator("a.bell .count").count() == 0
    assert service.list_notifications(world.organization_id, world.ours.user_id, unread=True) == []
    page.get_by_role("link", name="Unread", exact=True).click()
    page.get_by_text("No unread notifications.").wait_for()
