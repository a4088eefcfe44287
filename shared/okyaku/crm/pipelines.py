"""Pipelines and their ordered stages; deals and their stage history."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from okyaku.crm.records import (
    DEAL_SPEC,
    PIPELINE_SPEC,
    Record,
    RecordService,
    _now,
)
from okyaku.db.models import Deal, DealStageHistory, Pipeline, PipelineStage
from okyaku.errors import Conflict, ValidationFailed, field_error
from okyaku.events import record_change


class PipelineService(RecordService):
    def __init__(self) -> None:
        super().__init__(PIPELINE_SPEC)

    def prepare_create(self, session: Session, values: dict[str, Any], actor: uuid.UUID | None) -> dict[str, Any]:
        stages = values.pop("stages")
        has_pipelines = session.scalar(select(func.count()).select_from(Pipeline)) or 0
        if not has_pipelines:
            values["is_default"] = True  # the first pipeline is the default one
        elif values.get("is_default"):
            self._clear_default(session)
        values["stages"] = [
            PipelineStage(
                name=s["name"],
                position=i,
                probability=s["probability"],
                is_won=s["is_won"],
                is_lost=s["is_lost"],
            )
            for i, s in enumerate(stages)
        ]
        return values

    def prepare_update(
        self, session: Session, record: Record, changes: dict[str, Any], actor: uuid.UUID | None
    ) -> dict[str, Any]:
        if changes.get("is_default") is True and not record.is_default:
            self._clear_default(session, keep=record.id)
        elif changes.get("is_default") is False and record.is_default:
            raise ValidationFailed(
                "a default pipeline is required",
                details=[field_error("is_default", "make another pipeline the default instead")],
            )
        stages = changes.pop("stages", None)
        if stages is not None and self._replace_stages(session, record, stages):
            changes["updated_at"] = _now()  # stage edits are a change of the pipeline
        return changes

    def before_delete(self, session: Session, record: Record) -> None:
        deals = session.scalar(select(func.count()).select_from(Deal).where(Deal.pipeline_id == record.id))
        if deals:
            raise Conflict(f"pipeline {record.id} still has {deals} deals; move or delete them first")
        if record.is_default:
            raise Conflict("the default pipeline cannot be deleted; make another pipeline the default first")

    def _clear_default(self, session: Session, keep: uuid.UUID | None = None) -> None:
        for other in session.scalars(select(Pipeline).where(Pipeline.is_default.is_(True), Pipeline.id != keep)):
            other.is_default = False
            session.flush()
            record_change(
                session,
                entity_type="pipeline",
                entity_id=other.id,
                operation="updated",
                version=other.version,
                changed_fields=["is_default"],
            )

    def _replace_stages(self, session: Session, pipeline: Pipeline, stages: list[dict[str, Any]]) -> bool:
        """Make the pipeline's stages exactly ``stages``, in order; returns whether anything changed."""
        existing = {s.id: s for s in pipeline.stages}
        unknown = [str(s["id"]) for s in stages if s.get("id") and s["id"] not in existing]
        if unknown:
            raise ValidationFailed(
                "stages must belong to this pipeline",
                details=[field_error("stages", f"unknown stage id {i}", "not_found") for i in unknown],
            )
        kept = {s["id"] for s in stages if s.get("id")}
        removed = [s for s in pipeline.stages if s.id not in kept]
        for gone in removed:
            used = session.scalar(select(func.count()).select_from(Deal).where(Deal.stage_id == gone.id))
            if used:
                raise Conflict(f"stage {gone.name!r} still has {used} deals; move them before removing it")
        before = [(s.id, s.name, s.position, float(s.probability), s.is_won, s.is_lost) for s in pipeline.stages]
        # Free the positions first: (pipeline_id, position) is unique.
        session.execute(
            update(PipelineStage)
            .where(PipelineStage.pipeline_id == pipeline.id)
            .values(position=-PipelineStage.position - 1)
        )
        for gone in removed:
            pipeline.stages.remove(gone)
        session.flush()
        for position, spec in enumerate(stages):
            stage: PipelineStage | None = existing.get(spec["id"]) if spec.get("id") else None
            if stage is None:
                stage = PipelineStage(pipeline_id=pipeline.id, position=position, name=spec["name"])
                pipeline.stages.append(stage)
            stage.name = spec["name"]
            stage.position = position
            stage.probability = spec["probability"]
            stage.is_won = spec["is_won"]
            stage.is_lost = spec["is_lost"]
        session.flush()
        session.refresh(pipeline, ["stages"])
        after = [(s.id, s.name, s.position, float(s.probability), s.is_won, s.is_lost) for s in pipeline.stages]
        return before != after


class DealService(RecordService):
    """A deal's stage belongs to its pipeline; every stage change is kept in its history."""

    def __init__(self) -> None:
        super().__init__(DEAL_SPEC)

    def prepare_create(self, session: Session, values: dict[str, Any], actor: uuid.UUID | None) -> dict[str, Any]:
        pipeline_id = values.get("pipeline_id") or self._default_pipeline_id(session)
        stage = self._resolve_stage(session, pipeline_id, values.get("stage_id"))
        values["pipeline_id"] = pipeline_id
        values["stage_id"] = stage.id
        values["currency"] = values.get("currency") or "USD"
        values["owner_id"] = values.get("owner_id") or actor
        if (stage.is_won or stage.is_lost) and values.get("closed_at") is None:
            values["closed_at"] = _now()
        return values

    def after_create(self, session: Session, record: Record, actor: uuid.UUID | None) -> None:
        session.add(
            DealStageHistory(
                deal_id=record.id,
                from_stage_id=None,
                to_stage_id=record.stage_id,
                changed_at=record.stage_entered_at or _now(),
                changed_by=actor,
            )
        )

    def prepare_update(
        self, session: Session, record: Record, changes: dict[str, Any], actor: uuid.UUID | None
    ) -> dict[str, Any]:
        pipeline_changed = "pipeline_id" in changes and changes["pipeline_id"] != record.pipeline_id
        if "pipeline_id" in changes and changes["pipeline_id"] is None:
            raise ValidationFailed("a deal needs a pipeline", details=[field_error("pipeline_id", "cannot be null")])
        if "stage_id" in changes and changes["stage_id"] is None:
            raise ValidationFailed("a deal needs a stage", details=[field_error("stage_id", "cannot be null")])
        if pipeline_changed or "stage_id" in changes:
            pipeline_id = changes.get("pipeline_id") or record.pipeline_id
            stage = self._resolve_stage(session, pipeline_id, changes.get("stage_id"))
            if stage.id != record.stage_id:
                changes["stage_id"] = stage.id
                changes["stage_entered_at"] = _now()
                closing = stage.is_won or stage.is_lost
                if closing and "closed_at" not in changes:
                    changes["closed_at"] = _now()
                elif not closing:
                    changes["closed_at"] = None
        return changes

    def after_update(self, session: Session, record: Record, changed: dict[str, Any], actor: uuid.UUID | None) -> None:
        if "stage_id" in changed:
            previous = session.scalar(
                select(DealStageHistory.to_stage_id)
                .where(DealStageHistory.deal_id == record.id)
                .order_by(DealStageHistory.id.desc())
                .limit(1)
            )
            session.add(
                DealStageHistory(
                    deal_id=record.id,
                    from_stage_id=previous,
                    to_stage_id=record.stage_id,
                    changed_at=record.stage_entered_at,
                    changed_by=actor,
                )
            )
            session.flush()
            session.refresh(record, ["stage"])

    def history(self, session: Session, deal_id: uuid.UUID) -> list[DealStageHistory]:
        self.get(session, deal_id)
        return list(
            session.scalars(
                select(DealStageHistory).where(DealStageHistory.deal_id == deal_id).order_by(DealStageHistory.id)
            )
        )

    def _default_pipeline_id(self, session: Session) -> uuid.UUID:
        pipeline_id = session.scalar(
            select(Pipeline.id).order_by(Pipeline.is_default.desc(), Pipeline.created_at).limit(1)
        )
        if pipeline_id is None:
            raise ValidationFailed(
                "there is no pipeline yet",
                details=[field_error("pipeline_id", "create a pipeline first", "missing")],
            )
        return pipeline_id

    def _resolve_stage(self, session: Session, pipeline_id: uuid.UUID, stage_id: uuid.UUID | None) -> PipelineStage:
        statement = select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)
        if stage_id is None:
            stage = session.scalar(statement.order_by(PipelineStage.position).limit(1))
        else:
            stage = session.scalar(statement.where(PipelineStage.id == stage_id))
        if stage is None:
            raise ValidationFailed(
                "the stage is not part of the deal's pipeline",
                details=[field_error("stage_id", f"no stage {stage_id} in pipeline {pipeline_id}", "not_found")],
            )
        return stage
