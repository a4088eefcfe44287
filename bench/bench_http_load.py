"""The embedded default under load: the local runner (as ``make run`` serves it) driven by an
open-loop load generator at fixed request rates, on loopback only.

``python -m bench http_load``. The server runs in a process of its own (the runner, every function
of template.yaml, on a free port of 127.0.0.1, logging at INFO as ``okyaku dev`` does), over an
embedded Postgres holding demo data (``seed_demo_data``, the same generator as ``make run``; its
change events are marked published first, so that no consumer runs during the measurement). The
generator sends each request at its scheduled time whether or not earlier ones have been answered
(open loop: a slow server cannot slow the offered load down, and a latency counts from the
scheduled send time, so queueing is not hidden), over a pool of keep-alive connections that
grows when every connection is busy.

Settings (environment): ``BENCH_HTTP_RATES`` (requests/s, default ``50,100,200``),
``BENCH_HTTP_SECONDS`` (per route and rate, default 10), ``BENCH_HTTP_DEMO_SCALE`` (default 1),
``BENCH_HTTP_WORKERS`` (HTTP processes, default as ``okyaku dev``: one per core, at most 4).
Goal: p99 < 25 ms at 200 req/s for the reads. Prints per route and rate: achieved rate, p50, p95,
p99, max, errors, the server's CPU time per request and the machine's load average (the machine is
shared: compare runs made back to back).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTES = ("/api/v1/health", "/api/v1/contacts?limit=20")
GOAL_P99_MS = 25.0
MAX_CONNECTIONS = 256
DRAIN_TIMEOUT_S = 30.0


@dataclass
class Outcome:
    route: str
    rate: float
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    unfinished: int = 0
    elapsed_s: float = 0.0
    connections: int = 0
    server_cpu_s: float = 0.0  # the server process's CPU time (user + system) during the row
    load_average: float = 0.0  # the machine's 1-minute load average as the row started

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def achieved(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0


class Connections:
    """Keep-alive HTTP/1.1 connections to one server; a new one opens when all are busy."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened = 0
        self.limit = asyncio.Semaphore(MAX_CONNECTIONS)

    async def request(self, path: str, api_key: str) -> int:
        async with self.limit:
            if self.idle:
                reader, writer = self.idle.pop()
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                self.opened += 1
            request = (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                f"Authorization: Bearer {api_key}\r\nAccept: application/json\r\n\r\n"
            ).encode()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split()[1])
                headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
                await reader.readexactly(int(headers.get("content-length", "0")))
            except BaseException:
                writer.close()
                raise
            if headers.get("connection") == "close":
                writer.close()
            else:
                self.idle.append((reader, writer))
            return status

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()


def process_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes so far (Linux /proc)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


async def open_loop(
    port: int, api_key: str, route: str, rate: float, seconds: float, server_pids: list[int]
) -> Outcome:
    """Send ``rate`` requests a second for ``seconds``, each at its scheduled time."""
    loop = asyncio.get_running_loop()
    outcome = Outcome(route, rate, seconds, load_average=os.getloadavg()[0])
    cpu_before = process_cpu_s(server_pids)
    connections = Connections(port)
    total = int(rate * seconds)
    start = loop.time() + 0.05

    async def one(scheduled: float) -> None:
        try:
            status = await connections.request(route, api_key)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            outcome.errors += 1
            return
        if status != 200:
            outcome.errors += 1
            return
        outcome.latencies_ms.append((loop.time() - scheduled) * 1000)

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
    _done, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    outcome.unfinished = len(pending)
    outcome.server_cpu_s = process_cpu_s(server_pids) - cpu_before
    outcome.elapsed_s = loop.time() - start
    outcome.connections = connections.opened
    connections.close()
    return outcome


async def warm_up(port: int, api_key: str) -> None:
    """Some requests on each of several connections at once, so that every HTTP process (the
    kernel gives each a share of the connections) has served before the measurement."""
    connections = Connections(port)

    async def some(route: str) -> None:
        for _ in range(10):
            await connections.request(route, api_key)

    for route in ROUTES:
        await asyncio.gather(*(some(route) for _ in range(8)))
    connections.close()


def _serve(template: str, workers: int) -> None:
    """The server process: the local runner, as ``okyaku dev`` runs it, until stdin closes."""
    import logging

    from okyaku.local.runner import LocalRunner

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    for noisy in ("pgserver", "alembic.runtime.migration", "mangum.http"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    runner = LocalRunner(template, 0, http_workers=workers)
    runner.start()
    pids = ",".join(str(p["pid"]) for p in runner.status()["http_processes"])
    print(f"PORT {runner.port} PIDS {pids}", flush=True)
    sys.stdin.read()
    runner.stop()


def _seed(bench: object, scale: float) -> None:
    from sqlalchemy import text

    from okyaku.db import Database
    from okyaku.local.demo import DemoSize, seed_demo_data
    from okyaku.runtime import Runtime

    org = bench.org  # type: ignore[attr-defined]
    summary = seed_demo_data(Runtime(db=bench.db), org.organization_id, org.user_id, size=DemoSize().scaled(scale))  # type: ignore[attr-defined]
    owner = Database(bench.local.owner_url)  # type: ignore[attr-defined]
    with owner.session() as session:  # settled data: no consumer works during the measurement
        session.execute(
            text("UPDATE outbox SET published_at = now() WHERE organization_id = :id AND published_at IS NULL"),
            {"id": org.organization_id},
        )
    owner.dispose()
    print(f"demo data: {summary.companies} companies, {summary.contacts} contacts, {summary.deals} deals", flush=True)


def main() -> None:
    from bench._database import bench_organization

    rates = [float(r) for r in os.environ.get("BENCH_HTTP_RATES", "50,100,200").split(",") if r.strip()]
    seconds = float(os.environ.get("BENCH_HTTP_SECONDS", "10"))
    scale = float(os.environ.get("BENCH_HTTP_DEMO_SCALE", "1"))
    from okyaku.local.http_workers import default_http_workers

    workers = int(os.environ.get("BENCH_HTTP_WORKERS", "0")) or default_http_workers()
    with bench_organization("HTTP load", "load@bench.example") as bench:
        _seed(bench, scale)
        env = os.environ | {
            "DATABASE_URL": bench.local.app_url,
            "DATABASE_MIGRATION_URL": bench.local.owner_url,
            "PYTHONPATH": str(ROOT / "shared"),
        }
        log_path = ROOT / ".okyaku" / "bench-http-load-server.log"
        with open(log_path, "w") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "bench.bench_http_load", "serve", str(ROOT / "template.yaml"), str(workers)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            try:
                assert server.stdout is not None
                line = server.stdout.readline()
                if not line.startswith("PORT "):
                    raise RuntimeError(f"the runner did not start; see {log_path}")
                port = int(line.split()[1])
                pids = [int(pid) for pid in line.split()[3].split(",")]
                outcomes = asyncio.run(_measure(port, bench.org.api_key, rates, seconds, pids))
            finally:
                if server.stdin is not None:
                    server.stdin.close()
                server.wait(timeout=30)
    _print(outcomes, seconds, workers)


async def _measure(
    port: int, api_key: str, rates: list[float], seconds: float, server_pids: list[int]
) -> list[Outcome]:
    await warm_up(port, api_key)
    outcomes = []
    for rate in rates:
        for route in ROUTES:
            outcomes.append(await open_loop(port, api_key, route, rate, seconds, server_pids))
            await asyncio.sleep(1.0)  # let the server settle between runs
    return outcomes


def _print(outcomes: list[Outcome], seconds: float, workers: int) -> None:
    print(
        f"open loop, {seconds:.0f} s per row, loopback, {workers} HTTP processes; "
        "latency from each request's scheduled send time"
    )
    columns = ("target/s", "achieved/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "cpu ms/req", "load")
    header = f"{'route':<28} " + " ".join(f"{c:>10}" for c in columns) + f" {'conns':>5}  goal"
    print(header)
    print("-" * len(header))
    for o in outcomes:
        top = max(o.latencies_ms) if o.latencies_ms else float("nan")
        answered = len(o.latencies_ms) + o.errors
        cpu_ms = o.server_cpu_s * 1000 / answered if answered else float("nan")
        verdict = "met" if o.percentile(0.99) < GOAL_P99_MS and not (o.errors or o.unfinished) else "missed"
        print(
            f"{o.route:<28} {o.rate:>10.0f} {o.achieved:>10.1f} {o.percentile(0.5):>10.1f} "
            f"{o.percentile(0.95):>10.1f} {o.percentile(0.99):>10.1f} {top:>10.1f} {o.errors + o.unfinished:>10} "
            f"{cpu_ms:>10.1f} {o.load_average:>10.1f} {o.connections:>5}  {verdict}"
        )
    print(f"goal: p99 < {GOAL_P99_MS:.0f} ms at every rate, no errors")
    print(
        "cpu ms/req: the server processes' CPU time per answered request (what one process can sustain is "
        "about 1000 / cpu ms/req requests a second); load: the machine's 1-minute load average (2 cores)"
    )


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "serve":
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
