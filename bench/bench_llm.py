"""The LLM layer's costs: cold import of ``okyaku.llm``, the local embedder's load time and
throughput, the gateway's overhead per call, and how fast an open circuit fails.

``python -m bench llm``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Row = tuple[str, str, float, float, str]


def _subprocess_seconds(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return float(out.stdout.strip().splitlines()[-1])


def _stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _time_each(call: Callable[[], object], runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def import_costs(runs: int = 7) -> list[Row]:
    """Each in a fresh interpreter, after what every HTTP function imports anyway (okyaku.http)."""
    template = "import time, okyaku.http; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    rows: list[Row] = []
    baseline = None
    for module in ("okyaku.llm", "okyaku.content.api", "openai"):
        median, p95 = _stats([_subprocess_seconds(template.format(module=module)) for _ in range(runs)])
        baseline = baseline or median
        rows.append((f"cold import {module}", f"{runs} procs", median, p95, f"{median / baseline:.1f}x"))
    return rows


def embedder_costs() -> list[Row]:
    load_code = (
        "import time; t = time.perf_counter(); from okyaku.llm import get_local_embedder;"
        "e = get_local_embedder(); e.embed(['warm up']); print(time.perf_counter() - t)"
    )
    load = [_subprocess_seconds(load_code) for _ in range(3)]
    from okyaku.llm import get_local_embedder

    embedder = get_local_embedder()
    embedder.embed(["warm up"])
    words = [
        "deal",
        "renewal",
        "contract",
        "pipeline",
        "quarter",
        "forecast",
        "meeting",
        "follow",
        "up",
        "pricing",
        "champion",
        "budget",
    ]
    texts = [" ".join(words[(i + j) % len(words)] for j in range(8 + i % 24)) + f" #{i}" for i in range(512)]
    batch = _time_each(lambda: embedder.embed(texts), 3)
    single = _time_each(lambda: embedder.embed(["renewing the SaaS contract with Acme"]), 50)
    rows: list[Row] = [("embedder load + first vector", "3 procs", *_stats(load), "")]
    median, p95 = _stats(batch)
    rows.append(("embed 512 texts (8-31 words)", f"{len(texts) / median:.0f}/s", median, p95, ""))
    rows.append(("embed 1 text", "50 calls", *_stats(single), ""))
    return rows


def _hanging_listener() -> tuple[socket.socket, str]:
    """Accepts TCP connections (kernel backlog) and never answers: a wedged server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def breaker_costs() -> list[Row]:
    from okyaku.errors import OkyakuError
    from okyaku.llm import LLMConfig, LLMGateway, user

    rows: list[Row] = []
    listener, url = _hanging_listener()
    gateway = LLMGateway(LLMConfig(base_url=url, timeout_s=0.5, connect_timeout_s=0.5, max_retries=0))
    try:

        def failing_call() -> None:
            with contextlib.suppress(OkyakuError):
                gateway.sync.chat([user("hi")])

        tripping = _time_each(failing_call, gateway.config.breaker_failure_threshold)
        assert gateway.breaker.state.value == "open"
        open_calls = _time_each(failing_call, 2000)
        median_trip, p95_trip = _stats(tripping)
        median_open, p95_open = _stats(open_calls)
        rows.append(("wedged LLM, circuit closed", "timeout 0.5 s", median_trip, p95_trip, "1x"))
        rows.append(
            ("wedged LLM, circuit open", "2000 calls", median_open, p95_open, f"{median_open / median_trip:.1e}x")
        )
    finally:
        gateway.close()
        listener.close()
    return rows


def gateway_overhead(calls: int = 200) -> list[Row]:
    """A chat round trip to a loopback OpenAI-compatible server: raw SDK vs the gateway."""
    sys.path.insert(0, str(ROOT))
    import openai

    from okyaku.llm import LLMConfig, LLMGateway, user
    from tests.support.openai_server import Reply, ScriptedOpenAIServer

    with ScriptedOpenAIServer() as server:
        server.responder = lambda request: Reply.text("ok")
        raw = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        raw_samples = _time_each(lambda: raw.chat.completions.create(model="llama3.1", messages=messages), calls)
        gateway = LLMGateway(LLMConfig(base_url=server.base_url))
        try:
            gateway.sync.chat([user("warm up")])
            ours = _time_each(lambda: gateway.sync.chat([user("hi")]), calls)
        finally:
            gateway.close()
            raw.close()
    raw_median, raw_p95 = _stats(raw_samples)
    median, p95 = _stats(ours)
    return [
        ("chat round trip, raw SDK", f"{calls} calls", raw_median, raw_p95, "1x"),
        ("chat round trip, gateway.sync", f"{calls} calls", median, p95, f"{median / raw_median:.2f}x"),
    ]


def _format_seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 1e-3:
        return f"{value * 1e3:.1f} ms"
    return f"{value * 1e6:.1f} µs"


def main() -> None:
    rows = [*import_costs(), *embedder_costs(), *breaker_costs(), *gateway_overhead()]
    print(f"{'what':<36}{'size':>14}{'median':>12}{'p95':>12}{'ratio':>10}")
    for what, size, median, p95, ratio in rows:
        print(f"{what:<36}{size:>14}{_format_seconds(median):>12}{_format_seconds(p95):>12}{ratio:>10}")
    summary = {row[0]: round(row[2], 6) for row in rows}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
