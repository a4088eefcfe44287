"""Who each score is for: refusing entities a score does not apply to, the entities not yet scored
by the current model, and the scores a record change can move."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from okyaku.db.models import Activity, Company, Contact, Deal, Task
from okyaku.errors import NotFound, ValidationFailed, field_error
from okyaku.events.model import ChangeEvent
from okyaku.predictions.examples import CUSTOMER_SQL, OPEN_LEAD_SQL
from okyaku.predictions.targets import PREDICTION_OF, ModelTarget

POPULATION_SQL = {"lead": OPEN_LEAD_SQL, "churn": CUSTOMER_SQL}


def check_population(session: Session, target: ModelTarget, entity_id: uuid.UUID) -> None:
    """Refuse what the score does not apply to, saying which score does."""
    if target == "deal":
        deal = session.get(Deal, entity_id)
        if deal is None:
            raise NotFound(f"deal {entity_id} not found", details={"id": str(entity_id)})
        if deal.status != "open":
            raise ValidationFailed(
                f"deal {entity_id} is already {deal.status}",
                details=[field_error("deal_id", f"the deal is closed ({deal.status}); only open deals are forecast")],
            )
        return
    contact = session.get(Contact, entity_id)
    if contact is None:
        raise NotFound(f"contact {entity_id} not found", details={"id": str(entity_id)})
    customer = contact.lifecycle_stage in ("customer", "evangelist")
    if target == "lead" and (customer or contact.lifecycle_stage == "churned"):
        raise ValidationFailed(
            "lead scores are for contacts who are not customers yet",
            details=[field_error("contact_id", f"lifecycle_stage is {contact.lifecycle_stage}; use churn-risk")],
        )
    if target == "churn" and not customer:
        raise ValidationFailed(
            "churn risk is for current customers",
            details=[field_error("contact_id", f"lifecycle_stage is {contact.lifecycle_stage}; use lead-score")],
        )


def unscored(session: Session, target: ModelTarget, version: int) -> list[uuid.UUID]:
    rows = session.scalars(
        text(
            f"SELECT c.id FROM contacts c WHERE {POPULATION_SQL[target]} AND NOT EXISTS ("
            "  SELECT 1 FROM current_predictions cp WHERE cp.target = :target AND cp.entity_id = c.id"
            "  AND cp.model_version = :version) ORDER BY c.id"
        ),
        {"target": PREDICTION_OF[target], "version": version},
    )
    return list(rows)


def affected_by(
    session: Session, event: ChangeEvent, targets: Sequence[ModelTarget]
) -> list[tuple[ModelTarget, uuid.UUID]]:
    """Which (target, entity) scores a record change can move, among ``targets``."""
    contacts: list[uuid.UUID] = []
    deals: list[uuid.UUID] = []
    if event.entity_type == "contact":
        contacts.append(event.entity_id)
    elif event.entity_type == "deal":
        deals.append(event.entity_id)
        contact_id = session.scalar(select(Deal.contact_id).where(Deal.id == event.entity_id))
        if contact_id is not None:
            contacts.append(contact_id)  # "deals opened so far" is a lead feature
    elif event.entity_type in ("activity", "task"):
        model: Any = Activity if event.entity_type == "activity" else Task
        row = session.execute(select(model.contact_id, model.deal_id).where(model.id == event.entity_id)).first()
        if row is not None:
            contacts += [row.contact_id] if row.contact_id else []
            deals += [row.deal_id] if row.deal_id else []
    elif event.entity_type == "company":
        company = session.get(Company, event.entity_id)
        if company is not None:
            contacts += list(session.scalars(select(Contact.id).where(Contact.company_id == company.id).limit(500)))
            deals += list(session.scalars(select(Deal.id).where(Deal.company_id == company.id).limit(500)))
    affected: list[tuple[ModelTarget, uuid.UUID]] = []
    if contacts:
        stages = dict(
            session.execute(select(Contact.id, Contact.lifecycle_stage).where(Contact.id.in_(contacts))).all()
        )
        for contact_id in contacts:
            stage = stages.get(contact_id)
            if stage is None:
                continue  # deleted since
            if stage in ("customer", "evangelist"):
                target: ModelTarget = "churn"
            elif stage == "churned":
                continue
            else:
                target = "lead"
            if target in targets:
                affected.append((target, contact_id))
    if deals and "deal" in targets:
        open_deals = session.scalars(
            text(
                "SELECT d.id FROM deals d JOIN pipeline_stages s ON s.id = d.stage_id "
                "WHERE d.id = ANY(:ids) AND NOT s.is_won AND NOT s.is_lost"
            ),
            {"ids": deals},
        )
        affected += [("deal", deal_id) for deal_id in open_deals]
    return affected
