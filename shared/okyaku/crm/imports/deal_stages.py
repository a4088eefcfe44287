"""A deal row's pipeline and stage: from their names or ids, or from its outcome (won/lost/open),
with the API's defaults and DealService's rules for close dates."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from okyaku.crm.import_report import ImportRowError
from okyaku.crm.imports.columns import ColumnPlan
from okyaku.db.models import Pipeline


@dataclass(frozen=True)
class StageInfo:
    id: uuid.UUID
    name: str
    position: int
    is_won: bool
    is_lost: bool

    @property
    def closing(self) -> bool:
        return self.is_won or self.is_lost


@dataclass(frozen=True)
class PipelineInfo:
    id: uuid.UUID
    name: str
    external_id: str | None
    stages: tuple[StageInfo, ...]

    def stage_named(self, name: str) -> StageInfo | None:
        wanted = name.casefold()
        return next((st for st in self.stages if st.name.casefold() == wanted or str(st.id) == name), None)


def load_pipelines(session: Session) -> list[PipelineInfo]:
    """Every pipeline, the default one first."""
    pipelines = session.scalars(select(Pipeline).order_by(Pipeline.is_default.desc(), Pipeline.created_at))
    return [
        PipelineInfo(
            id=p.id,
            name=p.name,
            external_id=p.external_id,
            stages=tuple(
                StageInfo(st.id, st.name, st.position, st.is_won, st.is_lost)
                for st in sorted(p.stages, key=lambda st: st.position)
            ),
        )
        for p in pipelines
    ]


class DealStages:
    """Resolves deal rows' pipelines and stages against the organization's pipelines."""

    def __init__(self, pipelines: Sequence[PipelineInfo], plan: ColumnPlan, now: datetime) -> None:
        self.pipelines = list(pipelines)
        self.plan = plan
        self.now = now

    def restage(
        self,
        current: Mapping[str, Any],
        values: dict[str, Any],
        provided: Mapping[str, Any],
        stage: StageInfo,
    ) -> None:
        """A deal moved to another stage: entered now (or when it closed); open stages have no close date."""
        if stage.id == current["stage_id"]:
            return
        if stage.closing:
            values["closed_at"] = provided.get("closed_at") or self.now
            values["stage_entered_at"] = values["closed_at"]
        else:
            values["closed_at"] = None
            values["stage_entered_at"] = self.now

    def resolve(
        self,
        number: int,
        data: dict[str, Any],
        extras: Mapping[str, str],
        current: Mapping[str, Any] | None,
        errors: list[ImportRowError],
    ) -> StageInfo | None:
        """Pipeline and stage from names, ids or the outcome (won/lost/open); defaults like the API."""
        pipeline: PipelineInfo | None
        if "pipeline" in extras or "pipeline_id" in data:
            name = extras.get("pipeline") or str(data.get("pipeline_id"))
            field_name = "pipeline" if "pipeline" in extras else "pipeline_id"
            pipeline = next((p for p in self.pipelines if name in (p.external_id, str(p.id))), None) or next(
                (p for p in self.pipelines if p.name.casefold() == name.casefold()), None
            )
            if pipeline is None:
                errors.append(
                    self.plan.error(number, self.plan.column_of(field_name), field_name, f"no pipeline {name!r}")
                )
                return None
        elif current is not None:
            pipeline = next(p for p in self.pipelines if p.id == current["pipeline_id"])
        else:
            pipeline = self.pipelines[0]
        stage: StageInfo | None = None
        if "stage" in extras or "stage_id" in data:
            name = extras.get("stage") or str(data.get("stage_id"))
            field_name = "stage" if "stage" in extras else "stage_id"
            stage = pipeline.stage_named(name)
            if stage is None:
                errors.append(
                    self.plan.error(
                        number,
                        self.plan.column_of(field_name),
                        field_name,
                        f"pipeline {pipeline.name!r} has no stage {name!r}",
                    )
                )
                return None
        outcome = extras.get("outcome")
        if outcome is not None:
            outcome = {"closed_won": "won", "closed_lost": "lost"}.get(outcome, outcome)
            column = self.plan.column_of("outcome")
            if outcome not in ("won", "lost", "open"):
                errors.append(
                    self.plan.error(number, column, "outcome", f"expected won, lost or open, not {outcome!r}")
                )
                return None
            matches: Callable[[StageInfo], bool] = {
                "won": lambda st: st.is_won,
                "lost": lambda st: st.is_lost,
                "open": lambda st: not st.closing,
            }[outcome]
            if stage is not None and not matches(stage):
                errors.append(self.plan.error(number, column, "outcome", f"stage {stage.name!r} is not {outcome}"))
                return None
            if stage is None:
                kept = next((st for st in pipeline.stages if current and st.id == current["stage_id"]), None)
                stage = kept if kept and matches(kept) else next(filter(matches, pipeline.stages), None)
                if stage is None:
                    errors.append(
                        self.plan.error(number, column, "outcome", f"pipeline {pipeline.name!r} has no {outcome} stage")
                    )
                    return None
        if stage is None:
            kept = next((st for st in pipeline.stages if current and st.id == current["stage_id"]), None)
            stage = kept or pipeline.stages[0]
        data["pipeline_id"] = pipeline.id
        data["stage_id"] = stage.id
        return stage
