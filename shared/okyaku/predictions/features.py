"""Features from the CRM, computed as of a prediction time (the "cutoff").

Training examples are observed at a cutoff before their outcome, so nothing recorded after the
prediction time reaches the model: activities count only if they happened before the cutoff,
a deal's stage is the one it was in at the cutoff (from its stage history), and fields whose
current value is written together with the outcome (lifecycle stage, lead status, the closing
stage, lost reason, an expected close date edited at closing) are never features.

Where a record's life has a known span, the cutoff is drawn at a deterministic point within it
(hash of the id), so that training sees records at every age, as scoring does (``examples.py``
finds the labelled examples and their cutoffs)."""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import DateTime, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Session

from okyaku.predictions.examples import Target, churn_examples, deal_examples, lead_examples
from okyaku.predictions.tabular import Dataset, ExcludedFeature, FeatureSpec, guess_group

FREE_MAIL = frozenset(
    {
        *("gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "icloud.com"),
        *("me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.com"),
        *("yandex.ru", "qq.com", "163.com"),
    }
)

_SENIORITY = (
    (5, re.compile(r"\b(chief|ceo|cfo|cto|coo|cmo|cro|founder|owner|president|partner)\b")),
    (4, re.compile(r"\b(vp|vice president|svp|evp)\b")),
    (3, re.compile(r"\b(director|head)\b")),
    (2, re.compile(r"\b(manager|lead|principal|senior)\b")),
)

DESIGN_EXCLUSIONS: dict[str, list[ExcludedFeature]] = {
    "lead": [
        ExcludedFeature("lifecycle_stage", "defines the outcome"),
        ExcludedFeature("lead_status", "written when a lead is qualified or disqualified, with the outcome"),
    ],
    "churn": [ExcludedFeature("lifecycle_stage", "defines the outcome")],
    "deal": [
        ExcludedFeature("stage (current)", "a closed deal's stage is its outcome; the stage at the cutoff is used"),
        ExcludedFeature("closed_at, lost_reason", "recorded when the deal closes"),
        ExcludedFeature("days_past_expected_close", "the expected close date is often edited when a deal closes"),
    ],
}
# Used by the prior's rules, never learnt from: the expected close date (see above), and activity
# totals that are exact sums of the per-type counts (collinear: they would split the weights).
SCORING_ONLY = {"days_past_expected_close", "activities_30d", "activities_90d"}


# --- feature specifications --------------------------------------------------------------------


def _activity_specs(prefix: str = "") -> list[FeatureSpec]:
    of = f" on the {prefix}" if prefix else ""
    return [
        FeatureSpec("calls_30d", "numeric", "engagement", f"calls in the last 30 days{of}"),
        FeatureSpec("meetings_30d", "numeric", "engagement", f"meetings in the last 30 days{of}"),
        FeatureSpec("emails_30d", "numeric", "engagement", f"emails in the last 30 days{of}"),
        FeatureSpec("calls_90d", "numeric", "engagement", f"calls in the last 90 days{of}"),
        FeatureSpec("meetings_90d", "numeric", "engagement", f"meetings in the last 90 days{of}"),
        FeatureSpec("emails_90d", "numeric", "engagement", f"emails in the last 90 days{of}"),
        FeatureSpec("activities_30d", "numeric", "engagement", f"activities in the last 30 days{of}"),
        FeatureSpec("activities_90d", "numeric", "engagement", f"activities in the last 90 days{of}"),
        FeatureSpec("activities_total", "numeric", "engagement", f"activities so far{of}"),
        FeatureSpec(
            "activity_trend", "numeric", "engagement", f"activities in the last 30 days minus the 30 before{of}"
        ),
        FeatureSpec("inbound_share_90d", "numeric", "engagement", f"share of inbound activities (90 days){of}"),
        FeatureSpec("days_since_last_activity", "numeric", "timing", f"days since the last activity{of}"),
    ]


_COMPANY_SPECS = [
    FeatureSpec("has_company", "boolean", "fit", "linked to a company"),
    FeatureSpec("company_industry", "categorical", "fit", "company industry"),
    FeatureSpec("company_employees", "numeric", "fit", "company employees", log_scale=True),
    FeatureSpec("company_revenue", "numeric", "fit", "company annual revenue", log_scale=True),
    FeatureSpec("company_country", "categorical", "fit", "company country"),
]

CONTACT_SPECS = [
    *_activity_specs(),
    FeatureSpec("deals_before", "numeric", "engagement", "deals opened so far"),
    *_COMPANY_SPECS,
    FeatureSpec("seniority", "numeric", "fit", "seniority of the job title (1 staff - 5 executive)"),
    FeatureSpec("corporate_email", "boolean", "fit", "corporate e-mail address"),
    FeatureSpec("has_phone", "boolean", "fit", "phone number known"),
    FeatureSpec("source", "categorical", "fit", "lead source"),
    FeatureSpec("contact_age_days", "numeric", "timing", "days since the contact was created"),
    FeatureSpec("overdue_tasks", "numeric", "timing", "overdue tasks"),
    FeatureSpec("open_tasks", "numeric", "timing", "open tasks"),
]

DEAL_SPECS = [
    *_activity_specs("deal"),
    *_COMPANY_SPECS,
    FeatureSpec("amount", "numeric", "fit", "deal amount", log_scale=True),
    FeatureSpec("has_contact", "boolean", "fit", "a contact on the deal"),
    FeatureSpec("stage", "categorical", "timing", "pipeline stage"),
    FeatureSpec("stage_probability", "numeric", "timing", "the stage's configured probability"),
    FeatureSpec("days_in_stage", "numeric", "timing", "days in the current stage"),
    FeatureSpec("stage_changes", "numeric", "timing", "stage changes so far"),
    FeatureSpec("deal_age_days", "numeric", "timing", "days since the deal was opened"),
    FeatureSpec("days_past_expected_close", "numeric", "timing", "days past the expected close date"),
]


# --- SQL --------------------------------------------------------------------------------------

_TARGETS_CTE = "WITH t AS (SELECT * FROM unnest(:ids, :cutoffs) AS t(id, cutoff))"

# One pass over the targets' activities, grouped (rather than a lateral subquery per target): the
# plan stays a single join whatever the statistics say right after a bulk import.
_ACTIVITY_AGGREGATES = """
    SELECT t2.id AS activity_target, t2.cutoff AS activity_cutoff,
           count(*) AS total,
           count(*) FILTER (WHERE a.occurred_at >= t2.cutoff - interval '30 days') AS n30,
           count(*) FILTER (WHERE a.occurred_at >= t2.cutoff - interval '90 days') AS n90,
           count(*) FILTER (WHERE a.occurred_at <  t2.cutoff - interval '30 days'
                              AND a.occurred_at >= t2.cutoff - interval '60 days') AS prev30,
           count(*) FILTER (WHERE a.type = 'call' AND a.occurred_at >= t2.cutoff - interval '30 days') AS calls30,
           count(*) FILTER (WHERE a.type = 'call' AND a.occurred_at >= t2.cutoff - interval '90 days') AS calls90,
           count(*) FILTER (WHERE a.type = 'meeting' AND a.occurred_at >= t2.cutoff - interval '30 days') AS meetings30,
           count(*) FILTER (WHERE a.type = 'meeting' AND a.occurred_at >= t2.cutoff - interval '90 days') AS meetings90,
           count(*) FILTER (WHERE a.type = 'email' AND a.occurred_at >= t2.cutoff - interval '30 days') AS emails30,
           count(*) FILTER (WHERE a.type = 'email' AND a.occurred_at >= t2.cutoff - interval '90 days') AS emails90,
           count(*) FILTER (WHERE a.direction = 'inbound' AND a.occurred_at >= t2.cutoff - interval '90 days') AS in90,
           count(*) FILTER (WHERE a.direction IN ('inbound', 'outbound')
                              AND a.occurred_at >= t2.cutoff - interval '90 days') AS directed90,
           max(a.occurred_at) AS last_at
      FROM t t2 JOIN activities a ON a.{key} = t2.id
     WHERE a.occurred_at < t2.cutoff AND a.type <> 'note'
     GROUP BY t2.id, t2.cutoff
"""

_CONTACT_SQL = f"""
{_TARGETS_CTE}
SELECT t.id, t.cutoff, c.created_at, c.email, c.phone, c.job_title, c.source,
       c.custom_properties AS props, co.id AS company_id, co.industry, co.employee_count, co.annual_revenue,
       co.country, co.custom_properties AS company_props, a.*,
       (SELECT count(*) FROM deals d WHERE d.contact_id = t.id AND d.created_at < t.cutoff) AS deals_before,
       tk.overdue, tk.open
  FROM t
  JOIN contacts c ON c.id = t.id
  LEFT JOIN companies co ON co.id = c.company_id
  LEFT JOIN ({_ACTIVITY_AGGREGATES.format(key="contact_id")}) a
         ON a.activity_target = t.id AND a.activity_cutoff = t.cutoff
  LEFT JOIN LATERAL (
        SELECT count(*) FILTER (WHERE k.due_date < t.cutoff) AS overdue, count(*) AS open
          FROM tasks k
         WHERE k.contact_id = t.id AND k.created_at < t.cutoff AND k.status <> 'cancelled'
           AND (k.completed_at IS NULL OR k.completed_at >= t.cutoff)) tk ON true
"""

_DEAL_SQL = f"""
{_TARGETS_CTE}
SELECT t.id, t.cutoff, d.created_at, d.amount, d.expected_close_date, d.contact_id,
       d.custom_properties AS props, co.id AS company_id, co.industry, co.employee_count, co.annual_revenue,
       co.country, co.custom_properties AS company_props, a.*,
       st.entered_at, st.changes, ps.name AS stage_name, ps.probability AS stage_probability,
       ps.is_won, ps.is_lost
  FROM t
  JOIN deals d ON d.id = t.id
  LEFT JOIN contacts ct ON ct.id = d.contact_id
  LEFT JOIN companies co ON co.id = coalesce(d.company_id, ct.company_id)
  LEFT JOIN ({_ACTIVITY_AGGREGATES.format(key="deal_id")}) a
         ON a.activity_target = t.id AND a.activity_cutoff = t.cutoff
  LEFT JOIN LATERAL (
        SELECT (array_agg(h.to_stage_id ORDER BY h.changed_at DESC, h.id DESC))[1] AS stage_id,
               max(h.changed_at) AS entered_at, count(*) AS changes
          FROM deal_stage_history h
         WHERE h.deal_id = t.id AND h.changed_at <= t.cutoff) st ON true
  LEFT JOIN pipeline_stages ps ON ps.id = st.stage_id
"""


def _execute(
    session: Session, sql: str, pairs: Sequence[tuple[uuid.UUID, datetime]], definitions: list[PropertyDefinition]
) -> list[Any]:
    # Custom properties are fetched only when the organization has any (decoding JSON per row costs).
    if not any(d.prefix != "company" for d in definitions):
        sql = sql.replace("c.custom_properties AS props", "NULL AS props").replace(
            "d.custom_properties AS props", "NULL AS props"
        )
    if not any(d.prefix == "company" for d in definitions):
        sql = sql.replace("co.custom_properties AS company_props", "NULL AS company_props")
    statement = text(sql).bindparams(
        bindparam("ids", type_=ARRAY(UUID(as_uuid=True))),
        bindparam("cutoffs", type_=ARRAY(DateTime(timezone=True))),
    )
    batch = len(pairs) > 200
    if batch:
        # Right after a bulk import the statistics lag behind and the planner may pick nested
        # loops over thousands of rows (quadratic); a batch is always better served by hashing.
        session.execute(text("SET LOCAL enable_nestloop = off"))
    rows = session.execute(statement, {"ids": [p[0] for p in pairs], "cutoffs": [p[1] for p in pairs]}).all()
    if batch:
        session.execute(text("SET LOCAL enable_nestloop TO DEFAULT"))
    order = {entity_id: i for i, (entity_id, _) in enumerate(pairs)}
    return sorted(rows, key=lambda r: order[r.id])  # deleted records simply drop out


# --- building datasets -------------------------------------------------------------------------


def _days(later: datetime | date | None, earlier: datetime | date | None) -> float | None:
    if later is None or earlier is None:
        return None
    if isinstance(later, datetime) and isinstance(earlier, datetime):
        # Whole days: a score's inputs then stay the same within a day (see the input hash).
        return float(math.floor((later - earlier).total_seconds() / 86400.0))
    return float(
        (
            (later.date() if isinstance(later, datetime) else later)
            - (earlier.date() if isinstance(earlier, datetime) else earlier)
        ).days
    )


def seniority(job_title: str | None) -> float | None:
    if not job_title:
        return None
    lowered = job_title.lower()
    for level, pattern in _SENIORITY:
        if pattern.search(lowered):
            return float(level)
    return 1.0


def corporate_email(email: str | None) -> bool | None:
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].lower() not in FREE_MAIL


def _activity_values(row: Any, cutoff: datetime) -> dict[str, Any]:
    directed = row.directed90 or 0  # no activity at all: the outer join gives NULLs, meaning 0
    return {
        "calls_30d": row.calls30 or 0,
        "meetings_30d": row.meetings30 or 0,
        "emails_30d": row.emails30 or 0,
        "calls_90d": row.calls90 or 0,
        "meetings_90d": row.meetings90 or 0,
        "emails_90d": row.emails90 or 0,
        "activities_30d": row.n30 or 0,
        "activities_90d": row.n90 or 0,
        "activities_total": row.total or 0,
        "activity_trend": (row.n30 or 0) - (row.prev30 or 0),
        "inbound_share_90d": round(row.in90 / directed, 3) if directed else None,
        "days_since_last_activity": _days(cutoff, row.last_at),
    }


def _company_values(row: Any) -> dict[str, Any]:
    return {
        "has_company": row.company_id is not None,
        "company_industry": row.industry,
        "company_employees": row.employee_count,
        "company_revenue": None if row.annual_revenue is None else float(row.annual_revenue),
        "company_country": row.country,
    }


@dataclass(frozen=True)
class PropertyDefinition:
    prefix: str  # "custom", "company" or "deal"
    name: str
    data_type: str

    @property
    def feature(self) -> str:
        return f"{self.prefix}.{self.name}"

    def spec(self) -> FeatureSpec:
        label = f"{self.name.replace('_', ' ')} ({'company ' if self.prefix == 'company' else ''}custom property)"
        if self.data_type == "number":
            return FeatureSpec(self.feature, "numeric", guess_group(self.name), label)
        if self.data_type == "boolean":
            return FeatureSpec(self.feature, "boolean", guess_group(self.name), label)
        if self.data_type == "date":
            return FeatureSpec(self.feature, "numeric", "timing", f"days since {label}")
        return FeatureSpec(self.feature, "categorical", guess_group(self.name), label)

    def value(self, raw: Any, cutoff: datetime) -> Any:
        if raw is None:
            return None
        if self.data_type == "number":
            try:
                number = float(raw)
            except (TypeError, ValueError):
                return None
            return number if math.isfinite(number) else None
        if self.data_type == "boolean":
            if isinstance(raw, bool):
                return raw
            return str(raw).strip().lower() in ("true", "yes", "1", "y")
        if self.data_type == "date":
            try:
                when = date.fromisoformat(str(raw)[:10])
            except ValueError:
                return None
            return float((cutoff.date() - when).days)
        return str(raw)


def property_definitions(session: Session, entity_types: dict[str, str]) -> list[PropertyDefinition]:
    """``entity_types`` maps an entity type to the prefix its features get."""
    rows = session.execute(
        text(
            "SELECT entity_type, name, data_type FROM custom_property_definitions "
            "WHERE entity_type = ANY(:types) ORDER BY entity_type, name"
        ),
        {"types": list(entity_types)},
    ).all()
    return [PropertyDefinition(entity_types[r.entity_type], r.name, r.data_type) for r in rows]


def _finish(
    specs: list[FeatureSpec],
    definitions: list[PropertyDefinition],
    records: list[dict[str, Any]],
    ids: list[str],
    times: list[datetime],
) -> Dataset:
    all_specs = specs + [d.spec() for d in definitions]
    columns = {s.name: [r.get(s.name) for r in records] for s in all_specs}
    return Dataset(specs=all_specs, columns=columns, ids=ids, times=times)


def contact_features(session: Session, pairs: Sequence[tuple[uuid.UUID, datetime]]) -> Dataset:
    """One row per (contact, cutoff) that still exists, in the given order."""
    definitions = property_definitions(session, {"contact": "custom", "company": "company"})
    records, ids, times = [], [], []
    for row in _execute(session, _CONTACT_SQL, pairs, definitions) if pairs else []:
        values = _activity_values(row, row.cutoff)
        values.update(_company_values(row))
        values.update(
            {
                "deals_before": row.deals_before,
                "seniority": seniority(row.job_title),
                "corporate_email": corporate_email(row.email),
                "has_phone": bool(row.phone),
                "source": row.source,
                "contact_age_days": max(_days(row.cutoff, row.created_at) or 0.0, 0.0),
                "overdue_tasks": row.overdue,
                "open_tasks": row.open,
            }
        )
        _add_properties(values, definitions, row, row.cutoff)
        records.append(values)
        ids.append(str(row.id))
        times.append(row.cutoff)
    return _finish(list(CONTACT_SPECS), definitions, records, ids, times)


def deal_features(session: Session, pairs: Sequence[tuple[uuid.UUID, datetime]]) -> Dataset:
    definitions = property_definitions(session, {"deal": "deal", "company": "company"})
    records, ids, times = [], [], []
    for row in _execute(session, _DEAL_SQL, pairs, definitions) if pairs else []:
        values = _activity_values(row, row.cutoff)
        values.update(_company_values(row))
        closed_stage = bool(row.is_won or row.is_lost)  # the outcome itself: never a feature
        values.update(
            {
                "amount": None if row.amount is None else float(row.amount),
                "has_contact": row.contact_id is not None,
                "stage": None if closed_stage else row.stage_name,
                "stage_probability": None
                if closed_stage or row.stage_probability is None
                else float(row.stage_probability),
                "days_in_stage": None if closed_stage else _days(row.cutoff, row.entered_at),
                "stage_changes": row.changes,
                "deal_age_days": max(_days(row.cutoff, row.created_at) or 0.0, 0.0),
                "days_past_expected_close": _days(row.cutoff.date(), row.expected_close_date),
            }
        )
        _add_properties(values, definitions, row, row.cutoff)
        records.append(values)
        ids.append(str(row.id))
        times.append(row.cutoff)
    return _finish(list(DEAL_SPECS), definitions, records, ids, times)


def _add_properties(values: dict[str, Any], definitions: list[PropertyDefinition], row: Any, cutoff: datetime) -> None:
    own = row.props or {}
    company = row.company_props or {}
    for definition in definitions:
        source = company if definition.prefix == "company" else own
        values[definition.feature] = definition.value(source.get(definition.name), cutoff)


def features_for(session: Session, target: Target, pairs: Sequence[tuple[uuid.UUID, datetime]]) -> Dataset:
    return deal_features(session, pairs) if target == "deal" else contact_features(session, pairs)


def training_dataset(
    session: Session, target: Target, now: datetime | None = None, *, keep_scoring_only: bool = False
) -> Dataset:
    """Labelled examples with their features as of each example's cutoff (without the
    scoring-only features unless asked: the prior's rules may read them)."""
    now = now or datetime.now(UTC)
    if target == "lead":
        examples = lead_examples(session, now)
    elif target == "churn":
        examples = churn_examples(session, now)
    else:
        examples = deal_examples(session)
    dataset = features_for(session, target, [(e.entity_id, e.cutoff) for e in examples])
    by_id = {str(e.entity_id): e for e in examples}
    dataset.labels = np.array([by_id[i].label for i in dataset.ids], dtype=np.int64)
    return dataset if keep_scoring_only else dataset.without(SCORING_ONLY)


def regression_dataset(session: Session, quantity: Literal["amount", "cycle"]) -> Dataset:
    """Won deals: their amount (without the amount as a feature), or days from the cutoff to closing."""
    examples = [e for e in deal_examples(session) if e.label == 1]
    if quantity == "amount":
        examples = [e for e in examples if e.amount is not None]
    dataset = deal_features(session, [(e.entity_id, e.cutoff) for e in examples]).without(SCORING_ONLY)
    by_id = {str(e.entity_id): e for e in examples}
    if quantity == "amount":
        dataset = dataset.without(["amount"])
        dataset.targets = np.array([by_id[i].amount or 0.0 for i in dataset.ids], dtype=float)
    else:
        dataset.targets = np.array(
            [max(_days(by_id[i].closed_at, by_id[i].cutoff) or 0.0, 0.0) for i in dataset.ids], dtype=float
        )
    return dataset
