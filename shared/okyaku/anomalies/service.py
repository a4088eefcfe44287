"""The anomalies service: scan one organization, write its weekly insights, deliver its
notifications, and the HTTP operations (list, status transitions, notifications).

One organization per call: the schedules fan out one queue message per organization, so a big
tenant cannot starve the others and a failure affects only its own organization."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select, text, update

from okyaku.anomalies import detectors as d
from okyaku.anomalies import loaders
from okyaku.anomalies.insights import compute_figures, last_complete_week, write_narrative
from okyaku.anomalies.mail import DeliveryReport, Mailer, deliver_next, notification_mailer
from okyaku.anomalies.models import Anomaly, Insight, Notification
from okyaku.anomalies.series import SeriesSettings, judge_recent
from okyaku.anomalies.store import STATE_TYPES, notify_new, resolve_cleared, upsert_findings
from okyaku.errors import Conflict, NotFound
from okyaku.features import require_feature
from okyaku.runtime import Runtime

if TYPE_CHECKING:
    from okyaku.llm.gateway import LLMGateway

logger = logging.getLogger(__name__)

Transition = Literal["acknowledge", "resolve", "dismiss"]
TRANSITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    # action -> (new status, statuses it may come from)
    "acknowledge": ("acknowledged", ("open",)),
    "resolve": ("resolved", ("open", "acknowledged")),
    "dismiss": ("dismissed", ("open", "acknowledged")),
}
MAX_DELIVERIES_PER_RUN = 500


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ScanReport:
    organization_id: uuid.UUID
    found: dict[str, int] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    resolved: int = 0
    suppressed: int = 0
    notifications: int = 0
    series_judged: int = 0
    series_without_history: int = 0
    delivery: DeliveryReport = field(default_factory=DeliveryReport)
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization_id": str(self.organization_id),
            "found": self.found,
            "created": self.created,
            "updated": self.updated,
            "resolved": self.resolved,
            "suppressed": self.suppressed,
            "notifications": self.notifications,
            "series_judged": self.series_judged,
            "series_without_history": self.series_without_history,
            "emails": self.delivery.as_dict(),
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


class AnomalyService:
    def __init__(
        self,
        runtime: Runtime,
        llm: LLMGateway | None = None,
        *,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.llm = llm
        self.clock = clock
        if mailer is None:
            # The same server and sender as every other e-mail (SMTP when configured, else SES).
            mailer = notification_mailer(self.settings)
        self.mailer = mailer

    def require_enabled(self) -> None:
        require_feature(self.settings, "anomalies")

    # --- the scan ----------------------------------------------------------------------------

    def scan(self, organization_id: uuid.UUID, *, deliver: bool = True) -> ScanReport:
        """Run every detector on one organization and write what they found."""
        now = self.clock()
        report = ScanReport(organization_id)
        timer = _Timer(report.seconds)
        findings: list[d.Finding] = []
        with self.runtime.db.organization_scope(organization_id) as session:
            with timer("load"):
                deals = loaders.load_deals(session)
                stages = loaders.load_stages(session)
                stage_changes = loaders.load_stage_changes(session)
                touches = loaders.load_deal_touches(session)
                snapshots = loaders.load_snapshots(session)
            large = d.large_deal_amount(deal.amount for deal in deals if deal.is_open)
            with timer("deals"):
                gaps = d.learn_gaps(deals, touches, stage_changes)
                last_touch = {deal_id: times[-1] for deal_id, times in touches.items() if times}
                findings += d.detect_stale_deals(deals, last_touch, gaps, now, large)
                findings += d.detect_deal_changes(
                    deals, snapshots, stage_changes, stages, now - timedelta(days=7), large
                )
                findings += d.detect_missing_deal_fields(deals)
            with timer("data_gaps"):
                findings += d.detect_contacts_without_email(*loaders.load_contact_email_gaps(session))
                findings += d.detect_fill_rate_drops(loaders.load_fill_rates(session, now))
            with timer("churn"):
                findings += d.detect_churn_risk(
                    loaders.load_churn_scores(session), self.settings.anomaly_churn_threshold
                )
            with timer("series"):
                findings += self._series_findings(session, now.date(), report)
            with timer("write"):
                for finding in findings:
                    report.found[finding.type] = report.found.get(finding.type, 0) + 1
                # one finding per (type, entity): a deal both stale and changed is two anomalies
                unique = {(f.type, f.entity_key): f for f in findings}
                result = upsert_findings(session, list(unique.values()), now, self.settings.anomaly_dismiss_snooze_days)
                report.created, report.updated, report.suppressed = (
                    len(result.created),
                    len(result.updated),
                    result.suppressed,
                )
                report.resolved = resolve_cleared(session, STATE_TYPES, unique.keys(), now)
                report.notifications = notify_new(session, result.created, now)
                loaders.save_snapshots(session, [deal for deal in deals if deal.is_open], stage_changes, now)
        if deliver:
            with timer("deliver"):
                report.delivery = self.deliver(organization_id)
        logger.info("anomaly scan done", extra={"report": report.as_dict()})
        return report

    def _series_findings(self, session: Any, today: date, report: ScanReport) -> list[d.Finding]:
        threshold = self.settings.anomaly_series_threshold
        out = []
        for series in loaders.load_series(session, today):
            settings = SeriesSettings(threshold=threshold, counts=series.counts)
            judgements = judge_recent(
                series.values, series.first_day, days=self.settings.anomaly_series_days, settings=settings
            )
            if not judgements or all(j.method == "insufficient_history" for j in judgements):
                report.series_without_history += 1
                continue
            report.series_judged += 1
            # the latest anomalous day of the judged ones speaks for the series
            for judgement in reversed(judgements):
                finding = d.series_finding(series, judgement, threshold, judgements)
                if finding is not None:
                    out.append(finding)
                    break
        return out

    # --- delivery and the weekly run ----------------------------------------------------------

    def deliver(self, organization_id: uuid.UUID) -> DeliveryReport:
        report = DeliveryReport()
        now = self.clock()
        for _ in range(MAX_DELIVERIES_PER_RUN):
            with self.runtime.db.organization_scope(organization_id) as session:
                if not deliver_next(session, self.mailer, now, report):
                    break
        return report

    def weekly(self, organization_id: uuid.UUID, week_start: date | None = None) -> dict[str, Any]:
        """Compute and store the week's insights, then queue the summary e-mail for every admin and
        every user with digest notifications, and send what is due."""
        now = self.clock()
        week = week_start or last_complete_week(now.date())
        with self.runtime.db.organization_scope(organization_id) as session:
            figures = compute_figures(session, week)
        narrative, source, model, rejected = write_narrative(self.llm, figures)
        with self.runtime.db.organization_scope(organization_id) as session:
            insight_id = session.execute(
                text(
                    """
                    INSERT INTO ai_insights (week_start, figures, narrative, narrative_source, degraded, model,
                                             prompt_version, rejected_reason, created_at, updated_at)
                    VALUES (:week, CAST(:figures AS jsonb), :narrative, :source, :degraded, :model, :prompt,
                            :rejected, :now, :now)
                    ON CONFLICT (organization_id, week_start) DO UPDATE SET
                      figures = EXCLUDED.figures, narrative = EXCLUDED.narrative,
                      narrative_source = EXCLUDED.narrative_source, degraded = EXCLUDED.degraded,
                      model = EXCLUDED.model, prompt_version = EXCLUDED.prompt_version,
                      rejected_reason = EXCLUDED.rejected_reason, updated_at = EXCLUDED.updated_at
                    RETURNING id
                    """
                ),
                {
                    "week": week,
                    "figures": _json(figures),
                    "narrative": narrative,
                    "source": source,
                    "degraded": source != "llm",
                    "model": model,
                    "prompt": "anomalies.weekly_narrative@1",
                    "rejected": rejected,
                    "now": now,
                },
            ).scalar_one()
            recipients = set(session.scalars(text("SELECT id FROM users WHERE role = 'admin'")))
            recipients |= set(
                session.scalars(text("SELECT DISTINCT user_id FROM notifications WHERE email_status = 'digest'"))
            )
            queued = 0
            for user_id in recipients:
                queued += session.execute(  # type: ignore[attr-defined]
                    text(
                        """
                        INSERT INTO notifications (user_id, kind, insight_id, severity, title, body, email_status,
                                                   email_next_attempt_at, created_at)
                        VALUES (:user, 'weekly_summary', :insight, 'low', :title, :body, 'pending', :now, :now)
                        ON CONFLICT (user_id, insight_id) DO NOTHING
                        """
                    ),
                    {
                        "user": user_id,
                        "insight": insight_id,
                        "title": f"Weekly summary, week of {week.isoformat()}",
                        "body": narrative,
                        "now": now,
                    },
                ).rowcount
        delivery = self.deliver(organization_id)
        return {
            "organization_id": str(organization_id),
            "week_start": week.isoformat(),
            "insight_id": str(insight_id),
            "narrative_source": source,
            "degraded": source != "llm",
            "summaries_queued": queued,
            "emails": delivery.as_dict(),
        }

    # --- HTTP operations ----------------------------------------------------------------------

    def list_anomalies(
        self,
        organization_id: uuid.UUID,
        *,
        type_: str | None = None,
        severity: str | None = None,
        status: str | None = None,
        entity_type: str | None = None,
        entity_id: uuid.UUID | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Anomaly], int]:
        with self.runtime.db.organization_scope(organization_id) as session:
            query = select(Anomaly)
            for column, value in (
                (Anomaly.type, type_),
                (Anomaly.severity, severity),
                (Anomaly.status, status),
                (Anomaly.entity_type, entity_type),
                (Anomaly.entity_id, entity_id),
            ):
                if value is not None:
                    query = query.where(column == value)
            total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
            order = text("array_position(ARRAY['critical','high','medium','low']::varchar[], anomalies.severity)")
            rows = session.scalars(
                query.order_by(order, Anomaly.last_detected_at.desc(), Anomaly.id).limit(limit).offset(offset)
            )
            return list(rows), total

    def get(self, organization_id: uuid.UUID, anomaly_id: uuid.UUID) -> Anomaly:
        with self.runtime.db.organization_scope(organization_id) as session:
            anomaly = session.get(Anomaly, anomaly_id)
            if anomaly is None:
                raise NotFound(f"no anomaly {anomaly_id}")
            return anomaly

    def transition(
        self,
        organization_id: uuid.UUID,
        anomaly_id: uuid.UUID,
        action: Transition,
        *,
        user_id: uuid.UUID | None = None,
        note: str | None = None,
    ) -> Anomaly:
        new_status, allowed = TRANSITIONS[action]
        with self.runtime.db.organization_scope(organization_id) as session:
            anomaly = session.get(Anomaly, anomaly_id, with_for_update=True)
            if anomaly is None:
                raise NotFound(f"no anomaly {anomaly_id}")
            if anomaly.status not in allowed:
                raise Conflict(
                    f"cannot {action} an anomaly that is {anomaly.status}",
                    details={"status": anomaly.status, "allowed_from": list(allowed)},
                    code="invalid_transition",
                )
            now = self.clock()
            anomaly.status = new_status
            anomaly.status_changed_at = now
            anomaly.status_changed_by = user_id
            anomaly.status_note = note
            anomaly.updated_at = now
            session.flush()
            return anomaly

    def list_insights(self, organization_id: uuid.UUID, *, week: date | None = None, limit: int = 12) -> list[Insight]:
        with self.runtime.db.organization_scope(organization_id) as session:
            query = select(Insight).order_by(Insight.week_start.desc()).limit(limit)
            if week is not None:
                monday = week - timedelta(days=week.weekday())
                query = query.where(Insight.week_start == monday)
            return list(session.scalars(query))

    def list_notifications(
        self, organization_id: uuid.UUID, user_id: uuid.UUID | None, *, unread: bool = False, limit: int = 50
    ) -> list[Notification]:
        with self.runtime.db.organization_scope(organization_id) as session:
            query = select(Notification).order_by(Notification.created_at.desc(), Notification.id).limit(limit)
            query = query.where(Notification.user_id == user_id) if user_id else query.where(text("false"))
            if unread:
                query = query.where(Notification.read_at.is_(None))
            return list(session.scalars(query))

    def mark_read(
        self, organization_id: uuid.UUID, user_id: uuid.UUID | None, notification_id: uuid.UUID
    ) -> Notification:
        with self.runtime.db.organization_scope(organization_id) as session:
            notification = session.get(Notification, notification_id, with_for_update=True)
            if notification is None or notification.user_id != user_id:
                raise NotFound(f"no notification {notification_id}")
            if notification.read_at is None:
                notification.read_at = self.clock()
                session.flush()
            return notification

    def mark_all_read(self, organization_id: uuid.UUID, user_id: uuid.UUID | None) -> int:
        """Mark every unread notification of the user read; how many were."""
        if user_id is None:
            return 0
        with self.runtime.db.organization_scope(organization_id) as session:
            result = session.execute(
                update(Notification)
                .where(Notification.user_id == user_id, Notification.read_at.is_(None))
                .values(read_at=self.clock())
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


class _Timer:
    def __init__(self, into: dict[str, float]) -> None:
        self.into = into

    def __call__(self, name: str) -> _Timer:
        self._name = name
        return self

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.into[self._name] = self.into.get(self._name, 0.0) + time.perf_counter() - self._started
