"""The local runner's HTTP front as an attacker meets it: the runner's own routes (status with its
dead-letter bodies, firing a schedule) need the runner's token, its own Host, and no foreign
Origin; a request whose length is negative, not a number, ambiguous or too large is answered at
once with 400/413 and the error shape, never read without bound. Raw sockets, so that the bytes on
the wire are exactly the ones under test."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from okyaku.local import http_front
from okyaku.local.runner import LocalRunner

FUNCTIONS = Path(__file__).resolve().parents[1] / "data" / "runner" / "functions"
TOKEN = "runner-token-for-tests"


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[LocalRunner, Path]]:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Transform: AWS::Serverless-2016-10-31\n"
        "Globals: {Function: {Runtime: python3.11}}\n"
        "Resources:\n"
        f"  Echo:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {FUNCTIONS / 'echo'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Items: {Type: HttpApi, Properties: {Path: '/items/{id}', Method: ANY}}\n"
        f"  Recorder:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: {FUNCTIONS / 'recorder'}\n"
        "      Handler: app.handler\n      Events:\n"
        "        Hourly: {Type: Schedule, Properties: {Schedule: rate(1 hour), Name: RecorderHourly}}\n"
    )
    output = tmp_path / "recorded.jsonl"
    monkeypatch.setenv("RECORDER_OUTPUT", str(output))
    with LocalRunner(template, port=0, apply_environment=False, admin_token=TOKEN) as started:
        yield started, output


def exchange(runner: LocalRunner, raw: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes, bool]:
    """Send ``raw``; return (status, headers, body, whether the server then closed the connection)."""
    with socket.create_connection((runner.host, runner.port), timeout=timeout) as connection:
        connection.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                raise AssertionError(f"no response, got {data!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v for k, v in (line.split(": ", 1) for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        try:
            closed = connection.recv(1) == b""
        except TimeoutError:
            closed = False
        return int(lines[0].split()[1]), headers, body[:length], closed


def request(
    runner: LocalRunner, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    fields = {"Host": f"127.0.0.1:{runner.port}", **(headers or {})}
    if body and "Content-Length" not in fields:
        fields["Content-Length"] = str(len(body))
    lines = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    return f"{method} {path} HTTP/1.1\r\n{lines}Connection: close\r\n\r\n".encode() + body


def error_code(body: bytes) -> str:
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message", "details"}
    return str(error["code"])


def fires(output: Path) -> list[dict[str, Any]]:
    if not output.exists():
        return []
    return [json.loads(line) for line in output.read_text().splitlines() if json.loads(line)["kind"] == "event"]


BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_status_needs_the_runner_token(runner: tuple[LocalRunner, Path]) -> None:
    served, _ = runner
    status, _, body, _ = exchange(served, request(served, "GET", "/_okyaku/status"))
    assert status == 401 and error_code(body) == "unauthorized"
    assert b"dead_letters" not in body
    status, _, body, _ = exchange(served, request(served, "GET", "/_okyaku/status", {"Authorization": "Bearer guess"}))
    assert status == 401
    status, _, body, _ = exchange(served, request(served, "GET", "/_okyaku/status", BEARER))
    assert status == 200 and "dead_letters" in json.loads(body)
    status, _, body, _ = exchange(served, request(served, "GET", "/_okyaku/status", {"X-Okyaku-Runner-Token": TOKEN}))
    assert status == 200


def test_firing_a_schedule_needs_the_token_and_refuses_other_origins(runner: tuple[LocalRunner, Path]) -> None:
    served, output = runner
    fire = "/_okyaku/schedules/RecorderHourly/fire"
    status, _, body, _ = exchange(served, request(served, "POST", fire))
    assert status == 401 and error_code(body) == "unauthorized"
    # A web page elsewhere (the browser adds its Origin) cannot fire it, token or not.
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{served.port + 1}"):
        status, _, body, _ = exchange(served, request(served, "POST", fire, BEARER | {"Origin": origin}))
        assert status == 403 and error_code(body) == "forbidden", origin
    assert fires(output) == []
    same_origin = BEARER | {"Origin": f"http://127.0.0.1:{served.port}"}
    status, _, body, _ = exchange(served, request(served, "POST", fire, same_origin))
    assert status == 200, body
    assert [f["event"]["resources"][0].rsplit("/", 1)[1] for f in fires(output)] == ["RecorderHourly"]


def test_a_foreign_host_header_is_refused(runner: tuple[LocalRunner, Path]) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    served, _ = runner
    status, _, body, _ = exchange(
        served, request(served, "GET", "/_okyaku/status", BEARER | {"Host": f"evil.example:{served.port}"})
    )
    assert status == 403 and error_code(body) == "forbidden"


def test_the_fire_route_answers_unknown_rules_with_the_error_shape(runner: tuple[LocalRunner, Path]) -> None:
    served, _ = runner
    status, _, body, _ = exchange(served, request(served, "POST", "/_okyaku/schedules/NoSuchRule/fire", BEARER))
    assert status == 404 and error_code(body) == "not_found"


@pytest.mark.parametrize("length", ["-1", "-100000", "abc", "1e3", "10, 10", ""])
def test_a_content_length_that_is_not_a_non_negative_number_is_a_400(
    runner: tuple[LocalRunner, Path], length: str
) -> None:
    served, _ = runner
    raw = request(served, "POST", "/items/1", {"Content-Length": length}, b"x" * 10)
    status, _, body, closed = exchange(served, raw.replace(b"Connection: close\r\n", b""))
    assert status == 400 and error_code(body) == "bad_request"
    assert closed  # the body's end is unknown: the connection is not kept alive


def test_two_different_content_lengths_are_a_400(runner: tuple[LocalRunner, Path]) -> None:
    served, _ = runner
    raw = (
        f"POST /items/1 HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nabcd"
    ).encode()
    status, _, body, closed = exchange(served, raw)
    assert status == 400 and error_code(body) == "bad_request" and closed


def test_an_oversized_body_is_a_413_without_being_read(runner: tuple[LocalRunner, Path]) -> None:
    served, _ = runner
    raw = request(served, "POST", "/items/1", {"Content-Length": str(http_front.MAX_BODY_BYTES + 1)})
    status, _, body, closed = exchange(served, raw)  # only the headers are sent
    assert status == 413 and error_code(body) == "payload_too_large" and closed


@pytest.mark.parametrize("size_line", [b"-5", b"zz", b"1;" + b"x" * 2000])
def test_a_malformed_chunk_size_is_a_400(runner: tuple[LocalRunner, Path], size_line: bytes) -> None:
    served, _ = runner
    raw = (
        f"POST /items/1 HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + size_line
        + b"\r\nabcde\r\n0\r\n\r\n"
    )
    status, _, body, closed = exchange(served, raw)
    assert status == 400 and error_code(body) == "bad_request" and closed


def test_a_well_formed_chunked_body_still_reaches_the_function(runner: tuple[LocalRunner, Path]) -> None:
    served, _ = runner
    raw = (
        f"POST /items/1 HTTP/1.1\r\nHost: 127.0.0.1:{served.port}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: text/plain\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ).encode()
    status, _, body, _ = exchange(served, raw)
    assert status == 202 and json.loads(body)["body"] == "hello world"


class RecordingSocket(socket.socket):
    """A real TCP socket that records what the server writes through it."""

    writes: list[bytes]

    def sendall(self, data: Any, flags: int = 0) -> None:
        self.writes.append(bytes(data))
        super().sendall(data, flags)


class StubRunner:
    """Just enough of a runner for the front to answer its status route."""

    template: Any = None
    functions: dict[str, Any] = {}
    admin_token = TOKEN
    host = "127.0.0.1"
    port = 3000

    def status(self) -> dict[str, Any]:
        return {"queues": [], "dead_letters": []}

    def fire_schedule(self, rule_name: str) -> Any:
        raise KeyError(rule_name)

    def publish_change_events(self, events: Any) -> None:
        raise AssertionError("not under test")

    def runner_route(self, method: str, target: str, headers: Any, body: bytes) -> Any:
        return http_front.answer_runner_route(self, method, target, headers, body)


def test_a_response_is_one_write_on_a_no_delay_socket() -> None:
    # Headers and body written apart, on a socket with Nagle on, made every keep-alive response
    # wait for the client's delayed ACK (~40 ms). Now: TCP_NODELAY and a single write.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, address = listener.accept()
        server_side = RecordingSocket(accepted.family, accepted.type, accepted.proto, fileno=accepted.detach())
        server_side.writes = []
        with client, server_side:
            client.sendall(
                f"GET /_okyaku/status HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nAuthorization: Bearer {TOKEN}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            handler_class = http_front.make_request_handler(StubRunner())
            handler = handler_class(server_side, address, None)  # type: ignore[arg-type]
            assert server_side.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            assert handler.close_connection
    (write,) = server_side.writes
    head, _, body = write.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and json.loads(body) == StubRunner().status()
