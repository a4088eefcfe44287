"""The pipeline board's read model: a pipeline's open stages as columns, each with its deals'
count and amount and the cards of its deals (company, owner, the latest forecast's win
probability), in the caller's organization-scoped session (RLS)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, cast, func, select
from sqlalchemy.orm import Session

from okyaku.db.models import Company, Deal, Pipeline, PipelineStage, User
from okyaku.predictions.models import CurrentPrediction, Prediction

# Cards shown per column; the count and the amount always cover every deal of the stage.
CARDS_PER_COLUMN = 50


@dataclass(frozen=True)
class Card:
    id: uuid.UUID
    name: str
    version: int
    stage_id: uuid.UUID
    amount: Decimal | None
    currency: str
    expected_close_date: date | None
    company: str | None
    owner: str | None
    win_probability: float | None


@dataclass
class Column:
    stage: PipelineStage
    count: int = 0
    amount: float = 0.0
    cards: list[Card] = field(default_factory=list)

    @property
    def hidden(self) -> int:
        return self.count - len(self.cards)


@dataclass(frozen=True)
class Board:
    pipeline: Pipeline
    columns: list[Column]
    closing_stages: list[PipelineStage]  # the won and lost stages: where Won / Lost moves a deal


def board(session: Session, pipeline: Pipeline, owner_id: uuid.UUID | None) -> Board:
    stages = sorted(pipeline.stages, key=lambda s: s.position)
    columns = {s.id: Column(s) for s in stages if not (s.is_won or s.is_lost)}
    condition = [Deal.pipeline_id == pipeline.id, Deal.stage_id.in_(list(columns))]
    if owner_id is not None:
        condition.append(Deal.owner_id == owner_id)
    totals = session.execute(
        select(Deal.stage_id, func.count(Deal.id), func.coalesce(func.sum(Deal.amount), 0))
        .where(*condition)
        .group_by(Deal.stage_id)
    )
    for stage_id, count, amount in totals:
        columns[stage_id].count = int(count)
        columns[stage_id].amount = float(amount or 0)
    probability = cast(Prediction.payload["close_probability"].astext, Float)
    ranked = (
        select(
            Deal.id,
            Deal.name,
            Deal.version,
            Deal.stage_id,
            Deal.amount,
            Deal.currency,
            Deal.expected_close_date,
            Company.name.label("company"),
            User.name.label("owner"),
            probability.label("win_probability"),
            func.row_number()
            .over(partition_by=Deal.stage_id, order_by=(Deal.expected_close_date.asc().nulls_last(), Deal.id))
            .label("rank"),
        )
        .outerjoin(Company, Company.id == Deal.company_id)
        .outerjoin(User, User.id == Deal.owner_id)
        .outerjoin(
            CurrentPrediction,
            (CurrentPrediction.entity_id == Deal.id) & (CurrentPrediction.target == "deal_forecast"),
        )
        .outerjoin(Prediction, Prediction.id == CurrentPrediction.prediction_id)
        .where(*condition)
        .subquery()
    )
    rows = session.execute(select(ranked).where(ranked.c.rank <= CARDS_PER_COLUMN).order_by(ranked.c.rank))
    for row in rows:
        columns[row.stage_id].cards.append(
            Card(
                row.id,
                row.name,
                row.version,
                row.stage_id,
                row.amount,
                row.currency,
                row.expected_close_date,
                row.company,
                row.owner,
                row.win_probability,
            )
        )
    closing = [s for s in stages if s.is_won or s.is_lost]
    return Board(pipeline, list(columns.values()), closing)


def owners(session: Session) -> list[Any]:
    return list(session.execute(select(User.id, User.name).order_by(User.name)))
