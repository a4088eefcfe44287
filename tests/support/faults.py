"""Fault injection with counts: is any change event lost, or applied twice?

The scenarios drive the real queue consumers (the handlers ``okyaku.entry.function_handler``
builds, as functions/{embeddings,conversation,scoring}/app.py wire them) with SQS batches of
real change events, and the outbox relay with a publisher that fails part-way, against the
embedded Postgres and the scripted OpenAI-compatible server over HTTP. Each scenario returns a
:class:`FaultCount` per consumer; ``tests/integration/test_faults.py`` asserts them (small) and
``python -m bench faults`` prints them (larger).

Effects are counted by the database, not by the code under test: triggers that the table owner
installs for the run (:class:`EffectLog`) note every committed write of an embedding, a
conversation analysis and a prediction, with its transaction id. A record whose effect was
committed by two transactions was applied twice; one with none was lost. Rolled-back work leaves
no note, so a retry after a failure is not counted against the consumer.

Faults:
- duplicates: every message delivered twice (new message ids, as a re-send does), shuffled;
- a crash mid-batch: a record that raises (Powertools reports it in ``batchItemFailures``), or the
  process dying after record k (:class:`ProcessDied`: no response, so SQS redelivers the whole
  batch, the records already done included);
- Postgres restarted mid-batch: :class:`BackendKiller` terminates every backend of the
  application role (what a restart does to its clients) just before the n-th write statement or
  commit of the batch, so a transaction dies half-way;
- LLM timeouts: the scripted server answers some requests after the client's timeout;
- the relay: an SQS client that becomes unreachable after k calls (:class:`FlakySqsClient`).

Failed messages are redelivered as SQS would (``okyaku.lambda_events.failed_message_ids``, the
rule Lambda applies to the handler's answer) until none is left or ``max_rounds`` have passed:
what is still left then would end in the DLQ, and counts as lost.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event as sa_event
from sqlalchemy import select, text, update
from sqlalchemy.engine.url import make_url

from okyaku.config import Settings
from okyaku.conversation.service import ConversationService
from okyaku.db import Database
from okyaku.db.models import OutboxEvent
from okyaku.embeddings.indexer import EmbeddingIndexer
from okyaku.embeddings.llm_adapter import GatewayEmbedder
from okyaku.embeddings.triggers import EmbeddingTriggers
from okyaku.entry import LambdaHandler, function_handler
from okyaku.events.envelope import eventbridge_envelope
from okyaku.events.model import ChangeEvent
from okyaku.events.outbox import to_change_event
from okyaku.events.publishers import SqsPublisher
from okyaku.events.relay import relay_pending
from okyaku.lambda_events import ACCOUNT_ID, REGION, LambdaContext, SqsMessage, failed_message_ids, sqs_record
from okyaku.llm import LLMConfig, LLMGateway
from okyaku.local.postgres import LocalDatabase
from okyaku.predictions.service import SCORING_TARGETS, PredictionService
from okyaku.predictions.triggers import PredictionTriggers
from okyaku.queue import RecordHandler
from okyaku.runtime import Runtime
from okyaku.tenancy import create_organization
from tests.support.fixtures import llm_settings_for
from tests.support.openai_server import RecordedRequest, Reply, ScriptedOpenAIServer
from tests.support.publishers import CollectingPublisher, FlakySqsClient

EMBEDDING_MODEL = "nomic-embed-text"
EMBEDDING_DIMENSION = 768
LLM_TIMEOUT_S = 0.25  # the client's timeout in these runs; a "timed out" reply comes later than this


# --- counting ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultCount:
    """One consumer under one fault: how many records should have been brought up to date
    (``events``), how many were exactly once, how many never (``lost``), how many more than once."""

    scenario: str
    events: int
    applied_once: int
    lost: int
    twice: int
    messages: int = 0  # SQS messages sent (duplicates included)
    deliveries: int = 0  # records handed to the function, redeliveries included
    retried: int = 0  # records the function (or Lambda, for a dead process) gave back

    @property
    def clean(self) -> bool:
        return self.lost == 0 and self.twice == 0 and self.applied_once == self.events

    def line(self) -> str:
        return (
            f"faults: {self.scenario}: events {self.events}, applied once {self.applied_once}, "
            f"lost {self.lost}, applied twice {self.twice} "
            f"(messages {self.messages}, deliveries {self.deliveries}, retried {self.retried})"
        )


def tally(
    scenario: str, expected: Collection[Any], applied: Mapping[Any, int], delivery: DeliveryStats | None = None
) -> FaultCount:
    """``applied``: how many times each record's effect was committed (records not expected count too)."""
    return FaultCount(
        scenario=scenario,
        events=len(expected),
        applied_once=sum(1 for key in expected if applied.get(key, 0) == 1),
        lost=sum(1 for key in expected if applied.get(key, 0) == 0),
        twice=sum(1 for count in applied.values() if count > 1),
        messages=delivery.messages if delivery else 0,
        deliveries=delivery.deliveries if delivery else 0,
        retried=delivery.retried if delivery else 0,
    )


_AUDITED = {  # table -> the column naming the record whose effect a row is
    "embeddings": "entity_id",
    "conversation_analyses": "activity_id",
    "predictions": "entity_id",
}


class EffectLog:
    """Owner-installed triggers noting each committed write (table, organization, record, txid).

    Lives in its own schema, dropped by :meth:`uninstall`, so the application's schema (and the
    migrations' drift check) never sees it."""

    def __init__(self, owner: Database) -> None:
        self.owner = owner

    def install(self) -> None:
        with self.owner.session() as session:
            session.execute(text("DROP SCHEMA IF EXISTS fault_audit CASCADE"))
            session.execute(text("CREATE SCHEMA fault_audit"))
            session.execute(
                text(
                    "CREATE TABLE fault_audit.effects (id bigserial PRIMARY KEY, table_name text NOT NULL, "
                    "organization_id uuid NOT NULL, entity_id uuid NOT NULL, txid bigint NOT NULL)"
                )
            )
            for table, column in _AUDITED.items():
                session.execute(
                    text(
                        f"CREATE FUNCTION fault_audit.note_{table}() RETURNS trigger LANGUAGE plpgsql "
                        "SECURITY DEFINER SET search_path = pg_catalog AS $$ BEGIN "
                        "INSERT INTO fault_audit.effects (table_name, organization_id, entity_id, txid) "
                        f"VALUES (TG_TABLE_NAME, NEW.organization_id, NEW.{column}, txid_current()); "
                        "RETURN NULL; END $$"
                    )
                )
                session.execute(
                    text(
                        f"CREATE TRIGGER fault_audit_note AFTER INSERT OR UPDATE ON public.{table} "
                        f"FOR EACH ROW EXECUTE FUNCTION fault_audit.note_{table}()"
                    )
                )

    def uninstall(self) -> None:
        with self.owner.session() as session:
            session.execute(text("DROP SCHEMA IF EXISTS fault_audit CASCADE"))  # its triggers go with it

    def applied(self, table: str, organization_id: uuid.UUID) -> Counter[uuid.UUID]:
        """How many committed transactions wrote each record's row in ``table``."""
        with self.owner.session() as session:
            rows = session.execute(
                text(
                    "SELECT entity_id, count(DISTINCT txid) FROM fault_audit.effects "
                    "WHERE table_name = :table AND organization_id = :org GROUP BY entity_id"
                ),
                {"table": table, "org": organization_id},
            ).all()
        return Counter({row[0]: int(row[1]) for row in rows})


# --- delivering as SQS and Lambda do -----------------------------------------------------------


class ProcessDied(BaseException):
    """The function's process died mid-batch (killed, out of memory, past its timeout): Lambda
    gets no response, so the whole batch becomes visible again. A BaseException, so neither
    Powertools nor the handler can catch it, as they could not catch a real death."""


@dataclass
class DeliveryStats:
    messages: int = 0
    deliveries: int = 0
    retried: int = 0
    rounds: int = 0
    left: int = 0  # still failing after the last round: they would end in the DLQ
    reported: list[set[str]] = field(default_factory=list)  # per invocation: the ids given back


def change_messages(events: Sequence[ChangeEvent], *, copies: int = 1, seed: int = 0) -> list[SqsMessage]:
    """SQS messages for the events, ``copies`` of each (each its own message id, as a re-send
    gets), shuffled with ``seed``; bodies alternate between the raw event (SqsPublisher) and
    EventBridge's envelope (a bus rule's target)."""
    now_ms = int(time.time() * 1000)
    messages = []
    for copy in range(copies):
        for i, change in enumerate(events):
            if (i + copy) % 2:
                body = json.dumps(eventbridge_envelope(change, account=ACCOUNT_ID, region=REGION))
            else:
                body = change.model_dump_json()
            messages.append(SqsMessage(str(uuid.uuid4()), body, {}, now_ms, 1))
    random.Random(seed).shuffle(messages)
    return messages


def deliver(
    handler: LambdaHandler,
    messages: Sequence[SqsMessage],
    *,
    queue: str,
    batch_size: int = 10,
    max_rounds: int = 6,
    before_round: Callable[[int], None] | None = None,
) -> DeliveryStats:
    """Hand the messages to ``handler`` in batches; put back what Lambda would put back (the
    ``batchItemFailures``, or the whole batch when the invocation failed) and deliver those again."""
    stats = DeliveryStats(messages=len(messages))
    pending = list(messages)
    while pending and stats.rounds < max_rounds:
        if before_round is not None:
            before_round(stats.rounds)
        stats.rounds += 1
        again: list[SqsMessage] = []
        for start in range(0, len(pending), batch_size):
            batch = pending[start : start + batch_size]
            ids = [m.message_id for m in batch]
            context = LambdaContext(function_name=queue, memory_limit_in_mb=1024, timeout_s=60)
            result: Any = None
            error: BaseException | None = None
            try:
                result = handler({"Records": [sqs_record(m, queue) for m in batch]}, context)
            except (Exception, ProcessDied) as raised:
                error = raised
            failed = failed_message_ids(result, error, ids, report_batch_item_failures=True)
            stats.deliveries += len(batch)
            stats.retried += len(failed)
            stats.reported.append(failed)
            for message in batch:
                if message.message_id in failed:
                    message.receive_count += 1
                    again.append(message)
        pending = again
    stats.left = len(pending)
    return stats


class RecordFaults:
    """Wraps a consumer's per-record step to fail where told: ``raise_at`` (record positions
    counted over the whole run, from 0) raise a RuntimeError; ``die_at`` kills the process
    (:class:`ProcessDied`) before that record is handled. Each position fails once."""

    def __init__(self, *, raise_at: Iterable[int] = (), die_at: Iterable[int] = ()) -> None:
        self.raise_at = set(raise_at)
        self.die_at = set(die_at)
        self.seen = 0
        self.raised: list[str] = []  # message ids of the records that raised

    def wrap(self, handle: RecordHandler) -> RecordHandler:
        def faulty(record: Any) -> object:
            position = self.seen
            self.seen += 1
            if position in self.die_at:
                raise ProcessDied(f"process died before record {position}")
            if position in self.raise_at:
                self.raised.append(record.message_id)
                raise RuntimeError(f"consumer crashed on record {position}")
            return handle(record)

        return faulty


def restart_embedded_postgres(owner: Database, *clients: Database) -> None:
    """Restart the embedded server (pgserver) under ``owner``: a fast shutdown, which ends every
    connection, then a start with the same options, waiting until it accepts connections again.
    Afterwards the idle pooled connections of ``owner`` and ``clients`` are dropped (a connection
    used a moment ago is not pinged, okyaku.db.PING_AFTER_IDLE_S, so a dead one would fail its
    next transaction once): the one checked out by the transaction under way still dies."""
    import pgserver
    from pgserver._commands import pg_ctl
    from pgserver.utils import PostmasterInfo

    with owner.engine.connect() as connection:
        data_directory = str(connection.execute(text("SHOW data_directory")).scalar())
    server = pgserver.get_server(data_directory)  # the handle this process already holds
    pg_ctl(["-w", "-m", "fast", "-l", str(server.log), "restart"], pgdata=server.pgdata, user=server.system_user)
    # The handle stops the server it knows at the end of the run: tell it about the new postmaster.
    server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)
    for database in (owner, *clients):
        database.engine.dispose()


class BackendKiller:
    """Just before the n-th statement containing ``statement`` (or the n-th commit,
    ``statement="COMMIT"``) that the application runs, either terminates every backend of the
    application role from the owner's connection (what a restart does to its clients) or, with
    ``restart``, really restarts the embedded server: the transaction under way dies half-way."""

    def __init__(
        self, app_db: Database, owner: Database, *, statement: str, at: Iterable[int], restart: bool = False
    ) -> None:
        self.app_db = app_db
        self.engine = app_db.engine
        self.owner = owner
        self.role = make_url(app_db.engine.url).username
        self.statement = statement
        self.at = set(at)
        self.restart = restart
        self.seen = 0
        self.killed = 0
        self._lock = threading.Lock()

    def _maybe_kill(self) -> None:
        with self._lock:
            self.seen += 1
            if self.seen not in self.at:
                return
        if self.restart:
            restart_embedded_postgres(self.owner, self.app_db)
            self.killed += 1
            return
        with self.owner.engine.connect() as connection:
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE usename = :role AND pid <> pg_backend_pid()"
                ),
                {"role": self.role},
            )
            connection.commit()
        self.killed += 1

    def _before_cursor_execute(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.statement in statement:
            self._maybe_kill()

    def _before_commit(self, _conn: Any) -> None:
        self._maybe_kill()

    @contextmanager
    def armed(self) -> Iterator[BackendKiller]:
        if self.statement == "COMMIT":
            sa_event.listen(self.engine, "commit", self._before_commit)
        else:
            sa_event.listen(self.engine, "before_cursor_execute", self._before_cursor_execute)
        try:
            yield self
        finally:
            if self.statement == "COMMIT":
                sa_event.remove(self.engine, "commit", self._before_commit)
            else:
                sa_event.remove(self.engine, "before_cursor_execute", self._before_cursor_execute)


# --- the scripted model ------------------------------------------------------------------------


class ScriptedModel:
    """Answers chat with a valid analysis quoting the text, embeddings with the server's vectors;
    requests whose text contains one of ``slow`` are answered after the client's timeout, for
    their first ``slow_times`` requests (later ones are answered at once)."""

    def __init__(self, server: ScriptedOpenAIServer) -> None:
        self.server = server
        self.slow: set[str] = set()
        self.slow_times = 1
        self.timed_out = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        server.responder = self

    def _late(self, text_: str) -> bool:
        with self._lock:
            for marker in self.slow:
                if marker in text_:
                    self._seen[marker] += 1
                    if self._seen[marker] <= self.slow_times:
                        self.timed_out += 1
                        return True
        return False

    def __call__(self, request: RecordedRequest) -> Reply | None:
        body = request.body or {}
        if request.path.endswith("/embeddings"):
            inputs = body.get("input")
            joined = " ".join([inputs] if isinstance(inputs, str) else [str(i) for i in inputs or []])
            return Reply.slow(LLM_TIMEOUT_S * 4) if self._late(joined) else None
        prompt = str(request.messages[-1]["content"]) if request.messages else ""
        if self._late(prompt):
            return Reply.slow(LLM_TIMEOUT_S * 4)
        found = re.search(r"<<<\n(.*)\n>>>", prompt, re.S)
        first = re.split(r"(?<=[.!?])\s", found.group(1).strip())[0] if found else ""
        return Reply.json_object(
            {
                "summary": "A short conversation.",
                "key_points": [{"point": "What was said first", "quote": first}] if first else [],
                "sentiment": {"score": 0.0, "label": "neutral"},
            }
        )


# --- the rig -----------------------------------------------------------------------------------


@dataclass
class Records:
    organization_id: uuid.UUID
    companies: list[uuid.UUID]
    contacts: list[uuid.UUID]
    activities: list[uuid.UUID]
    events: list[ChangeEvent]
    activity_texts: dict[uuid.UUID, str]

    @property
    def embeddable(self) -> list[uuid.UUID]:
        return self.companies + self.contacts + self.activities


class _Unreachable:
    """A publisher whose queue is down: the events wait in the outbox for the relay."""

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        raise ConnectionError("the queue is unreachable")


class FaultRig:
    """The database, the model server and the consumers the scenarios share."""

    def __init__(self, local: LocalDatabase, db: Database, owner: Database, server: ScriptedOpenAIServer) -> None:
        self.local = local
        self.db = db
        self.owner = owner
        self.server = server
        self.model = ScriptedModel(server)
        base = Settings(database_url=local.app_url, database_migration_url=local.owner_url)
        self.settings = llm_settings_for(
            server.base_url,
            base,
            llm_timeout_s=LLM_TIMEOUT_S,
            llm_max_retries=0,  # a timed-out request fails its record at once (the queue retries it)
            llm_breaker_failure_threshold=1_000_000,  # the breaker is tested elsewhere; here it would only add rounds
        )
        self.published: list[ChangeEvent] = []
        self.runtime = Runtime(self.settings, db=db, publisher=CollectingPublisher(self.published))
        self.effects = EffectLog(owner)
        self.scored_at = datetime.now(UTC)
        self.organizations: list[uuid.UUID] = []  # made by the scenarios (a bench deletes them afterwards)
        self._gateways: list[LLMGateway] = []

    @classmethod
    @contextmanager
    def open(
        cls, local: LocalDatabase, db: Database, owner: Database, server: ScriptedOpenAIServer
    ) -> Iterator[FaultRig]:
        rig = cls(local, db, owner, server)
        rig.effects.install()
        try:
            yield rig
        finally:
            for gateway in rig._gateways:
                gateway.close()
            rig.effects.uninstall()
            server.responder = None

    def gateway(self) -> LLMGateway:
        gateway = LLMGateway(LLMConfig.from_settings(self.settings))
        self._gateways.append(gateway)
        return gateway

    # --- data, through the CRM API ---

    def records(self, size: int, label: str, *, publish: bool = True) -> Records:
        """``size`` companies, each with a contact and an activity, made through the CRM API
        (without ``publish`` their events stay pending in the outbox)."""
        from fastapi.testclient import TestClient

        from okyaku.crm.api import create_crm_app

        org = create_organization(self.db, f"Faults {label} {uuid.uuid4().hex[:6]}", f"admin@{label}.example")
        self.organizations.append(org.organization_id)
        made = Records(org.organization_id, [], [], [], [], {})
        runtime = self.runtime if publish else Runtime(self.settings, db=self.db, publisher=_Unreachable())
        with TestClient(create_crm_app(runtime), headers={"Authorization": f"Bearer {org.api_key}"}) as client:
            for i in range(size):
                company = self._post(client, "/api/v1/companies", {"name": f"Harbour Freight {label} #{i:03d}"})
                contact = self._post(
                    client,
                    "/api/v1/contacts",
                    {"first_name": f"Priya{i}", "last_name": "Raman", "company_id": company["id"]},
                )
                body = f"Call {i} with Priya about the {label} renewal. She will send the order form by Friday."
                activity = self._post(
                    client,
                    "/api/v1/activities",
                    {
                        "type": "call",
                        "direction": "outbound",
                        "subject": f"Call {i}",
                        "body": body,
                        "occurred_at": "2026-11-18T15:00:00Z",
                        "contact_id": contact["id"],
                    },
                )
                made.companies.append(uuid.UUID(company["id"]))
                made.contacts.append(uuid.UUID(contact["id"]))
                made.activities.append(uuid.UUID(activity["id"]))
                made.activity_texts[uuid.UUID(activity["id"])] = body
        if publish:
            made.events = [e for e in self.published if e.organization_id == org.organization_id]
        else:
            with self.db.organization_scope(org.organization_id) as session:
                made.events = [to_change_event(row) for row in session.scalars(select(OutboxEvent))]
        self.scored_at = datetime.now(UTC)  # every record exists by then: scores are "as of" this moment
        return made

    @staticmethod
    def _post(client: Any, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, json=payload)
        assert response.status_code == 201, response.text
        return response.json()  # type: ignore[no-any-return]

    # --- the consumers, wired as functions/<name>/app.py wires them ---

    def embeddings(self, faults: RecordFaults | None = None) -> LambdaHandler:
        embedder = GatewayEmbedder(self.gateway().sync, EMBEDDING_MODEL, EMBEDDING_DIMENSION)
        triggers = EmbeddingTriggers(self.runtime, embedder)

        def on_batch(records: Sequence[Any]) -> RecordHandler:
            settle = triggers.on_batch(records)
            return faults.wrap(settle) if faults else settle

        return function_handler(name="embeddings", on_batch=on_batch, on_schedule=triggers.on_schedule)

    def conversation(self, faults: RecordFaults | None = None) -> LambdaHandler:
        service = ConversationService(self.runtime, self.gateway())
        on_record = faults.wrap(service.on_change_record) if faults else service.on_change_record
        return function_handler(name="conversation", on_record=on_record, on_schedule=service.on_schedule)

    def scoring(self, faults: RecordFaults | None = None) -> LambdaHandler:
        service = PredictionService(self.runtime, writer=None, clock=lambda: self.scored_at)
        triggers = PredictionTriggers(service, SCORING_TARGETS)
        on_record = faults.wrap(triggers.on_change_record) if faults else triggers.on_change_record
        return function_handler(name="scoring", on_record=on_record, on_schedule=triggers.on_schedule)

    # --- counting one consumer ---

    def count(self, scenario: str, consumer: str, made: Records, delivery: DeliveryStats) -> FaultCount:
        table, expected = {
            "embeddings": ("embeddings", made.embeddable),
            "conversation": ("conversation_analyses", made.activities),
            "scoring": ("predictions", made.contacts),
        }[consumer]
        return tally(f"{scenario}/{consumer}", expected, self.effects.applied(table, made.organization_id), delivery)


CONSUMERS = ("embeddings", "conversation", "scoring")


def _handler(rig: FaultRig, consumer: str, faults: RecordFaults | None = None) -> LambdaHandler:
    handler: LambdaHandler = getattr(rig, consumer)(faults)
    return handler


# --- the scenarios -----------------------------------------------------------------------------


def duplicate_deliveries(rig: FaultRig, size: int, *, seed: int = 1) -> list[FaultCount]:
    """Every message twice, in shuffled order, to each consumer."""
    made = rig.records(size, "duplicates")
    counts = []
    for consumer in CONSUMERS:
        messages = change_messages(made.events, copies=2, seed=seed)
        stats = deliver(_handler(rig, consumer), messages, queue=f"{consumer}-queue")
        counts.append(rig.count("duplicates", consumer, made, stats))
    return counts


def concurrent_duplicates(rig: FaultRig, size: int, *, seed: int = 2) -> list[FaultCount]:
    """The two copies of each message to two instances of the function at once."""
    made = rig.records(size, "concurrent")
    counts = []
    for consumer in CONSUMERS:
        copies = [change_messages(made.events, seed=seed + n) for n in range(2)]
        handlers = [_handler(rig, consumer) for _ in copies]
        results: list[DeliveryStats] = [DeliveryStats(), DeliveryStats()]

        def run(n: int) -> None:
            results[n] = deliver(handlers[n], copies[n], queue=f"{consumer}-queue", batch_size=5)  # noqa: B023

        threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = DeliveryStats(
            messages=sum(r.messages for r in results),
            deliveries=sum(r.deliveries for r in results),
            retried=sum(r.retried for r in results),
            left=sum(r.left for r in results),
        )
        counts.append(rig.count("concurrent duplicates", consumer, made, stats))
    return counts


@dataclass(frozen=True)
class CrashOutcome:
    counts: list[FaultCount]
    reported_exactly_the_crashed: bool  # batchItemFailures named the records that raised, no other


def consumer_crash(rig: FaultRig, size: int, *, seed: int = 3) -> CrashOutcome:
    """Records that raise mid-batch, and the process dying at record k of a batch."""
    made = rig.records(size, "crash")
    counts = []
    exact = True
    total = len(made.events)
    die_at = total // 2 + 3
    raise_at = {3, 7, total - 1} - {die_at}
    first_round = (total + 9) // 10
    for consumer in CONSUMERS:
        faults = RecordFaults(raise_at=raise_at, die_at={die_at})
        messages = change_messages(made.events, seed=seed)
        stats = deliver(_handler(rig, consumer, faults), messages, queue=f"{consumer}-queue")
        # The first round: a batch gives back exactly its records that raised, the batch whose
        # process died comes back whole (the records done before the death included).
        for index, reported in enumerate(stats.reported[:first_round]):
            batch_ids = {m.message_id for m in messages[index * 10 : index * 10 + 10]}
            if index == die_at // 10:
                exact &= reported == batch_ids
            else:
                exact &= reported == {i for i in faults.raised if i in batch_ids}
        counts.append(rig.count("crash mid-batch", consumer, made, stats))
    return CrashOutcome(counts, exact)


def postgres_restart(rig: FaultRig, size: int, *, seed: int = 4) -> list[FaultCount]:
    """The embedded server really restarted just before the consumer's second write statement, and
    every backend of the application role terminated before a later write and before two commits."""
    made = rig.records(size, "restart")
    writes = {
        "embeddings": "INSERT INTO embeddings",
        "conversation": "INSERT INTO conversation_analyses",
        "scoring": "INSERT INTO predictions",
    }
    counts = []
    for consumer in CONSUMERS:
        messages = change_messages(made.events, seed=seed)
        restart = BackendKiller(rig.db, rig.owner, statement=writes[consumer], at={2}, restart=True)
        at_write = BackendKiller(rig.db, rig.owner, statement=writes[consumer], at={max(3, size // 2)})
        at_commit = BackendKiller(rig.db, rig.owner, statement="COMMIT", at={5, max(6, size)})
        with restart.armed(), at_write.armed(), at_commit.armed():
            stats = deliver(_handler(rig, consumer), messages, queue=f"{consumer}-queue")
        assert restart.killed and at_write.killed and at_commit.killed, "the restarts never happened"
        counts.append(rig.count("postgres restart", consumer, made, stats))
    return counts


def llm_timeouts(rig: FaultRig, size: int, *, every: int = 3, seed: int = 5) -> list[FaultCount]:
    """One text in ``every`` answered after the client's timeout, twice each (so the embedder's
    text-by-text retry times out too); the conversation and embeddings consumers. Those records
    are acknowledged, waiting for the model (nothing retried into a DLQ), and the catch-up that
    the schedules run (the sweep, the backfill) stores them once the model answers."""
    made = rig.records(size, "timeouts")
    markers = {f"Call {i} with" for i in range(0, size, every)}
    markers |= {f"Harbour Freight timeouts #{i:03d}" for i in range(1, size, every)}
    counts = []
    for consumer in ("conversation", "embeddings"):
        rig.model.slow = markers
        rig.model.slow_times = 2
        rig.model._seen.clear()
        before = rig.model.timed_out
        try:
            stats = deliver(_handler(rig, consumer), change_messages(made.events, seed=seed), queue=f"{consumer}-queue")
            assert rig.model.timed_out > before, "no request timed out"
            catch_up(rig, consumer, made.organization_id)
        finally:
            rig.model.slow = set()
        counts.append(rig.count("llm timeouts", consumer, made, stats))
    return counts


def catch_up(rig: FaultRig, consumer: str, organization_id: uuid.UUID, *, rounds: int = 20) -> None:
    """The scheduled catch-up, run until it gets through: each run stops at the first timeout."""
    for _ in range(rounds):
        if consumer == "conversation":
            sweep = ConversationService(rig.runtime, rig.gateway()).sweep(organization_ids=[organization_id])
            done = sweep.llm_available and sweep.complete
        else:
            embedder = GatewayEmbedder(rig.gateway().sync, EMBEDDING_MODEL, EMBEDDING_DIMENSION)
            done = EmbeddingIndexer(rig.db, embedder).backfill(organization_ids=[organization_id]).complete
        if done:
            return
    raise AssertionError(f"the {consumer} catch-up did not get through in {rounds} runs")


def relay_partial_failures(rig: FaultRig, size: int, sqs: Any, *, fail_calls: Iterable[int] = (2, 5)) -> FaultCount:
    """Change events published to SQS (moto's server) through clients that are unreachable on some
    calls: a bulk write whose publishing after commit fails on its second batch of 10, records
    written while the queue was down, and repeated relay runs; then the queue is drained and each
    event counted."""
    from okyaku.crm.api import companies
    from okyaku.crm.schemas import CompanyCreate
    from okyaku.events.outbox import write_transaction

    made = rig.records(size, "relay", publish=False)
    queue_url = sqs.create_queue(QueueName=f"faults-relay-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    at_write = FlakySqsClient(sqs, fail_calls={2})
    with write_transaction(rig.db, made.organization_id, SqsPublisher(queue_url, client=at_write)) as session:  # type: ignore[arg-type]
        for i in range(2 * size + 5):  # three SQS batches
            companies.create(session, CompanyCreate(name=f"Bulk Freight {i}"))
    with rig.db.organization_scope(made.organization_id) as session:
        expected = list(session.scalars(select(OutboxEvent.event_id)))
    client = FlakySqsClient(sqs, fail_calls=fail_calls)
    publisher = SqsPublisher(queue_url, client=client)  # type: ignore[arg-type]
    runs = 0
    for _ in range(10):
        with rig.db.organization_scope(made.organization_id) as session:  # due now, not after the backoff
            due = session.execute(
                update(OutboxEvent).where(OutboxEvent.published_at.is_(None)).values(next_attempt_at=datetime.now(UTC))
            ).rowcount
        if not due:
            break
        runs += 1
        relay_pending(rig.db, publisher, batch_size=max(20, len(expected) // 3))
    received: Counter[uuid.UUID] = Counter()
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            break
        for message in messages:
            change = ChangeEvent.model_validate_json(message["Body"])
            if change.organization_id == made.organization_id:  # not other organizations' leftovers
                received[change.event_id] += 1
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
        )
    sent = DeliveryStats(messages=len(expected), deliveries=sum(received.values()), retried=runs - 1)
    return tally("outbox relay", expected, received, sent)
