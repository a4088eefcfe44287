"""Conversation intelligence: activities analysed on arrival, kept with their history, proposals made.

- ``on_change_record``: an activity change event (SQS). Unchanged text (same content hash) does
  nothing; a new text is analysed and stored with its proposals in one transaction. When the model
  is unavailable (unreachable, timed out, circuit open, busy, its output unusable after the
  gateway's own retries) the activity is marked waiting for it and the message is acknowledged:
  an outage is not a poison message, and 1,000 activities in the DLQ help no one. What does raise
  (retried, then dead-lettered): a body that is not a change event, a database failure, a bug.
- ``sweep``: the schedule's job. Analyses every activity whose current text has no analysis (those
  waiting for the model, missed events, dead letters), stopping when the model is unavailable or
  time runs out.
- ``activity_analysis`` / ``analyse_now`` / ``analyse_text``: the HTTP reads and writes. Without the
  LLM they answer with the rules floor and say "not analysed yet" (and why, for an activity
  waiting for the model), never an empty analysis.

Proposals are made only by the first analysis of a given text (a re-run on demand adds a version
to the history, not new proposals), and two deliveries of one event serialise on a per-activity
advisory lock, so no analysis or proposal is stored twice.
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select

from okyaku.agents.models import PendingAction
from okyaku.clock import work_deadline
from okyaku.conversation.analyzer import AnalysisResult, ConversationAnalyzer, TextToAnalyse
from okyaku.conversation.models import ConversationAnalysisRow
from okyaku.conversation.prompts import ANALYZE
from okyaku.conversation.proposals import (
    RULES_AGENT,
    Proposed,
    propose_updates,
    rules_item_key_of,
    rules_proposal_keys,
    rules_proposals_for,
    rules_task_proposals,
    store_proposals,
    withdraw_rules_proposals,
)
from okyaku.conversation.responses import (
    NO_TEXT,
    NOT_ANALYSED_LLM_DOWN,
    NOT_ANALYSED_PENDING,
    WAITING_FOR_LLM,
    ActivityAnalysisOut,
    AnalysisVersionOut,
    AnalyzeTextRequest,
    CompetitorIn,
    ProposalOut,
    StoredAnalysisOut,
    TextAnalysisOut,
    WaitingOut,
    not_analysed_message,
)
from okyaku.conversation.rules import Competitor, Perspective, extract_rules
from okyaku.conversation.schema import ANALYSIS_SCHEMA_VERSION, ConversationAnalysis, DroppedItem, RulesFindings
from okyaku.conversation.store import (
    ActivitySnapshot,
    analyses_of,
    analyses_of_many,
    clear_waiting,
    competitors,
    count_unanalysed,
    latest_for_hash,
    load_activities,
    load_activity,
    lock_activity,
    mark_waiting,
    never_analysed_activity_ids,
    next_analysis_version,
    organization_name,
    replace_competitors,
    store_analysis,
    untried_activity_ids,
    waiting_activity_ids,
    waiting_for,
    waiting_for_many,
)
from okyaku.db.models import Deal, PipelineStage
from okyaku.errors import DependencyUnavailable, NotFound, public_error
from okyaku.events import decode_change_event
from okyaku.features import feature_enabled, require_feature
from okyaku.llm.budget import llm_deadline
from okyaku.llm.errors import LLMUnavailable
from okyaku.llm.gateway import LLMGateway
from okyaku.runtime import Runtime
from okyaku.tenancy import list_organization_ids

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

logger = logging.getLogger(__name__)

Outcome = Literal["analysed", "unchanged", "superseded", "no_text", "not_found", "ignored", "disabled", "waiting"]
Trigger = Literal["event", "sweep", "request"]
# What the gateway raises for every model failure (okyaku.llm.errors: unavailable, timed out, busy,
# output invalid or truncated, request rejected, context exceeded, ...). Caught around the model
# call only: the database raises DependencyUnavailable too, and that must stay a retry.
LLM_ERRORS = (DependencyUnavailable,)
SWEEP_SAFETY_MARGIN_S = 30.0
SWEEP_DEFAULT_BUDGET_S = 240.0
# The HTTP routes answer behind an API gateway that gives up after 30 s: the model gets 25 of them.
HTTP_ANALYSIS_BUDGET_S = 25.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class WaitingForLLM(Exception):
    """The activity could not be analysed for want of the model and is marked waiting for it (the
    sweep analyses it later). ``cause`` is the gateway's error."""

    def __init__(self, cause: DependencyUnavailable) -> None:
        super().__init__(cause.message)
        self.cause = cause

    @property
    def model_down(self) -> bool:
        """The model itself is unavailable (not just unable to answer this text): stop trying others."""
        return isinstance(self.cause, LLMUnavailable)


@dataclass
class SweepReport:
    organizations: int = 0
    analysed: int = 0
    unchanged: int = 0
    failed: int = 0
    still_unanalysed: int = 0
    llm_available: bool = True
    complete: bool = True
    # tasks the rules floor proposed while the LLM was unavailable (see propose_from_rules)
    rules_proposals: int = 0


@dataclass(frozen=True)
class _Context:
    activity: ActivitySnapshot
    organization_name: str | None
    competitors: list[Competitor]
    stage_names: tuple[str, ...]


class ConversationService:
    def __init__(self, runtime: Runtime, llm: LLMGateway, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.runtime = runtime
        self.llm = llm
        self.clock = clock
        settings = runtime.settings
        self.analyzer = ConversationAnalyzer(
            llm, chunk_chars=settings.conversation_chunk_chars, max_tokens=settings.conversation_max_tokens
        )

    @property
    def enabled(self) -> bool:
        return feature_enabled(self.runtime.settings, "conversation")

    # --- the queue ---------------------------------------------------------------------------------

    def on_change_record(self, record: SQSRecord) -> Outcome:
        """One change event. Without the model the activity waits for the sweep and the message is
        acknowledged; a body that is not a change event, or a database failure, raises (retried,
        then dead-lettered)."""
        change = decode_change_event(record.body)
        if change.entity_type != "activity" or change.operation == "deleted":
            return "ignored"
        if not self.enabled:
            return "disabled"  # nothing kept waiting: the sweep analyses it once the feature is on
        try:
            outcome = self.analyse_activity(change.organization_id, change.entity_id, trigger="event")
        except WaitingForLLM as waiting:
            logger.info("activity %s waits for the model (%s): %s", change.entity_id, waiting.cause.code, waiting)
            return "waiting"
        logger.debug("activity %s (event %s): %s", change.entity_id, change.event_id, outcome)
        return outcome

    # --- analysing one activity --------------------------------------------------------------------

    def _context(
        self, organization_id: uuid.UUID, activity_id: uuid.UUID, *, unless_analysed: bool = False
    ) -> _Context | Literal["unchanged"] | None:
        """What analysing the activity needs, in one transaction; "unchanged" (with
        ``unless_analysed``) when its current text already has an analysis."""
        with self.runtime.db.organization_scope(organization_id) as session:
            activity = load_activity(session, activity_id)
            if activity is None:
                return None
            if unless_analysed and latest_for_hash(session, activity_id, activity.content_hash) is not None:
                return "unchanged"
            stage_names: tuple[str, ...] = ()
            if activity.deal_id is not None:
                pipeline_id = session.scalar(select(Deal.pipeline_id).where(Deal.id == activity.deal_id))
                stage_names = tuple(
                    session.scalars(
                        select(PipelineStage.name)
                        .where(PipelineStage.pipeline_id == pipeline_id)
                        .order_by(PipelineStage.position)
                    )
                )
            return _Context(activity, organization_name(session, organization_id), competitors(session), stage_names)

    def _rules(self, context: _Context) -> RulesFindings:
        activity = context.activity
        return _rules_floor(
            activity.text,
            activity.occurred_at.date(),
            activity.type,
            activity.direction,
            context.organization_name,
            tuple(context.competitors),
        )

    def analyse_activity(
        self, organization_id: uuid.UUID, activity_id: uuid.UUID, *, trigger: Trigger, force: bool = False
    ) -> Outcome:
        """Analyse the activity's current text and store it; :class:`WaitingForLLM` (the activity
        marked waiting) when the model could not do it."""
        context = self._context(organization_id, activity_id, unless_analysed=not force)
        if context is None:
            return "not_found"
        if context == "unchanged":
            return "unchanged"
        activity = context.activity
        if not activity.text.strip():
            return "no_text"
        try:
            result = self.analyzer.analyse(
                TextToAnalyse(
                    text=activity.text,
                    activity_type=activity.type,
                    direction=activity.direction,
                    day=activity.occurred_at.date(),
                    subject=activity.subject if activity.body and activity.body.strip() else None,
                    stage_names=context.stage_names,
                )
            )
        except LLM_ERRORS as error:
            self._mark_waiting(organization_id, activity, error)
            raise WaitingForLLM(error) from error
        return self._store(organization_id, context, result, self._rules(context), trigger=trigger, force=force)

    def _mark_waiting(
        self, organization_id: uuid.UUID, analysed: ActivitySnapshot, error: DependencyUnavailable
    ) -> None:
        reason = public_error(error)
        with self.runtime.db.organization_scope(organization_id) as session:
            lock_activity(session, analysed.id)
            current = load_activity(session, analysed.id)
            if current is None or current.content_hash != analysed.content_hash:
                return  # deleted or edited meanwhile: the new text's own event takes it from here
            if latest_for_hash(session, analysed.id, analysed.content_hash) is not None:
                return  # analysed already (another delivery; a forced re-analysis that failed)
            mark_waiting(
                session,
                analysed.id,
                analysed.content_hash,
                reason=reason["code"][:40],
                message=reason["message"],
                now=self.clock(),
            )

    def _store(
        self,
        organization_id: uuid.UUID,
        context: _Context,
        result: AnalysisResult,
        rules: RulesFindings,
        *,
        trigger: Trigger,
        force: bool,
    ) -> Outcome:
        analysed = context.activity
        now = self.clock()
        with self.runtime.db.organization_scope(organization_id) as session:
            lock_activity(session, analysed.id)
            current = load_activity(session, analysed.id)
            if current is None:
                return "not_found"
            if current.content_hash != analysed.content_hash:
                return "superseded"  # the text changed meanwhile: its own event analyses the new one
            earlier = latest_for_hash(session, analysed.id, analysed.content_hash)
            if earlier is not None and not force:
                return "unchanged"  # a concurrent delivery of the same event stored it first
            row = store_analysis(
                session,
                activity_id=analysed.id,
                analysis_version=next_analysis_version(session, analysed.id),
                activity_version=current.version,
                content_hash=analysed.content_hash,
                schema_version=ANALYSIS_SCHEMA_VERSION,
                prompt=result.prompt,
                model=result.model,
                method="llm",
                trigger=trigger,
                analysis=result.analysis.model_dump(mode="json"),
                rules=rules.model_dump(mode="json"),
                dropped=[d.model_dump(mode="json") for d in result.dropped],
                chunks=result.chunks,
                prompt_tokens=result.usage.prompt_tokens,
                completion_tokens=result.usage.completion_tokens,
            )
            clear_waiting(session, analysed.id)
            withdrawn = withdraw_rules_proposals(session, analysed.id, now=now)
            if withdrawn:
                logger.info("activity %s: %d rules-floor proposals superseded by the LLM", analysed.id, withdrawn)
            if earlier is None:  # the first analysis of this text makes its proposals, once
                proposals = propose_updates(session, result.analysis, current)
                ttl = timedelta(hours=self.runtime.settings.ai_approval_ttl_hours)
                ids = store_proposals(session, proposals, activity=current, analysis_id=row.id, now=now, ttl=ttl)
                row.proposal_ids = [str(i) for i in ids]
        if result.dropped:
            logger.info("activity %s: %d items without a quote in the text dropped", analysed.id, len(result.dropped))
        return "analysed"

    # --- the sweep ---------------------------------------------------------------------------------

    def sweep(
        self, *, deadline: float | None = None, organization_ids: Sequence[uuid.UUID] | None = None
    ) -> SweepReport:
        """Analyse what is still unanalysed, organization by organization (all of them unless
        ``organization_ids``), until ``deadline`` (a ``time.monotonic()`` value) or the LLM is found
        unavailable."""
        report = SweepReport()
        batch = self.runtime.settings.conversation_sweep_batch
        organizations = (
            list(organization_ids) if organization_ids is not None else list_organization_ids(self.runtime.db)
        )
        for position, organization_id in enumerate(organizations):
            report.organizations += 1
            for activity_id in self._sweep_order(organization_id, batch):
                if deadline is not None and time.monotonic() >= deadline:
                    report.complete = False
                    break
                try:
                    outcome = self.analyse_activity(organization_id, activity_id, trigger="sweep")
                except WaitingForLLM as waiting:
                    if waiting.model_down:
                        logger.warning("sweep stopped: the LLM is unavailable (%s)", waiting)
                        report.llm_available = False
                        break
                    # This text only (output unusable, too long for the model): it stays waiting.
                    logger.warning("activity %s could not be analysed: %s", activity_id, waiting)
                    report.failed += 1
                    continue
                if outcome == "analysed":
                    report.analysed += 1
                else:
                    report.unchanged += 1
            if not (report.llm_available and report.complete):
                if not report.llm_available:
                    # Meanwhile the rules floor proposes the unmistakable tasks, so the approval
                    # queue is not empty for want of a model; the LLM's analysis supersedes them.
                    for rest in organizations[position:]:
                        report.rules_proposals += self.propose_from_rules(rest, deadline=deadline)
                for rest in organizations[position:]:
                    with self.runtime.db.organization_scope(rest) as session:
                        report.still_unanalysed += count_unanalysed(session)
                break
        return report

    def propose_from_rules(self, organization_id: uuid.UUID, *, deadline: float | None = None) -> int:
        """Tasks the rules floor proposes for activities the LLM has never analysed: each explicit,
        dated commitment once per activity (never again, whatever became of it); how many were
        made. A page of activities is read in one transaction (most have nothing new: each sweep
        while the model is down passes over them all); one with something new is written in its own,
        under its lock and checked again, so concurrent sweeps make each proposal once."""
        made = 0
        after: uuid.UUID | None = None
        batch = self.runtime.settings.conversation_sweep_batch
        ttl = timedelta(hours=self.runtime.settings.ai_approval_ttl_hours)
        while deadline is None or time.monotonic() < deadline:
            with self.runtime.db.organization_scope(organization_id) as session:
                page = never_analysed_activity_ids(session, limit=batch, after=after)
                activities = load_activities(session, page)
                org_name = organization_name(session, organization_id) if page else None
                known = {
                    activity_id: {a.context.get("item_key") for a in actions}
                    for activity_id, actions in rules_proposals_for(session, page).items()
                }
            if not page:
                break
            after = page[-1]
            today = self.clock().date()
            for activity in activities:
                if deadline is not None and time.monotonic() >= deadline:
                    return made
                if any(
                    rules_item_key_of(p) not in known.get(activity.id, set())
                    for p in self._floor(activity, org_name, today)
                ):
                    made += self._store_floor_proposals(organization_id, activity.id, org_name, ttl)
        return made

    def _floor(self, activity: ActivitySnapshot, org_name: str | None, today: date) -> list[Proposed]:
        rules = _rules_floor(
            activity.text, activity.occurred_at.date(), activity.type, activity.direction, org_name, ()
        )
        return rules_task_proposals(rules, activity, today=today)

    def _store_floor_proposals(
        self, organization_id: uuid.UUID, activity_id: uuid.UUID, org_name: str | None, ttl: timedelta
    ) -> int:
        with self.runtime.db.organization_scope(organization_id) as session:
            lock_activity(session, activity_id)
            activity = load_activity(session, activity_id)
            if activity is None or analyses_of(session, activity_id):
                return 0  # deleted, or analysed by the LLM meanwhile
            proposed = rules_proposal_keys(session, activity_id)
            now = self.clock()
            fresh = [p for p in self._floor(activity, org_name, now.date()) if rules_item_key_of(p) not in proposed]
            if not fresh:
                return 0
            ids = store_proposals(
                session, fresh, activity=activity, analysis_id=None, now=now, ttl=ttl, agent=RULES_AGENT
            )
            return len(ids)

    def _sweep_order(self, organization_id: uuid.UUID, batch: int) -> Iterator[uuid.UUID]:
        """Activities never tried first (id order), then those waiting for the model, the least
        recently tried first: texts the model keeps failing on cannot use up every sweep's time
        while the others wait. Each activity once per sweep; read a page at a time."""
        tried: set[uuid.UUID] = set()
        after: uuid.UUID | None = None
        while True:
            with self.runtime.db.organization_scope(organization_id) as session:
                page = untried_activity_ids(session, limit=batch, after=after)
            if not page:
                break
            after = page[-1]
            tried.update(page)
            yield from page
        while True:
            with self.runtime.db.organization_scope(organization_id) as session:
                page = waiting_activity_ids(session, limit=batch, exclude=tried)
            if not page:
                return
            tried.update(page)
            yield from page

    def on_schedule(self, _event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if not self.enabled:
            return {"disabled": "AI_CONVERSATION_ENABLED is false"}
        deadline = work_deadline(context, margin_s=SWEEP_SAFETY_MARGIN_S, default_budget_s=SWEEP_DEFAULT_BUDGET_S)
        return asdict(self.sweep(deadline=deadline))

    # --- HTTP --------------------------------------------------------------------------------------

    def llm_available(self) -> bool:
        try:
            self.llm.sync.list_models(timeout_s=self.runtime.settings.llm_health_timeout_s)
        except Exception:  # any failure of the probe means: not now
            return False
        return True

    def stored_analyses(
        self, organization_id: uuid.UUID, activity_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, ActivityAnalysisOut]:
        """What is stored for several activities (a record page's timeline), in four queries and
        without asking the model anything: a page render never waits on the LLM. An activity
        without an analysis of its current text gets the rules floor and "waiting for the language
        model" (with the reason) or "not analysed yet", never an empty analysis."""
        require_feature(self.runtime.settings, "conversation")
        with self.runtime.db.organization_scope(organization_id) as session:
            activities = load_activities(session, activity_ids)
            rows_of: dict[uuid.UUID, list[ConversationAnalysisRow]] = {}
            for row in analyses_of_many(session, activity_ids):
                rows_of.setdefault(row.activity_id, []).append(row)
            waiting_of = {w.activity_id: w for w in waiting_for_many(session, activity_ids)}
            proposal_ids = [uuid.UUID(str(i)) for rows in rows_of.values() for r in rows for i in r.proposal_ids]
            actions = (
                list(session.scalars(select(PendingAction).where(PendingAction.id.in_(proposal_ids))))
                if proposal_ids
                else []
            )
            floor_of = rules_proposals_for(session, activity_ids)
            needs_rules = any(
                not any(r.content_hash == a.content_hash for r in rows_of.get(a.id, [])) for a in activities
            )
            names = competitors(session) if needs_rules else []
            org_name = organization_name(session, organization_id) if needs_rules else None
        action_by_id = {a.id: a for a in actions}
        out: dict[uuid.UUID, ActivityAnalysisOut] = {}
        for activity in activities:
            rows = rows_of.get(activity.id, [])
            current = next((r for r in reversed(rows) if r.content_hash == activity.content_hash), None)
            mine = [
                action_by_id[uuid.UUID(str(i))]
                for r in rows
                for i in r.proposal_ids
                if uuid.UUID(str(i)) in action_by_id
            ] + floor_of.get(activity.id, [])
            base: dict[str, Any] = {
                "activity_id": activity.id,
                "activity_version": activity.version,
                "history": [_version(r, activity) for r in rows],
                "proposals": [_proposal(a) for a in sorted(mine, key=lambda a: a.created_at)],
            }
            if current is not None:
                stored = StoredAnalysisOut(
                    **_version(current, activity).model_dump(),
                    analysis=ConversationAnalysis.model_validate(current.analysis),
                    dropped=[DroppedItem.model_validate(d) for d in current.dropped],
                )
                rules = RulesFindings.model_validate(current.rules)
                out[activity.id] = ActivityAnalysisOut(
                    **base, rules=rules, status="analysed", degraded=False, analysis=stored
                )
                continue
            rules = self._rules(_Context(activity, org_name, names, ()))
            waiting = waiting_of.get(activity.id)
            if not activity.text.strip():
                out[activity.id] = ActivityAnalysisOut(
                    **base, rules=rules, status="no_text", message=NO_TEXT, degraded=False, analysis=None
                )
            elif waiting is not None and waiting.content_hash == activity.content_hash:
                waiting_out = WaitingOut.model_validate(waiting, from_attributes=True)
                out[activity.id] = ActivityAnalysisOut(
                    **base,
                    rules=rules,
                    status="waiting_for_llm",
                    message=WAITING_FOR_LLM.format(reason=waiting_out.reason),
                    waiting=waiting_out,
                    degraded=True,
                    analysis=None,
                )
            else:
                out[activity.id] = ActivityAnalysisOut(
                    **base,
                    rules=rules,
                    status="not_analysed",
                    message=NOT_ANALYSED_PENDING,
                    degraded=False,
                    analysis=None,
                )
        return out

    def activity_analysis(self, organization_id: uuid.UUID, activity_id: uuid.UUID) -> ActivityAnalysisOut:
        require_feature(self.runtime.settings, "conversation")
        context = self._context(organization_id, activity_id)
        if not isinstance(context, _Context):
            raise NotFound(f"activity {activity_id} not found", details={"id": str(activity_id)})
        activity = context.activity
        with self.runtime.db.organization_scope(organization_id) as session:
            rows = analyses_of(session, activity_id)
            waiting = waiting_for(session, activity_id)
            if waiting is not None and waiting.content_hash == activity.content_hash:
                waiting_out: WaitingOut | None = WaitingOut.model_validate(waiting, from_attributes=True)
            else:
                waiting_out = None  # none, or for an earlier text
            proposal_ids = [uuid.UUID(str(i)) for row in rows for i in row.proposal_ids]
            actions = [
                *(
                    session.scalars(select(PendingAction).where(PendingAction.id.in_(proposal_ids))).all()
                    if proposal_ids
                    else []
                ),
                *rules_proposals_for(session, [activity_id]).get(activity_id, []),
            ]
        current = next((r for r in reversed(rows) if r.content_hash == activity.content_hash), None)
        history = [_version(row, activity) for row in rows]
        proposals = [_proposal(a) for a in sorted(actions, key=lambda a: a.created_at)]
        out: dict[str, Any] = {
            "activity_id": activity.id,
            "activity_version": activity.version,
            "rules": self._rules(context),
            "history": history,
            "proposals": proposals,
        }
        if current is not None:
            stored = StoredAnalysisOut(
                **_version(current, activity).model_dump(),
                analysis=ConversationAnalysis.model_validate(current.analysis),
                dropped=[DroppedItem.model_validate(d) for d in current.dropped],
            )
            return ActivityAnalysisOut(**out, status="analysed", degraded=False, analysis=stored)
        if not activity.text.strip():
            return ActivityAnalysisOut(**out, status="no_text", message=NO_TEXT, degraded=False, analysis=None)
        if waiting_out is not None:
            return ActivityAnalysisOut(
                **out,
                status="waiting_for_llm",
                message=WAITING_FOR_LLM.format(reason=waiting_out.reason),
                waiting=waiting_out,
                degraded=True,  # only the rules floor speaks until the sweep has analysed it
                analysis=None,
            )
        llm_up = self.llm_available()
        message = NOT_ANALYSED_PENDING if llm_up else NOT_ANALYSED_LLM_DOWN
        return ActivityAnalysisOut(**out, status="not_analysed", message=message, degraded=not llm_up, analysis=None)

    def analyse_now(self, organization_id: uuid.UUID, activity_id: uuid.UUID, *, force: bool) -> ActivityAnalysisOut:
        """Analyse on request (``force``: again, even if this text has an analysis)."""
        require_feature(self.runtime.settings, "conversation")
        try:
            with llm_deadline(HTTP_ANALYSIS_BUDGET_S):  # a person waits on the other end
                outcome = self.analyse_activity(organization_id, activity_id, trigger="request", force=force)
        except WaitingForLLM as error:
            logger.warning("on-demand analysis of %s failed: %s", activity_id, error)
            answer = self.activity_analysis(organization_id, activity_id)
            if answer.status in ("not_analysed", "waiting_for_llm"):
                answer.message = not_analysed_message(error.cause.code)
            elif answer.status == "analysed":
                answer.message = not_analysed_message(error.cause.code, again=True)
            answer.degraded = True
            return answer
        if outcome == "not_found":
            raise NotFound(f"activity {activity_id} not found", details={"id": str(activity_id)})
        return self.activity_analysis(organization_id, activity_id)

    def analyse_text(self, organization_id: uuid.UUID, request: AnalyzeTextRequest) -> TextAnalysisOut:
        """A draft analysed in real time: read-only, nothing is stored."""
        require_feature(self.runtime.settings, "conversation")
        day = (request.occurred_at or self.clock()).astimezone(UTC).date()
        with self.runtime.db.organization_scope(organization_id) as session:
            names = competitors(session)
            perspective = Perspective.for_activity(
                request.type, request.direction, organization_name(session, organization_id)
            )
        rules = extract_rules(request.text, anchor=day, perspective=perspective, competitors=names)
        item = TextToAnalyse(request.text, request.type, request.direction, day, request.subject)
        try:
            result = self.analyzer.analyse(item, deadline=time.monotonic() + HTTP_ANALYSIS_BUDGET_S)
        except LLM_ERRORS as error:
            logger.warning("draft analysis without the LLM: %s", error.message)
            return TextAnalysisOut(
                status="not_analysed",
                message=not_analysed_message(error.code),
                degraded=True,
                analysis=None,
                dropped=[],
                rules=rules,
                prompt=ANALYZE.id,
            )
        return TextAnalysisOut(
            status="analysed",
            degraded=False,
            analysis=result.analysis,
            dropped=result.dropped,
            rules=rules,
            model=result.model,
            prompt=result.prompt,
        )

    # --- the competitor list -----------------------------------------------------------------------

    def competitors(self, organization_id: uuid.UUID) -> list[CompetitorIn]:
        require_feature(self.runtime.settings, "conversation")
        with self.runtime.db.organization_scope(organization_id) as session:
            return [CompetitorIn(name=c.name, aliases=list(c.aliases)) for c in competitors(session)]

    def replace_competitors(self, organization_id: uuid.UUID, entries: list[CompetitorIn]) -> list[CompetitorIn]:
        require_feature(self.runtime.settings, "conversation")
        unique = {e.name.strip(): e for e in entries}
        with self.runtime.db.organization_scope(organization_id) as session:
            stored = replace_competitors(
                session,
                [Competitor(name, tuple(a.strip() for a in e.aliases if a.strip())) for name, e in unique.items()],
            )
        return [CompetitorIn(name=c.name, aliases=list(c.aliases)) for c in stored]


@functools.lru_cache(maxsize=4096)
def _rules_floor(
    text: str,
    day: date,
    activity_type: str,
    direction: str | None,
    organization_name: str | None,
    names: tuple[Competitor, ...],
) -> RulesFindings:
    """The rules floor of one text, remembered: a record page shows it for every activity without
    an analysis on each render, and it depends only on these arguments. Treat the result as
    read-only (it is shared)."""
    perspective = Perspective.for_activity(activity_type, direction, organization_name)
    return extract_rules(text, anchor=day, perspective=perspective, competitors=list(names))


def _proposal(action: PendingAction) -> ProposalOut:
    return ProposalOut(
        id=action.id,
        action=action.action,
        status=action.status,
        entity_type=action.entity_type,
        entity_id=action.entity_id,
        reasoning=action.reasoning,
    )


def _version(row: ConversationAnalysisRow, activity: ActivitySnapshot) -> AnalysisVersionOut:
    return AnalysisVersionOut(
        analysis_version=row.analysis_version,
        activity_version=row.activity_version,
        content_hash=row.content_hash,
        current=row.content_hash == activity.content_hash,
        method=row.method,
        model=row.model,
        prompt=row.prompt,
        schema_version=row.schema_version,
        trigger=row.trigger,
        dropped_items=len(row.dropped),
        proposal_ids=[uuid.UUID(str(i)) for i in row.proposal_ids],
        created_at=row.created_at,
    )
