"""The console's AI views as pure functions: quotes cut into marks, the series window an anomaly
keeps, its chart, and the anomaly evidence shown."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from okyaku.anomalies import detectors
from okyaku.anomalies.models import Anomaly
from okyaku.anomalies.series import SeriesSettings, judge_recent
from okyaku.console import charts
from okyaku.console.conversation_view import highlight, insight_view
from okyaku.console.pages_anomalies import evidence_rows, series_chart
from okyaku.conversation.responses import ActivityAnalysisOut, WaitingOut
from okyaku.conversation.schema import RulesActionItem, RulesCompetitor, RulesFindings

TEXT = "They also looked at Salesforce. We will send the deck by Friday."


def test_highlight_marks_each_span_once_and_keeps_the_whole_text() -> None:
    start = TEXT.index("Salesforce")
    sentence = TEXT.index("They also")
    segments, anchors = highlight(
        TEXT, [(start, start + 10, "Competitors"), (sentence, sentence + 31, "Key points"), (5, 999, "bad")], "q"
    )
    assert "".join(s.text for s in segments) == TEXT  # nothing lost, nothing duplicated
    marked = [s for s in segments if s.anchor]
    assert [s.text for s in marked] == ["They also looked at Salesforce."]  # the inner span shares the outer mark
    assert anchors[(start, start + 10)] == anchors[(sentence, sentence + 31)] == "q-1"
    assert (5, 999) not in anchors  # a span outside the text is not drawn


def test_without_an_analysis_the_view_is_the_rules_floor_waiting_for_the_model() -> None:
    start = TEXT.index("We will")
    rules = RulesFindings(
        action_items=[
            RulesActionItem(
                description="send the deck",
                owner="us",
                due_date=date(2026, 12, 11),
                quote=TEXT[start:],
                start=start,
                end=len(TEXT),
            )
        ],
        competitors=[RulesCompetitor(name="Salesforce", quote="Salesforce", start=20, end=30)],
    )
    now = datetime.now(UTC)
    answer = ActivityAnalysisOut(
        activity_id=uuid.uuid4(),
        activity_version=1,
        status="waiting_for_llm",
        message="not analysed yet: waiting for the language model (llm_unavailable)",
        waiting=WaitingOut(reason="llm_unavailable", message="down", attempts=2, since=now, last_attempt_at=now),
        degraded=True,
        analysis=None,
        rules=rules,
        history=[],
        proposals=[],
    )
    view = insight_view(answer, TEXT)
    assert (view.source, view.summary, view.waiting_attempts, view.waiting_reason) == ("rules", None, 2, "unavailable")
    assert view.counts == "1 action item, 1 competitor"
    [(_title, [item])] = [s for s in view.sections if s[0] == "Action items"]
    assert item.meta == "owner: us · due 2026-12-11" and item.anchor is not None
    assert [s.text for s in view.segments if s.anchor] == ["Salesforce", TEXT[start:]]


def test_a_series_anomaly_keeps_its_window_and_draws_it() -> None:
    values = [10.0, 12.0, 11.0, 9.0, 10.0, 3.0, 2.0] * 6 + [60.0]
    series = detectors.MetricSeries("activities", "Activities logged", date(2026, 10, 1), values)
    judged = judge_recent(values, series.first_day, days=2, settings=SeriesSettings())
    finding = detectors.series_finding(series, judged[-1], 3.5, judged)
    assert finding is not None
    window = finding.evidence["series"]
    assert len(window["values"]) == detectors.SERIES_WINDOW_DAYS and window["values"][-1] == 60.0
    assert window["first_day"] == "2026-10-16"  # 28 days ending on the judged day, 2026-11-12
    assert [j["anomalous"] for j in window["judged"]] == [False, True]
    anomaly = Anomaly(type="unusual_pattern", evidence=finding.evidence)
    svg = series_chart(anomaly)
    assert svg is not None and svg.count('class="flagged"') == 1 and 'class="baseline"' in svg
    assert "Series" not in [k for k, _ in evidence_rows(anomaly)]  # drawn, not listed
    assert series_chart(Anomaly(type="stale_deal", evidence={"idle_days": 3})) is None


def test_series_chart_escapes_and_handles_too_few_days() -> None:
    assert "Not enough days" in charts.series_chart("t", [charts.SeriesPoint("d", 1.0)])
    svg = charts.series_chart("<b>", [charts.SeriesPoint("a", 1.0), charts.SeriesPoint("b", 2.0, 1.0, True)])
    assert "<b>" not in svg and "&lt;b&gt;" in svg
