"""``okyaku dev`` as a user runs it: a subprocess that starts Postgres, creates the demo
organization, serves the template, delivers change events and stops cleanly on Ctrl-C.

The first start uses tests/data/runner/template.yaml: the real crm_api handler plus a recorder
that consumes the change-event queue (failing chosen records to prove retries and redrive).
The second start reuses the same data directory with the project's template.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from okyaku.config import Settings
from okyaku.events.model import ChangeEvent
from okyaku.local.runner import LocalRunner
from okyaku.runtime import Runtime
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
RUNNER_TEMPLATE = ROOT / "tests" / "data" / "runner" / "template.yaml"


def okyaku_command() -> list[str]:
    script = Path(sys.executable).parent / "okyaku"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from okyaku.cli import main; sys.exit(main())"]


@dataclass
class DevProcess:
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    url: str = ""
    api_key: str = ""
    runner_token: str = ""

    @classmethod
    def start(
        cls, data_dir: Path, *extra: str, env: dict[str, str] | None = None, ready_timeout: float = 90
    ) -> DevProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CHANGE_EVENTS"))}
        environment.update(env or {})
        environment["PYTHONUNBUFFERED"] = "1"
        process = subprocess.Popen(
            [*okyaku_command(), "dev", "--data-dir", str(data_dir), "--port", "0", *extra],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        dev = cls(process)
        threading.Thread(target=dev._read, daemon=True).start()
        try:
            wait_for(lambda: any("Press Ctrl-C" in line for line in dev.lines), "okyaku dev to be ready", ready_timeout)
        except AssertionError:
            dev.stop()
            raise AssertionError("okyaku dev did not start:\n" + dev.output) from None
        dev.url = next(m.group(1) for line in dev.lines if (m := re.search(r"running at (http://\S+)", line)))
        dev.api_key = next(m.group(1) for line in dev.lines if (m := re.search(r"API key: (oky_\S+)", line)))
        dev.runner_token = next(m.group(1) for line in dev.lines if (m := re.search(r"Runner token: (\S+)", line)))
        return dev

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def client(self, api_key: str | None = None) -> httpx.Client:
        key = self.api_key if api_key is None else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def admin(self) -> httpx.Client:
        """A client of the runner's own routes (``/_okyaku/``), with the token it printed."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.runner_token}"}, timeout=30)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    path = ROOT / ".okyaku" / f"test-dev-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def recorder_output(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("recorder") / "events.jsonl"


@pytest.fixture(scope="module")
def dev(data_dir: Path, recorder_output: Path) -> Iterator[DevProcess]:
    process = DevProcess.start(
        data_dir,
        "--template",
        str(RUNNER_TEMPLATE),
        "--retry-delay",
        "0.05",
        "--demo-scale",  # the full-size demo is tested in tests/integration/test_demo_data.py
        "0.5",
        env={
            "RECORDER_OUTPUT": str(recorder_output),
            "RECORDER_FAIL_ONCE": "contact:deleted",
            "RECORDER_FAIL_ALWAYS": "task:deleted",
        },
    )
    yield process
    process.stop()


def recorded(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def deliveries(path: Path, entity_id: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(batch, record) for every delivery of a change to ``entity_id``."""
    return [
        (batch, record)
        for batch in recorded(path)
        if batch["kind"] == "sqs"
        for record in batch["records"]
        if record["entity_id"] == entity_id
    ]


def test_it_serves_the_api_with_the_printed_key(dev: DevProcess) -> None:
    with dev.client() as client:
        assert client.get("/api/v1/health").json()["status"] == "ok"
        page = client.get("/api/v1/contacts", params={"limit": 100}).json()
        assert len(page["data"]) == 100 and page["next_cursor"]  # the demo's contacts (175 at scale 0.5)
        created = client.post("/api/v1/contacts", json={"first_name": "Grace", "email": "grace@navy.example"})
        assert created.status_code == 201, created.text
        fetched = client.get(f"/api/v1/contacts/{created.json()['id']}")
        assert fetched.json()["email"] == "grace@navy.example"
        invalid = client.post("/api/v1/contacts", json={"email": "not-an-email"})
        assert invalid.status_code == 422 and invalid.json()["error"]["details"]
    with dev.client(api_key="") as anonymous:
        response = anonymous.get("/api/v1/contacts")
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/api/v1/not-in-the-template").status_code == 404


def test_change_events_reach_the_sqs_consumer_with_retries_and_redrive(dev: DevProcess, recorder_output: Path) -> None:
    def status() -> dict[str, Any]:
        with dev.admin() as admin:
            return admin.get("/_okyaku/status").json()  # type: ignore[no-any-return]

    # The demo data's events arrive first; let them drain so ours travel in a batch of their own.
    wait_for(lambda: all(q["pending"] == 0 for q in status()["queues"]), "the demo events to be delivered", 60)
    assert recorded(recorder_output), "the demo data's change events were delivered"
    (bus,) = status()["buses"]
    assert bus["bus"] == "ChangeEventsBus" and bus["change_events"]
    (rule,) = bus["rules"]
    delivered = [r for b in recorded(recorder_output) if b["kind"] == "sqs" for r in b["records"]]
    assert rule["matched"] == len({r["message_id"] for r in delivered}) > 0
    assert "pipeline" not in {r["entity_type"] for r in delivered}  # the rule's anything-but

    with dev.client() as client:
        contact = client.post("/api/v1/contacts", json={"first_name": "Alan", "last_name": "Turing"}).json()
        activity = client.post(
            "/api/v1/activities", json={"type": "call", "body": "Enigma", "contact_id": contact["id"]}
        ).json()
        task = client.post("/api/v1/tasks", json={"title": "Follow up", "contact_id": contact["id"]}).json()
        wait_for(lambda: deliveries(recorder_output, task["id"]), "the task's creation to be delivered")
        # One transaction, three change events: the activity, the task and the contact deleted.
        assert client.delete(f"/api/v1/contacts/{contact['id']}").status_code == 204

    def contact_deleted_twice() -> list[tuple[dict[str, Any], dict[str, Any]]]:
        found = [(b, r) for b, r in deliveries(recorder_output, contact["id"]) if r["operation"] == "deleted"]
        return found if len(found) >= 2 else []

    first, second = (record for _, record in wait_for(contact_deleted_twice, "the failed record's retry"))
    # The contact's deletion failed once (RECORDER_FAIL_ONCE) and came back alone, same message.
    assert (first["receive_count"], second["receive_count"]) == (1, 2)
    assert first["message_id"] == second["message_id"]
    assert first["event_source"] == "aws:sqs"
    # Through the bus: the recorder's rule put EventBridge's envelope on the recorder's own queue.
    assert first["event_source_arn"].endswith(":RecorderQueue") and first["enveloped"]
    first_batch = next(b for b, r in deliveries(recorder_output, contact["id"]) if r == first)
    batch_ids = {r["entity_id"] for r in first_batch["records"]}
    assert {activity["id"], task["id"], contact["id"]} <= batch_ids
    activity_deleted = [r for _, r in deliveries(recorder_output, activity["id"]) if r["operation"] == "deleted"]
    assert [r["receive_count"] for r in activity_deleted] == [1]  # it succeeded: not sent again

    # The task's deletion always fails: delivered maxReceiveCount (3) times, then dead-lettered.
    dead = wait_for(
        lambda: [d for d in status()["dead_letters"] if task["id"] in d["body"]], "the task to be dead-lettered"
    )
    assert dead[0]["receive_count"] == 3 and dead[0]["function_id"] == "RecorderFunction"
    task_deleted = [r for _, r in deliveries(recorder_output, task["id"]) if r["operation"] == "deleted"]
    assert [r["receive_count"] for r in task_deleted] == [1, 2, 3]


def test_schedules_fire_eventbridge_events(dev: DevProcess, recorder_output: Path) -> None:
    assert httpx.get(f"{dev.url}/_okyaku/status", timeout=10).status_code == 401  # no token
    assert httpx.post(f"{dev.url}/_okyaku/schedules/RecorderFunctionHourly/fire", timeout=10).status_code == 401
    with dev.admin() as admin:
        status = admin.get("/_okyaku/status").json()
        (schedule,) = status["schedules"]
        assert schedule["rule"] == "RecorderFunctionHourly" and schedule["next_fire"].endswith(":00:00+00:00")
        response = admin.post("/_okyaku/schedules/RecorderFunctionHourly/fire")
        assert response.status_code == 200, response.text
        assert admin.post("/_okyaku/schedules/NoSuchRule/fire").status_code == 404
    (event,) = [b["event"] for b in recorded(recorder_output) if b["kind"] == "event"]
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/RecorderFunctionHourly"]


def test_ctrl_c_stops_it_and_a_second_start_reuses_the_data(dev: DevProcess, data_dir: Path) -> None:
    first_key = dev.api_key
    assert dev.stop() == 0, dev.output
    assert "Postgres stopped." in dev.output and "Okyaku dev stopped." in dev.output

    again = DevProcess.start(data_dir)  # the project's template.yaml this time
    try:
        assert again.api_key == first_key
        assert "Reusing the demo organization" in again.output
        assert "Creating demo data" not in again.output
        assert "OutboxRelayFunction: schedule rate(1 minute)" in again.output
        with again.client() as client:
            companies = client.get("/api/v1/companies", params={"limit": 5})
            assert companies.status_code == 200 and len(companies.json()["data"]) == 5
            created = client.post("/api/v1/contacts", json={"first_name": "Katherine", "last_name": "Johnson"})
            assert created.status_code == 201, created.text
            assert client.get(f"/api/v1/contacts/{created.json()['id']}").status_code == 200
            with again.admin() as admin:
                relay = admin.post("/_okyaku/schedules/OutboxRelayFunctionEveryMinute/fire")
            assert relay.status_code == 200 and relay.json()["result"]["failed"] == 0
    finally:
        assert again.stop() == 0, again.output


# --- the programmatic API, in-process ----------------------------------------------------------


def test_local_runner_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    functions = RUNNER_TEMPLATE.parent / "functions"
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.11, Environment: {Variables: "
        "{CHANGE_EVENTS_QUEUE_URL: !Ref Changes}}}}\n"
        "Resources:\n"
        f"  Echo:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {functions / 'echo'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Items: {Type: HttpApi, Properties: {Path: '/items/{id}', Method: ANY}}\n"
        f"  Recorder:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {functions / 'recorder'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Changes: {Type: SQS, Properties: {Queue: !GetAtt Changes.Arn, BatchSize: 5}}\n"
        "  Changes: {Type: AWS::SQS::Queue}\n"
    )
    output = tmp_path / "recorded.jsonl"
    monkeypatch.setenv("RECORDER_OUTPUT", str(output))

    with LocalRunner(template, port=0, apply_environment=False) as runner:
        response = httpx.post(
            f"{runner.url}/items/a%2Fb?x=1&x=2",
            content=b"\x89PNG\x00",
            headers={"content-type": "image/png", "cookie": "a=1; b=2"},
        )
        assert response.status_code == 202
        assert response.headers["x-function"] == "Echo"
        assert response.cookies["seen"] == "1"
        event = response.json()
        assert (event["version"], event["routeKey"]) == ("2.0", "ANY /items/{id}")
        assert event["pathParameters"] == {"id": "a/b"}
        assert event["queryStringParameters"] == {"x": "1,2"}
        assert event["cookies"] == ["a=1", "b=2"]
        assert event["isBase64Encoded"] is True and event["body"] == "iVBORwA="
        binary = httpx.get(f"{runner.url}/items/binary")
        assert binary.content == b"\x00\xffpng"
        assert httpx.get(f"{runner.url}/elsewhere").json() == {"message": "Not Found"}

        change = ChangeEvent(
            event_id=uuid.uuid4(),
            organization_id=uuid.uuid4(),
            entity_type="deal",
            entity_id=uuid.uuid4(),
            operation="updated",
            changed_fields=["stage_id"],
            version=2,
            occurred_at=datetime.now(UTC),
        )
        # The installed publisher is what every handler's runtime picks up.
        local = Runtime(Settings()).publisher
        assert local is not None
        local.publish([change])
        batches = wait_for(lambda: [b for b in recorded(output) if b["kind"] == "sqs"], "the change event")
        assert [r["entity_id"] for r in batches[0]["records"]] == [str(change.entity_id)]
    assert Runtime(Settings(change_events_queue_url="")).publisher is None  # uninstalled on stop
