"""The local runner with HTTP workers: several processes serve the template's routes on one port
(the kernel spreads connections over them); each process's change events reach the runner's
queues exactly once; the runner's own routes answer, with the same checks, whichever process
took the connection; stopping the runner ends its workers.

Each request below opens a connection of its own, so that the kernel chooses a process for each;
with 24 connections and two processes, all landing on one is a 1-in-8-million chance."""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from okyaku.config import get_settings
from okyaku.db import Database
from okyaku.events.model import ChangeEvent
from okyaku.local.http_workers import ForwardingPublisher, RunnerConnection, WorkerSettings
from okyaku.local.postgres import LocalDatabase
from okyaku.local.runner import LocalRunner
from okyaku.tenancy import create_organization
from tests.e2e.test_conversation_runner import use_environment
from tests.e2e.test_local_runner import recorded, wait_for
from tests.support.openai_server import ScriptedOpenAIServer

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "tests" / "data" / "runner" / "functions"
TOKEN = "runner-token-for-worker-tests"
CONNECTIONS = 24


def write_template(directory: Path) -> Path:
    template = directory / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.11, Environment: {Variables: "
        "{CHANGE_EVENTS_QUEUE_URL: !Ref Changes}}}}\n"
        "Resources:\n"
        f"  Echo:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {FUNCTIONS / 'echo'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Items: {Type: HttpApi, Properties: {Path: '/items/{id}', Method: ANY}}\n"
        f"  Publisher:\n    Type: AWS::Serverless::Function\n    Properties:\n"
        f"      CodeUri: {FUNCTIONS / 'publisher'}\n      Handler: app.handler\n      Events:\n"
        "        Publish: {Type: HttpApi, Properties: {Path: '/publish/{id}', Method: POST}}\n"
        f"  Recorder:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {FUNCTIONS / 'recorder'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Changes: {Type: SQS, Properties: {Queue: !GetAtt Changes.Arn, BatchSize: 5}}\n"
        "        Hourly: {Type: Schedule, Properties: {Schedule: rate(1 hour), Name: RecorderHourly}}\n"
        "  Changes: {Type: AWS::SQS::Queue}\n"
    )
    return template


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRunner, Path]]:
    directory = tmp_path_factory.mktemp("workers")
    output = directory / "recorded.jsonl"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RECORDER_OUTPUT", str(output))  # before the start: the workers inherit it
        with LocalRunner(
            write_template(directory), port=0, apply_environment=False, admin_token=TOKEN, http_workers=2
        ) as runner:
            yield runner, output


def server_names(runner: LocalRunner, path: str, **kwargs: Any) -> list[str]:
    names = []
    for _ in range(CONNECTIONS):
        response = httpx.get(f"{runner.url}{path}", timeout=30, **kwargs)  # a new connection each
        names.append(response.headers["server"].split()[0])
    return names


def test_connections_are_spread_over_every_process(served: tuple[LocalRunner, Path]) -> None:
    runner, _ = served
    processes = runner.status()["http_processes"]
    assert [p["index"] for p in processes] == [0, 1] and all(p["alive"] for p in processes)
    assert processes[0]["pid"] == os.getpid() and processes[1]["pid"] != os.getpid()
    assert set(server_names(runner, "/items/x")) == {"okyaku-local", "okyaku-local-worker-1"}


def test_change_events_of_every_process_reach_the_consumer_once(served: tuple[LocalRunner, Path]) -> None:
    runner, output = served
    entity_ids = [str(uuid.uuid4()) for _ in range(CONNECTIONS)]
    pids = set()
    for entity_id in entity_ids:
        response = httpx.post(f"{runner.url}/publish/{entity_id}", timeout=30)
        assert response.status_code == 201, response.text
        pids.add(int(response.headers["x-pid"]))
    assert pids == {p["pid"] for p in runner.status()["http_processes"]}  # both processes published

    def delivered() -> list[str]:
        seen = [r["entity_id"] for b in recorded(output) if b["kind"] == "sqs" for r in b["records"]]
        return seen if set(entity_ids) <= set(seen) else []

    seen = wait_for(delivered, "every change event to reach the consumer")
    assert sorted(e for e in seen if e in entity_ids) == sorted(entity_ids)  # each once
    # The runner counts a delivery once the handler has returned: a moment after it recorded it.
    wait_for(lambda: runner.status()["queues"][0]["delivered"] >= CONNECTIONS, "the queue to count every delivery")


def test_the_runner_routes_answer_the_same_on_every_connection(served: tuple[LocalRunner, Path]) -> None:
    runner, _ = served
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(CONNECTIONS):
        with httpx.Client(base_url=runner.url, timeout=30) as client:  # a new connection each
            status = client.get("/_okyaku/status", headers=bearer)
            assert status.status_code == 200 and len(status.json()["http_processes"]) == 2
            refused = client.get("/_okyaku/status")
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
            foreign = client.post(
                "/_okyaku/schedules/RecorderHourly/fire", headers=bearer | {"Origin": "http://evil.example"}
            )
            assert foreign.status_code == 403 and foreign.json()["error"]["code"] == "forbidden"
            missing = client.post("/_okyaku/schedules/NoSuchRule/fire", headers=bearer)
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_events_route_takes_only_change_events_with_the_token(served: tuple[LocalRunner, Path]) -> None:
    runner, _ = served
    url = f"{runner.url}/_okyaku/events"
    anonymous = httpx.post(url, content=b"[]", timeout=30)
    assert anonymous.status_code == 401
    bad = httpx.post(url, content=b'[{"entity_type": "contact"}]', headers={"Authorization": f"Bearer {TOKEN}"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert bad.json()["error"]["details"]
    empty = httpx.post(url, content=b"[]", headers={"Authorization": f"Bearer {TOKEN}"})
    assert empty.status_code == 200 and empty.json() == {"accepted": 0}


def test_a_worker_that_cannot_reach_the_runner_fails_its_publish() -> None:
    # Raising is what leaves the events in the outbox for the relay (okyaku.events.outbox).
    settings = WorkerSettings(  # nothing listens on port 1
        index=9, template="", host="127.0.0.1", port=1, runner_port=1, admin_token=TOKEN, concurrency=1, log_level=20
    )
    event = ChangeEvent.model_validate(
        {
            "event_id": str(uuid.uuid4()),
            "organization_id": str(uuid.uuid4()),
            "entity_type": "contact",
            "entity_id": str(uuid.uuid4()),
            "operation": "created",
            "changed_fields": [],
            "version": 1,
            "occurred_at": "2026-12-02T00:00:00+00:00",
        }
    )
    with pytest.raises(OSError):
        ForwardingPublisher(RunnerConnection(settings)).publish([event])


def test_stopping_the_runner_ends_its_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECORDER_OUTPUT", str(tmp_path / "recorded.jsonl"))
    monkeypatch.delenv("CONSOLE_SESSION_SECRET", raising=False)
    runner = LocalRunner(write_template(tmp_path), port=0, apply_environment=False, http_workers=3)
    runner.start()
    try:
        workers = list(runner.workers)
        assert len(workers) == 2 and all(w.alive for w in workers)
        # One console-session secret for every process, set for this runner only.
        assert os.environ.get("CONSOLE_SESSION_SECRET")
        assert json.loads(httpx.get(f"{runner.url}/items/a", timeout=30).text)["rawPath"] == "/items/a"
    finally:
        runner.stop()
    assert not any(w.alive for w in workers)
    assert not any(Path(f"/proc/{w.pid}").exists() for w in workers)
    assert "CONSOLE_SESSION_SECRET" not in os.environ


def test_the_projects_template_on_two_processes_signs_in_once_and_publishes_every_write(
    pg: LocalDatabase,
    db: Database,
    owner_db: Database,
    openai_server: ScriptedOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real functions: a console session made by one process is valid in the other, and a
    CRM write served by either publishes its change events at once (none left to the relay)."""
    use_environment(monkeypatch, pg, openai_server)
    monkeypatch.delenv("CONSOLE_SESSION_SECRET", raising=False)
    org = create_organization(db, "Two processes", "admin@two-processes.example")
    try:
        with LocalRunner(ROOT / "template.yaml", port=0, apply_environment=False, http_workers=2) as runner:
            with httpx.Client(base_url=runner.url, timeout=60) as signing_in:
                page = signing_in.get("/console/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
                assert token, page.text
                login = signing_in.post(
                    "/console/login", data={"api_key": org.api_key, "csrf_token": token.group(1), "next": "/console"}
                )
                assert login.status_code == 303, login.text
                cookies = dict(signing_in.cookies)
            names = set()
            for _ in range(CONNECTIONS):
                with httpx.Client(base_url=runner.url, cookies=cookies, timeout=60) as client:  # new connection
                    page = client.get("/console")
                    assert page.status_code == 200, (page.status_code, page.headers.get("location"))
                    names.add(page.headers["server"].split()[0])
            assert names == {"okyaku-local", "okyaku-local-worker-1"}

            headers = {"Authorization": f"Bearer {org.api_key}"}
            names.clear()
            for i in range(CONNECTIONS):
                with httpx.Client(base_url=runner.url, headers=headers, timeout=60) as client:
                    created = client.post("/api/v1/contacts", json={"first_name": f"Worker {i}"})
                    assert created.status_code == 201, created.text
                    names.add(created.headers["server"].split()[0])
            assert names == {"okyaku-local", "okyaku-local-worker-1"}
            with owner_db.session() as session:
                pending, published = session.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE published_at IS NULL),"
                        " count(*) FILTER (WHERE published_at IS NOT NULL) FROM outbox WHERE organization_id = :id"
                    ),
                    {"id": org.organization_id},
                ).one()
            assert (pending, published) == (0, CONNECTIONS)
    finally:
        get_settings.cache_clear()
