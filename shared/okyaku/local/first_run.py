"""The first run of ``okyaku dev``: the demo organization's AI work done once, in the background.

Without it a newcomer would meet an AI that has not run yet: forecasts from the rules prior until
the nightly retrain at 02:00, no anomalies before the 06:00 scan, no insights before a Monday, no
cards before 05:00. Once the console is up, a background thread runs, for the demo organization,
what those schedules run, in the order they run it:

1. ``scoring``: the lead and churn models trained on the demo's history, every contact rescored;
2. ``forecasting``: the deal model (with amount and time to close) trained, the open deals re-forecast;
3. ``anomaly scan``: every detector over the organization;
4. ``weekly insights``: the week just ended (narrative by the LLM, or the template, marked degraded);
5. ``recommendations``: the organization's cards, from the fresh scores;
6. ``conversation``: the sweep of activities without an analysis (the LLM when it answers; while
   it does not, they wait for it and the rules floor speaks for them).

No second implementation: each step takes the service object that the function's own handler
module built (imported through the runner's :class:`FunctionHost`, under that function's template
environment) and calls what that function's scheduled or queued job calls for one organization.

Each step prints one line with its duration. Done steps are recorded in ``first-run.json`` in the
data directory (for this organization), after each step: a second start skips them, a start after
a crash resumes with the first step not done. A failing step is reported and left not done (the
next start tries it again); the steps after it still run.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

logger = logging.getLogger(__name__)

STATE_FILE = "first-run.json"
# The conversation sweep with a model that answers: a small local model takes seconds per text, so
# the first run analyses what it can in this time; the 15-minute sweep and the queue do the rest.
CONVERSATION_BUDGET_S = 120.0
ATTEMPTS = 3
FIRST_USE_WAIT_S = 180.0
RETRY_DELAY_S = 5.0


class HostedFunction(Protocol):
    """What a step needs of the runner's function host (okyaku.local.lambda_host.FunctionHost)."""

    @property
    def handler(self) -> Callable[[Any, Any], Any]: ...

    module: ModuleType | None

    def own_environment(self) -> Any: ...


Run = Callable[[ModuleType, uuid.UUID], Mapping[str, Any]]


@dataclass(frozen=True)
class Step:
    name: str  # the key in first-run.json
    label: str  # what the progress line says
    function_id: str  # the template function whose service does the work
    run: Run


def _plain(value: Any) -> dict[str, Any]:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    as_dict = getattr(value, "as_dict", None)
    return dict(as_dict() if callable(as_dict) else value)


def _nightly(module: ModuleType, organization_id: uuid.UUID) -> Mapping[str, Any]:
    from okyaku.predictions.triggers import NightlyJob

    triggers = module.triggers
    # Right after the seed, the function's queue consumer trains each model on first use, holding
    # the model's version lock while it trains: a retrain started meanwhile waits on that lock past
    # the statement timeout (and the consumer's on the retrain's). So first let it finish.
    deadline = time.monotonic() + FIRST_USE_WAIT_S
    while time.monotonic() < deadline:
        trained = {model.target for model in triggers.service.models(organization_id)}
        if set(triggers.targets) <= trained:
            break
        time.sleep(2.0)
    # What one message of the nightly fan-out runs: train every target, rescore; raises on failure.
    result: Mapping[str, Any] = triggers.run_nightly_job(NightlyJob(organization_id=organization_id))
    return result


def _anomaly_job(job: str) -> Run:
    def run(module: ModuleType, organization_id: uuid.UUID) -> Mapping[str, Any]:
        from okyaku.anomalies.triggers import OrganizationJob, run_job

        # What one message of the daily fan-out runs (the scan; on Mondays the weekly insights).
        return run_job(module.service, OrganizationJob.model_validate({"job": job, "organization_id": organization_id}))

    return run


def _recommendations(module: ModuleType, organization_id: uuid.UUID) -> Mapping[str, Any]:
    return _plain(module.service.refresh_organization(organization_id))


def _conversation(module: ModuleType, organization_id: uuid.UUID) -> Mapping[str, Any]:
    from okyaku.conversation.store import count_unanalysed, waiting_activity_ids

    service = module.service
    report = _plain(
        service.sweep(deadline=time.monotonic() + CONVERSATION_BUDGET_S, organization_ids=[organization_id])
    )
    with service.runtime.db.organization_scope(organization_id) as session:
        # The queue marks each activity as it gets its event; these are the ones still without an
        # analysis of their current text, for which the rules floor answers meanwhile.
        report["without_llm_analysis"] = count_unanalysed(session)
        report["waiting_for_llm"] = len(waiting_activity_ids(session, limit=100_000))
    return report


STEPS: tuple[Step, ...] = (
    Step("scoring", "training the lead and churn models, rescoring contacts", "ScoringFunction", _nightly),
    Step("forecasting", "training the deal models, re-forecasting open deals", "ForecastingFunction", _nightly),
    Step("anomaly_scan", "first anomaly scan", "AnomaliesFunction", _anomaly_job("scan")),
    Step("weekly_insights", "weekly insights of last week", "AnomaliesFunction", _anomaly_job("weekly")),
    Step("recommendations", "recommendation cards", "RecommendationsFunction", _recommendations),
    Step(
        "conversation",
        "conversation analyses (the LLM when it answers, else the rules floor)",
        "ConversationFunction",
        _conversation,
    ),
)


@dataclass
class FirstRunState:
    """``first-run.json``: which steps are done for which organization."""

    path: Path
    organization_id: uuid.UUID
    done: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, path: Path, organization_id: uuid.UUID) -> FirstRunState:
        try:
            saved = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            saved = {}
        if saved.get("organization_id") != str(organization_id):
            saved = {}  # another organization's (the database was reset): start afresh
        return cls(path, organization_id, dict(saved.get("steps", {})))

    def mark_done(self, step: str, seconds: float, result: Mapping[str, Any]) -> None:
        self.done[step] = {
            "done_at": datetime.now(UTC).isoformat(),
            "seconds": round(seconds, 2),
            "result": json.loads(json.dumps(result, default=str)),
        }
        body = {"organization_id": str(self.organization_id), "steps": self.done}
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(body, indent=2) + "\n")
        os.replace(partial, self.path)  # atomic: a crash leaves the old file or the new one


@dataclass
class StepOutcome:
    name: str
    status: str  # "done", "skipped" (done at an earlier start), "failed", "unavailable" (no such function)
    seconds: float = 0.0
    error: str | None = None


def _summary(result: Mapping[str, Any]) -> str:
    text = json.dumps(result, default=str, separators=(", ", ": "))
    return text if len(text) <= 160 else text[:157] + "..."


def _run_with_retries(
    step: Step,
    host: HostedFunction,
    organization_id: uuid.UUID,
    say: Callable[[str], None],
    stop: threading.Event | None,
) -> Mapping[str, Any]:
    """The step, tried again after a failure as its queue would redeliver the message: right after
    the seed the queue consumers work on the same records, so a first try can time out (a lock, a
    busy database) where a later one passes."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _ = host.handler  # imported once, under its own environment, as a first event would
            assert host.module is not None
            with host.own_environment():
                return step.run(host.module, organization_id)
        except Exception as error:
            if attempt == ATTEMPTS or (stop is not None and stop.is_set()):
                raise
            delay = RETRY_DELAY_S * attempt
            logger.warning(
                "first run: %s failed (attempt %d), again in %.0f s", step.name, attempt, delay, exc_info=True
            )
            say(
                f"  First run: {step.label}: attempt {attempt} failed ({type(error).__name__}: {error}); "
                f"trying again in {delay:.0f} s"
            )
            if stop is not None and stop.wait(delay):
                raise
            if stop is None:
                time.sleep(delay)
    raise AssertionError("unreachable")


def run_first_run(
    functions: Mapping[str, HostedFunction],
    organization_id: uuid.UUID,
    state_path: Path,
    *,
    steps: tuple[Step, ...] = STEPS,
    say: Callable[[str], None] = lambda line: print(line, flush=True),
    stop: threading.Event | None = None,
) -> list[StepOutcome]:
    """Run the steps not done yet for ``organization_id``, in order; each failure reported, the rest run."""
    state = FirstRunState.load(state_path, organization_id)
    # A template without the function (a trimmed one, in tests) has nothing to run that step with.
    runnable = [step for step in steps if step.function_id in functions]
    pending = [step for step in runnable if step.name not in state.done]
    outcomes = [StepOutcome(step.name, "skipped") for step in runnable if step not in pending]
    outcomes += [StepOutcome(step.name, "unavailable") for step in steps if step not in runnable]
    if not pending:
        if state.done:
            say(f"  First run: done at an earlier start ({len(state.done)} steps in {state.path.name})")
        return outcomes
    say(f"  First run: {len(pending)} of {len(steps)} AI steps for the demo organization, in the background")
    started_all = time.perf_counter()
    for step in pending:
        if stop is not None and stop.is_set():
            say("  First run: stopped; the steps left run at the next start")
            return outcomes
        started = time.perf_counter()
        try:
            result = _run_with_retries(step, functions[step.function_id], organization_id, say, stop)
        except Exception as error:
            seconds = time.perf_counter() - started
            logger.exception("first run: %s failed", step.name)
            say(f"  First run: {step.label}: FAILED after {seconds:.1f} s ({type(error).__name__}: {error})")
            outcomes.append(StepOutcome(step.name, "failed", seconds, f"{type(error).__name__}: {error}"))
            continue
        seconds = time.perf_counter() - started
        state.mark_done(step.name, seconds, result)
        say(f"  First run: {step.label}: done in {seconds:.1f} s {_summary(result)}")
        outcomes.append(StepOutcome(step.name, "done", seconds))
    failed = [o.name for o in outcomes if o.status == "failed"]
    total = time.perf_counter() - started_all
    if failed:
        say(f"  First run: finished in {total:.1f} s; failed: {', '.join(failed)} (tried again at the next start)")
    else:
        say(f"  First run: all done in {total:.1f} s")
    return outcomes


@dataclass
class FirstRunThread:
    thread: threading.Thread
    stop: threading.Event

    def request_stop(self, timeout_s: float = 5.0) -> None:
        """No new step starts; the one running gets ``timeout_s`` to finish (it is recorded only if it does)."""
        self.stop.set()
        self.thread.join(timeout_s)


def start_first_run(
    functions: Mapping[str, HostedFunction], organization_id: uuid.UUID, state_path: Path
) -> FirstRunThread:
    """Run :func:`run_first_run` on a daemon thread (the runner serves meanwhile)."""
    stop = threading.Event()
    thread = threading.Thread(
        target=run_first_run,
        args=(functions, organization_id, state_path),
        kwargs={"stop": stop},
        name="first-run",
        daemon=True,
    )
    thread.start()
    return FirstRunThread(thread, stop)
