"""Entry points of the recommendations feature, used by its HTTP API, its schedule and the bench."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, literal, or_, select
from sqlalchemy.orm import Session

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.models import PendingAction
from okyaku.db.models import Company, Contact, Deal
from okyaku.errors import NotFound, ValidationFailed, field_error
from okyaku.features import feature_enabled
from okyaku.recommendations.apply import build_proposal
from okyaku.recommendations.engine import generate_candidates
from okyaku.recommendations.explain import (
    CardForWords,
    CardWriter,
    describe_action,
    reason_sentence,
    suggested_content,
    write_card_text,
)
from okyaku.recommendations.facts import load_facts
from okyaku.recommendations.models import Recommendation
from okyaku.recommendations.ranking import FeedbackCounts, with_feedback
from okyaku.recommendations.settings import RecommendationSettings
from okyaku.recommendations.store import (
    EntityKey,
    RefreshCounts,
    acceptance_by_type,
    feedback_counts,
    record_feedback,
    store_candidates,
    visible,
)
from okyaku.runtime import Runtime
from okyaku.tenancy import list_organization_ids

logger = logging.getLogger(__name__)

CardEntity = Literal["deal", "contact", "company"]
FeedbackKind = Literal["helpful", "not_helpful", "done", "dismissed", "snoozed"]
AGENT_NAME = "recommendations"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RefreshReport:
    organizations: int = 0
    cards: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "organizations": self.organizations,
            "cards": self.cards,
            "seconds": round(self.seconds, 3),
            "errors": self.errors,
        }


def card_view(card: Recommendation, counts: FeedbackCounts, prior: float) -> dict[str, Any]:
    """A card as the API shows it, ranked with the reader's feedback."""
    ranking = with_feedback(card.ranking, counts, prior, card.type).as_dict()
    facts = {k: v for k, v in card.facts.items() if k != "action"}
    return {
        "id": str(card.id),
        "entity_type": card.entity_type,
        "entity_id": str(card.entity_id),
        "rule": card.rule,
        "type": card.type,
        "status": card.status,
        "title": card.title,
        "description": describe_action(card.facts.get("action")),
        "reasoning": reason_sentence(card.rule, facts),
        "facts": facts,
        "action": card.facts.get("action"),
        "suggested_content": suggested_content(card.facts.get("action")),
        "priority": card.priority,
        "confidence": card.confidence,
        "expected_value": ranking["expected_value"],
        "ranking": ranking,
        "owner_id": str(card.owner_id) if card.owner_id else None,
        "company_id": str(card.company_id) if card.company_id else None,
        "hidden_until": card.hidden_until.isoformat() if card.hidden_until else None,
        "expires_at": card.expires_at.isoformat(),
        "refreshed_at": card.refreshed_at.isoformat(),
        "pending_action_id": str(card.pending_action_id) if card.pending_action_id else None,
    }


class RecommendationService:
    def __init__(
        self,
        runtime: Runtime,
        *,
        writer: CardWriter | None = None,
        approvals: ApprovalService | None = None,
        clock: Callable[[], datetime] = utc_now,
        config: RecommendationSettings | None = None,
        context_builder: Any = None,
    ) -> None:
        self.runtime = runtime
        self.writer = writer
        self.clock = clock
        self.approvals = approvals or ApprovalService(runtime, clock=clock)
        self.config = config or RecommendationSettings.from_settings(runtime.settings)
        self._context_builder = context_builder

    # --- refreshing ------------------------------------------------------------------------------

    def refresh_organization(self, organization_id: uuid.UUID, *, now: datetime | None = None) -> RefreshCounts:
        now = now or self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            facts = load_facts(session, now, self.config)
            candidates = generate_candidates(facts, self.config)
            return store_candidates(session, candidates, scope=None, now=now, config=self.config)

    def _refresh_entities(
        self, session: Session, now: datetime, deal_ids: list[uuid.UUID], contact_ids: list[uuid.UUID]
    ) -> RefreshCounts:
        facts = load_facts(session, now, self.config, deal_ids=deal_ids, contact_ids=contact_ids)
        candidates = generate_candidates(facts, self.config)
        scope: list[EntityKey] = [("deal", i) for i in deal_ids] + [("contact", i) for i in contact_ids]
        return store_candidates(session, candidates, scope=scope, now=now, config=self.config)

    def refresh_all(self) -> RefreshReport:
        """The schedule: every organization in turn; one failing does not stop the others."""
        report = RefreshReport()
        started = time.perf_counter()
        for organization_id in list_organization_ids(self.runtime.db):
            report.organizations += 1
            try:
                counts = self.refresh_organization(organization_id)
            except Exception as error:
                logger.exception("recommendations refresh failed for organization %s", organization_id)
                report.errors.append(f"{organization_id}: {type(error).__name__}: {error}")
                continue
            for name, value in counts.as_dict().items():
                report.cards[name] = report.cards.get(name, 0) + value
        report.seconds = time.perf_counter() - started
        return report

    def on_schedule(self, _event: Mapping[str, Any], _context: Any) -> Mapping[str, Any]:
        if not feature_enabled(self.runtime.settings, "recommendations"):
            return {"skipped": "recommendations are disabled (AI_RECOMMENDATIONS_ENABLED=false)"}
        return self.refresh_all().as_dict()

    # --- reading ---------------------------------------------------------------------------------

    def _counts(self, session: Session, user_id: uuid.UUID | None, now: datetime) -> dict[str, FeedbackCounts]:
        return feedback_counts(session, user_id, now - timedelta(days=self.config.feedback_window_days))

    def _ranked(
        self, session: Session, cards: Sequence[Recommendation], user_id: uuid.UUID | None, now: datetime
    ) -> list[dict[str, Any]]:
        counts = self._counts(session, user_id, now)
        views = [card_view(c, counts.get(c.type, FeedbackCounts()), self.config.feedback_prior) for c in cards]
        return sorted(views, key=lambda v: (-v["expected_value"], v["priority"], v["id"]))

    def for_entity(
        self,
        organization_id: uuid.UUID,
        entity_type: CardEntity,
        entity_id: uuid.UUID,
        user_id: uuid.UUID | None,
        *,
        refresh: bool = True,
    ) -> dict[str, Any]:
        """The entity's cards, refreshed from its current facts, ranked for the caller. A
        contact's include its deals'; a company's those of its deals and contacts. Without
        ``refresh``, the stored cards as the last refresh left them (a page's fast first paint)."""
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            deal_ids, contact_ids = self._scope(session, entity_type, entity_id)
            if refresh:
                self._refresh_entities(session, now, deal_ids, contact_ids)
            if entity_type == "company":
                mine = or_(
                    Recommendation.company_id == entity_id,
                    Recommendation.entity_id.in_([*deal_ids, *contact_ids]),
                )
            else:
                mine = Recommendation.entity_id.in_([*deal_ids, *contact_ids])
            cards = list(session.scalars(select(Recommendation).where(mine, visible(now))))
            data = self._ranked(session, cards, user_id, now)
        return {"entity_type": entity_type, "entity_id": str(entity_id), "data": data, "generated_at": now.isoformat()}

    def _scope(
        self, session: Session, entity_type: CardEntity, entity_id: uuid.UUID
    ) -> tuple[list[uuid.UUID], list[uuid.UUID]]:
        """The deals and contacts whose cards the entity shows, read with its existence check in
        one statement. RLS: another organization's id is simply not found."""
        model: Any = {"deal": Deal, "contact": Contact, "company": Company}[entity_type]
        deals: Any = None
        contacts: Any = None
        if entity_type == "contact":
            deals = select(func.array_agg(Deal.id)).where(Deal.contact_id == entity_id).scalar_subquery()
        elif entity_type == "company":
            deals = select(func.array_agg(Deal.id)).where(Deal.company_id == entity_id).scalar_subquery()
            contacts = select(func.array_agg(Contact.id)).where(Contact.company_id == entity_id).scalar_subquery()
        row = session.execute(
            select(
                model.id, literal(None) if deals is None else deals, literal(None) if contacts is None else contacts
            ).where(model.id == entity_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"{entity_type} {entity_id} not found", details={"id": str(entity_id)})
        if entity_type == "deal":
            return [entity_id], []
        if entity_type == "contact":
            return list(row[1] or []), [entity_id]
        return list(row[1] or []), list(row[2] or [])

    def priorities(self, organization_id: uuid.UUID, user_id: uuid.UUID | None, *, limit: int = 20) -> dict[str, Any]:
        """Today's list for a user: visible cards on the records they own, best first."""
        if user_id is None:
            raise ValidationFailed(
                "this API key belongs to no user, so it owns no records",
                details=[field_error("authorization", "use a key issued to a user")],
            )
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            cards = list(
                session.scalars(select(Recommendation).where(Recommendation.owner_id == user_id, visible(now)))
            )
            data = self._ranked(session, cards, user_id, now)[:limit]
        return {"user_id": str(user_id), "data": data, "generated_at": now.isoformat()}

    def _card(self, session: Session, card_id: uuid.UUID, *, lock: bool = False) -> Recommendation:
        card = session.get(Recommendation, card_id, with_for_update=lock, populate_existing=lock)
        if card is None:
            raise NotFound(f"recommendation {card_id} not found", details={"id": str(card_id)})
        return card

    def explain(self, organization_id: uuid.UUID, card_id: uuid.UUID, user_id: uuid.UUID | None) -> dict[str, Any]:
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            card = self._card(session, card_id)
            view = self._ranked(session, [card], user_id, now)[0]
            context, citations = self._context(session, organization_id, card)
        words = CardForWords(
            type=card.type,
            rule=card.rule,
            title=card.title,
            subject=str(view["facts"].get("deal") or view["facts"].get("contact") or ""),
            facts=view["facts"],
            ranking=view["ranking"],
            context=context,
        )
        text, degraded = write_card_text(words, self.writer)
        return {
            "recommendation": view,
            "reasoning": text.reasoning,
            "talking_points": text.talking_points,
            "draft_email": text.draft_email,
            "cited_facts": text.cited_facts,
            "source": text.source,
            "citations": citations,
            "degraded": degraded,
        }

    def _context(self, session: Session, organization_id: uuid.UUID, card: Recommendation) -> tuple[str, list[Any]]:
        """The record's RAG context (its focus block only: no search, so no embedding call)."""
        if self.writer is None:
            return "", []
        from okyaku.rag.context import ContextBuilder, EntityRef

        if self._context_builder is None:
            from okyaku.embeddings.search import SemanticSearch

            self._context_builder = ContextBuilder(SemanticSearch(None))
        built = self._context_builder.build(
            session, organization_id, "", focus=EntityRef(card.entity_type, card.entity_id), token_budget=800
        )
        cited = [{"ref": c.ref, "entity_type": c.entity_type, "entity_id": str(c.entity_id)} for c in built.citations]
        return str(built.text), cited

    # --- acting ----------------------------------------------------------------------------------

    def feedback(
        self,
        organization_id: uuid.UUID,
        card_id: uuid.UUID,
        user_id: uuid.UUID | None,
        kind: FeedbackKind,
        *,
        until: datetime | None = None,
        comment: str | None = None,
    ) -> dict[str, Any]:
        now = self.clock()
        if until is not None and until <= now:
            raise ValidationFailed("until must be in the future", details=[field_error("until", "a past time")])
        with self.runtime.db.organization_scope(organization_id) as session:
            card = self._card(session, card_id, lock=True)
            record_feedback(session, card, user_id=user_id, kind=kind, until=until, comment=comment, now=now)
            if kind == "snoozed":
                card.status, card.hidden_until = "snoozed", until or now + timedelta(days=self.config.snooze_days)
            elif kind == "dismissed":
                card.status, card.hidden_until = "dismissed", until or now + timedelta(days=self.config.dismiss_days)
            elif kind == "done":
                card.status, card.closed_trigger_key, card.hidden_until = "done", card.trigger_key, None
            card.updated_at = now
            session.flush()
            return self._ranked(session, [card], user_id, now)[0]

    def acceptance(self, organization_id: uuid.UUID, *, days: int = 90) -> dict[str, Any]:
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            rows = acceptance_by_type(session, now - timedelta(days=days))
        return {"window_days": days, "data": rows}

    def apply(self, organization_id: uuid.UUID, card_id: uuid.UUID, user_id: uuid.UUID | None) -> dict[str, Any]:
        """Propose the card's write to the approval queue (applied at once when low risk and
        approval is off). A second apply finds the first's pending action and changes nothing."""
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            card = self._card(session, card_id, lock=True)
            existing = card.pending_action_id or self._earlier_proposal(session, card)
            if existing is not None:
                action = self.approvals.get(organization_id, existing)
                card.pending_action_id = existing
                return self._applied(card, action, already=True)
            if card.status not in ("open", "snoozed", "dismissed"):
                raise ValidationFailed(f"this recommendation is {card.status}; there is nothing to apply")
            draft = self._draft_for(session, organization_id, card)
            proposal, name, low_risk = build_proposal(session, card, now, draft)
            auto = (
                low_risk and proposal.operation == "create" and not self.runtime.settings.ai_require_approval_for_writes
            )
            action = self.approvals.propose(
                organization_id,
                execution_id=None,
                agent=AGENT_NAME,
                action=name,
                proposal=proposal,
                low_risk=low_risk,
                context=proposal.context,
                auto_apply=auto,
                requested_by=user_id,
            )
            card.pending_action_id = action.id
            card.status, card.closed_trigger_key, card.updated_at = "applied", card.trigger_key, now
            card.apply_result = {"pending_action_id": str(action.id), "status": action.status}
            record_feedback(session, card, user_id=user_id, kind="applied", until=None, comment=None, now=now)
            return self._applied(card, action, already=False)

    def _earlier_proposal(self, session: Session, card: Recommendation) -> uuid.UUID | None:
        """A proposal made for this card's situation whose link to the card was not saved."""
        return session.scalar(
            select(PendingAction.id)
            .where(
                PendingAction.agent == AGENT_NAME,
                PendingAction.context["recommendation_id"].astext == str(card.id),
                PendingAction.context["trigger_key"].astext == card.trigger_key,
            )
            .limit(1)
        )

    def _draft_for(self, session: Session, organization_id: uuid.UUID, card: Recommendation) -> dict[str, str] | None:
        if self.writer is None or (card.facts.get("action") or {}).get("kind") != "email":
            return None
        context, _ = self._context(session, organization_id, card)
        facts = {k: v for k, v in card.facts.items() if k != "action"}
        words = CardForWords(card.type, card.rule, card.title, "", facts, card.ranking, context)
        text, _degraded = write_card_text(words, self.writer)
        return text.draft_email

    def _applied(self, card: Recommendation, action: PendingAction, *, already: bool) -> dict[str, Any]:
        return {
            "recommendation_id": str(card.id),
            "status": "applied" if action.status == "approved" else action.status,
            "already_applied": already,
            "pending_action": {
                "id": str(action.id),
                "status": action.status,
                "action": action.action,
                "operation": action.operation,
                "entity_type": action.entity_type,
                "entity_id": str(action.entity_id) if action.entity_id else None,
                "changes": action.changes,
                "auto_applied": action.auto_applied,
                "result": action.result,
            },
        }
