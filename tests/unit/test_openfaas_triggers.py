"""OpenFaaS triggers are authenticated: ``X-Topic`` is a header anyone reaching the gateway can send,
so a schedule or a queue message runs only when the request is signed with the deployment's
trigger secret (HMAC-SHA256 over timestamp, topic and body, within a bounded clock skew). The
adapter is driven with OpenFaaS-shaped requests in front of a recording Lambda handler."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from okyaku.config import get_settings
from okyaku.entry import function_handler
from okyaku.openfaas import (
    CRON_TOPIC,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Request,
    adapt,
    signed_trigger_headers,
)

SECRET = "s3cret-for-tests-only"


class Recorder:
    """A Lambda handler that records the events it was given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], _context: Any) -> Any:
        self.events.append(event)
        if "Records" in event:
            return {"batchItemFailures": []}
        return {"ran": True}


@pytest.fixture
def secret(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("OPENFAAS_TRIGGER_SECRET", SECRET)
    monkeypatch.setenv("OPENFAAS_TRIGGER_SECRET_FILE", "")
    get_settings.cache_clear()
    yield SECRET
    get_settings.cache_clear()


def error_of(response: dict[str, Any]) -> dict[str, Any]:
    body = json.loads(response["body"])
    assert set(body["error"]) == {"code", "message", "details"}
    return dict(body["error"])


def test_a_signed_cron_trigger_runs_the_schedule(secret: str) -> None:
    recorder = Recorder()
    handle = adapt(recorder, function_name="OutboxRelayFunction", schedule_rule="OutboxRelayFunctionEveryMinute")
    response = handle(Request("POST", "/", headers=signed_trigger_headers(secret, CRON_TOPIC)), None)
    assert response["statusCode"] == 200
    (event,) = recorder.events
    assert event["source"] == "aws.events" and event["resources"][0].endswith("/OutboxRelayFunctionEveryMinute")


def test_the_cron_connectors_whole_topic_annotation_is_a_schedule(secret: str) -> None:
    # The cron-connector sends the function's whole "topic" annotation in X-Topic.
    recorder = Recorder()
    handle = adapt(recorder, function_name="EmbeddingsFunction", schedule_rule="EmbeddingsFunctionBackfill")
    topic = f"{CRON_TOPIC},EmbeddingsQueue"
    response = handle(Request("POST", "/", headers=signed_trigger_headers(secret, topic)), None)
    assert response["statusCode"] == 200
    (event,) = recorder.events
    assert event["source"] == "aws.events"


def test_a_signed_queue_message_is_delivered_as_one_sqs_record(secret: str) -> None:
    recorder = Recorder()
    body = b'{"event_id": "e-1"}'
    headers = signed_trigger_headers(secret, "EmbeddingsQueue", body) | {"X-Call-Id": "m-1"}
    response = adapt(recorder, function_name="EmbeddingsFunction")(Request("POST", "/", body, headers), None)
    assert response["statusCode"] == 200
    (event,) = recorder.events
    (record,) = event["Records"]
    assert record["body"] == body.decode() and record["messageId"] == "m-1"


@pytest.mark.parametrize("topic", [CRON_TOPIC, "EmbeddingsQueue"])
def test_an_unsigned_trigger_is_refused_and_nothing_runs(secret: str, topic: str) -> None:
    recorder = Recorder()
    handle = adapt(recorder, function_name="EmbeddingsFunction")
    response = handle(Request("POST", "/", b'{"event_id": "forged"}', {"X-Topic": topic}), None)
    assert response["statusCode"] == 401
    assert error_of(response)["code"] == "invalid_trigger_signature"
    assert recorder.events == []


def forged_variants(secret: str) -> dict[str, tuple[bytes, dict[str, str]]]:
    body = b'{"event_id": "e-1"}'
    good = signed_trigger_headers(secret, "EmbeddingsQueue", body)
    return {
        "wrong secret": (body, signed_trigger_headers("not-the-secret", "EmbeddingsQueue", body)),
        "body changed": (b'{"event_id": "e-2"}', good),
        "signed for another topic": (
            body,
            signed_trigger_headers(secret, "ScoringQueue", body) | {"X-Topic": "EmbeddingsQueue"},
        ),
        "too old": (body, signed_trigger_headers(secret, "EmbeddingsQueue", body, now=time.time() - 3600)),
        "from the future": (body, signed_trigger_headers(secret, "EmbeddingsQueue", body, now=time.time() + 3600)),
        "timestamp not a number": (body, good | {TIMESTAMP_HEADER: "soon"}),
        "no signature": (body, {k: v for k, v in good.items() if k != SIGNATURE_HEADER}),
        "signature truncated": (body, good | {SIGNATURE_HEADER: good[SIGNATURE_HEADER][:-2]}),
    }


@pytest.mark.parametrize("variant", list(forged_variants(SECRET)))
def test_a_forged_replayed_or_stale_trigger_is_refused(secret: str, variant: str) -> None:
    body, headers = forged_variants(secret)[variant]
    recorder = Recorder()
    response = adapt(recorder, function_name="EmbeddingsFunction")(Request("POST", "/", body, headers), None)
    assert response["statusCode"] == 401, variant
    assert error_of(response)["code"] == "invalid_trigger_signature"
    assert recorder.events == []


def test_a_trigger_must_be_a_post(secret: str) -> None:
    # outbox-relay used to run on a GET carrying X-Topic.
    recorder = Recorder()
    handle = adapt(recorder, function_name="OutboxRelayFunction")
    response = handle(Request("GET", "/", headers=signed_trigger_headers(secret, CRON_TOPIC)), None)
    assert response["statusCode"] == 401 and recorder.events == []


def test_without_a_configured_secret_every_trigger_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENFAAS_TRIGGER_SECRET", raising=False)
    monkeypatch.setenv("OPENFAAS_TRIGGER_SECRET_FILE", str(tmp_path / "absent"))
    get_settings.cache_clear()
    try:
        recorder = Recorder()
        handle = adapt(recorder, function_name="OutboxRelayFunction")
        response = handle(Request("POST", "/", headers=signed_trigger_headers("guess", CRON_TOPIC)), None)
        assert response["statusCode"] == 403
        assert error_of(response)["code"] == "trigger_secret_missing"
        assert recorder.events == []
    finally:
        get_settings.cache_clear()


def test_the_secret_can_come_from_the_openfaas_secret_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "okyaku-trigger-secret"
    secret_file.write_text("from-a-file\n")
    monkeypatch.delenv("OPENFAAS_TRIGGER_SECRET", raising=False)
    monkeypatch.setenv("OPENFAAS_TRIGGER_SECRET_FILE", str(secret_file))
    get_settings.cache_clear()
    try:
        recorder = Recorder()
        handle = adapt(recorder, function_name="OutboxRelayFunction")
        assert (
            handle(Request("POST", "/", headers=signed_trigger_headers("from-a-file", CRON_TOPIC)), None)["statusCode"]
            == 200
        )
        assert (
            handle(Request("POST", "/", headers=signed_trigger_headers("other", CRON_TOPIC)), None)["statusCode"] == 401
        )
        assert len(recorder.events) == 1
    finally:
        get_settings.cache_clear()


def test_a_schedule_only_function_refuses_plain_http(secret: str) -> None:
    runs: list[Any] = []
    lambda_handler = function_handler(name="outbox_relay", on_schedule=lambda event, _ctx: runs.append(event) or {})
    handle = adapt(lambda_handler, function_name="OutboxRelayFunction")
    for method in ("GET", "POST"):
        response = handle(Request(method, "/"), None)
        assert response["statusCode"] == 404, method
        assert error_of(response)["code"] == "not_found"
    assert runs == []


def test_only_the_topics_listed_as_unsigned_skip_the_signature(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENFAAS_UNSIGNED_TOPICS", "EmbeddingsQueue")
    get_settings.cache_clear()
    recorder = Recorder()
    handle = adapt(recorder, function_name="EmbeddingsFunction")
    body = b'{"event_id": "e-1"}'
    assert handle(Request("POST", "/", body, {"X-Topic": "EmbeddingsQueue"}), None)["statusCode"] == 200
    assert handle(Request("POST", "/", body, {"X-Topic": "ScoringQueue"}), None)["statusCode"] == 401
    assert handle(Request("POST", "/", headers={"X-Topic": CRON_TOPIC}), None)["statusCode"] == 401
    assert len(recorder.events) == 1


def test_the_fire_command_sends_a_trigger_the_adapter_accepts(secret: str) -> None:
    """``python -m okyaku.openfaas fire``, against a gateway stand-in that hands each request to
    the adapter as the python3-http template would."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from okyaku.openfaas import fire

    recorder = Recorder()
    handle = adapt(recorder, function_name="OutboxRelayFunction", schedule_rule="OutboxRelayFunctionEveryMinute")
    paths: list[str] = []

    class Gateway(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            paths.append(self.path)
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            response = handle(Request("POST", "/", body, dict(self.headers.items())), None)
            payload = response["body"].encode()
            self.send_response(response["statusCode"])
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: Any) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Gateway) as gateway:
        threading.Thread(target=gateway.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{gateway.server_address[1]}"
        try:
            assert fire(url, "outbox-relay", secret=secret)[0] == 200
            status, text = fire(url, "outbox-relay", secret="wrong")
            assert status == 401 and json.loads(text)["error"]["code"] == "invalid_trigger_signature"
        finally:
            gateway.shutdown()
    assert paths == ["/function/outbox-relay", "/function/outbox-relay"]
    (event,) = recorder.events
    assert event["resources"][0].endswith("/OutboxRelayFunctionEveryMinute")
