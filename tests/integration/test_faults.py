"""Fault tests with counts: duplicate deliveries, a consumer crash mid-batch, Postgres restarted
mid-batch, LLM timeouts and a publisher failing part-way. Each prints (``pytest -s``) and asserts
``events N, applied once N, lost 0, applied twice 0`` per consumer (tests/support/faults.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from okyaku.db import Database
from okyaku.local.postgres import LocalDatabase
from tests.support.faults import FaultCount, FaultRig
from tests.support.faults import concurrent_duplicates as run_concurrent_duplicates
from tests.support.faults import consumer_crash as run_consumer_crash
from tests.support.faults import duplicate_deliveries as run_duplicate_deliveries
from tests.support.faults import llm_timeouts as run_llm_timeouts
from tests.support.faults import postgres_restart as run_postgres_restart
from tests.support.faults import relay_partial_failures as run_relay_partial_failures
from tests.support.openai_server import ScriptedOpenAIServer

SIZE = 8  # companies, each with a contact and an activity: 24 change events and more


@pytest.fixture(scope="module")
def rig(pg: LocalDatabase, db: Database, owner_db: Database) -> Iterator[FaultRig]:
    with ScriptedOpenAIServer() as server, FaultRig.open(pg, db, owner_db, server) as opened:
        yield opened


def check(counts: list[FaultCount]) -> None:
    for count in counts:
        print(count.line())
    assert [c for c in counts if not c.clean] == []
    assert all(c.events >= SIZE for c in counts)


def test_duplicate_deliveries_out_of_order_are_applied_once(rig: FaultRig) -> None:
    counts = run_duplicate_deliveries(rig, SIZE)
    check(counts)
    assert all(c.messages == 2 * c.deliveries // 2 and c.retried == 0 for c in counts)


def test_two_instances_given_the_same_messages_at_once_apply_them_once(rig: FaultRig) -> None:
    check(run_concurrent_duplicates(rig, SIZE))


def test_a_crash_mid_batch_reports_the_unfinished_records_and_redelivery_completes_them(rig: FaultRig) -> None:
    outcome = run_consumer_crash(rig, SIZE)
    check(outcome.counts)
    assert outcome.reported_exactly_the_crashed
    assert all(c.retried >= 10 for c in outcome.counts)  # the dead process's whole batch came back


def test_postgres_restarted_mid_batch_loses_nothing_and_commits_nothing_twice(rig: FaultRig) -> None:
    counts = run_postgres_restart(rig, SIZE)
    check(counts)
    assert all(c.retried > 0 for c in counts)  # the restarts did fail records, which were redelivered


def test_llm_timeouts_wait_for_the_model_and_the_catch_up_stores_each_analysis_and_embedding_once(
    rig: FaultRig,
) -> None:
    counts = run_llm_timeouts(rig, SIZE)
    check(counts)
    assert all(c.retried == 0 for c in counts)  # acknowledged: an outage is not a reason to retry into the DLQ


def test_the_relay_publishes_each_event_once_when_the_queue_fails_part_way(rig: FaultRig, sqs) -> None:  # type: ignore[no-untyped-def]
    count = run_relay_partial_failures(rig, SIZE, sqs)
    check([count])
    assert count.retried > 0  # the failures did stop a relay run part-way


# --- the races behind "applied twice", one at a time (each failed before its fix) ---------------


def test_an_identical_embedding_is_not_written_again(rig: FaultRig) -> None:
    """A duplicate delivery handled by another instance at the same time embeds the same text and
    writes it after the first: that second write is refused, not applied again."""
    from okyaku.embeddings.documents import load_documents
    from okyaku.embeddings.store import upsert_embeddings
    from tests.support.faults import change_messages, deliver

    made = rig.records(1, "rewrite")
    deliver(rig.embeddings(), change_messages(made.events), queue="embeddings-queue")
    company = made.companies[0]
    with rig.db.organization_scope(made.organization_id) as session:
        document = load_documents(session, "company", [company])[company]
        upsert_embeddings(
            session, made.organization_id, "nomic-embed-text", 768, [document], [[0.5] * 768]
        )  # the late twin
    assert rig.effects.applied("embeddings", made.organization_id)[company] == 1


def test_two_first_uses_at_once_train_one_model(rig: FaultRig) -> None:
    """The first scores of an organization train its model; a second transaction doing the same at
    once waits for the first and uses its model instead of training (and storing) another."""
    import threading

    from sqlalchemy import func, select

    from okyaku.predictions.models import PredictionModel
    from okyaku.predictions.trained_models import load_model

    made = rig.records(2, "training")
    versions: list[int] = []

    def second() -> None:
        with rig.db.organization_scope(made.organization_id) as session:
            versions.append(load_model(session, "lead", now=rig.scored_at).version)

    with rig.db.organization_scope(made.organization_id) as session:
        versions.append(load_model(session, "lead", now=rig.scored_at).version)
        other = threading.Thread(target=second)
        other.start()
        other.join(timeout=1.0)  # it waits for this transaction (bounded, in case it does not)
    other.join()
    with rig.db.organization_scope(made.organization_id) as session:
        models = session.scalar(select(func.count()).where(PredictionModel.target == "lead"))
    assert (versions, models) == ([1, 1], 1)


def test_a_duplicate_scored_while_the_first_commits_is_skipped(rig: FaultRig) -> None:
    """Two deliveries of one change event at once: the second waits for the first's scores and
    finds its inputs already scored, rather than adding the same score to the history again."""
    import threading

    from sqlalchemy import event as sa_event
    from sqlalchemy import func, select

    from okyaku.predictions.models import Prediction
    from okyaku.predictions.service import SCORING_TARGETS, PredictionService

    made = rig.records(2, "scorelock")
    service = PredictionService(rig.runtime, writer=None, clock=lambda: rig.scored_at)
    by_contact = {e.entity_id: e for e in made.events if e.entity_type == "contact"}
    service.on_change(by_contact[made.contacts[1]], SCORING_TARGETS)  # the model exists: only scoring races
    change = by_contact[made.contacts[0]]
    first_committing, release = threading.Event(), threading.Event()
    first: list[threading.Thread] = []

    def hold_first_commit(_conn: object) -> None:
        if first and threading.current_thread() is first[0] and not first_committing.is_set():
            first_committing.set()
            release.wait(timeout=5)

    sa_event.listen(rig.db.engine, "commit", hold_first_commit)
    try:
        first.append(threading.Thread(target=service.on_change, args=(change, SCORING_TARGETS)))
        first[0].start()
        assert first_committing.wait(timeout=10)
        second = threading.Thread(target=service.on_change, args=(change, SCORING_TARGETS))
        second.start()
        second.join(timeout=0.5)  # lets the second reach its read of the current scores
        release.set()
        first[0].join()
        second.join()
    finally:
        sa_event.remove(rig.db.engine, "commit", hold_first_commit)
    with rig.db.organization_scope(made.organization_id) as session:
        scores = session.scalar(select(func.count()).where(Prediction.entity_id == change.entity_id))
    assert scores == 1


def test_the_counter_sees_a_second_application_and_ignores_a_rolled_back_one(rig: FaultRig) -> None:
    """The counts can fail: a forced re-analysis is a second committed analysis of the same text
    (applied twice), and a write whose transaction rolls back leaves no trace (not applied)."""
    from okyaku.conversation.service import ConversationService
    from tests.support.faults import change_messages, deliver, tally

    made = rig.records(2, "counter")
    deliver(rig.conversation(), change_messages(made.events), queue="conversation-queue")
    service = ConversationService(rig.runtime, rig.gateway())
    service.analyse_activity(made.organization_id, made.activities[0], trigger="request", force=True)
    with pytest.raises(RuntimeError), rig.db.organization_scope(made.organization_id) as session:
        touched = session.connection().exec_driver_sql("UPDATE conversation_analyses SET chunks = chunks").rowcount
        assert touched == 3  # two analyses of the first activity, one of the second: noted, then undone
        raise RuntimeError("the transaction rolls back")
    count = tally("counter", made.activities, rig.effects.applied("conversation_analyses", made.organization_id))
    assert (count.applied_once, count.twice, count.lost) == (1, 1, 0)
