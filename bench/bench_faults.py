"""Fault runs with counts, at a larger size than tests/integration/test_faults.py: duplicate
deliveries (one after the other and at once), a consumer crash mid-batch, Postgres restarted
mid-batch, LLM timeouts and the outbox relay with a queue failing part-way. The scenarios and the
counting are tests/support/faults.py's; this prints their table and the time each took.

On the embedded Postgres in ``.okyaku/bench-pg``, the scripted OpenAI-compatible server (LLM
timeout 0.25 s; one text in 8 answered late, twice) and moto's SQS server. ``FAULTS_SIZE``
(default 40) companies per scenario, each with a contact and an activity (3 change events each).

``python -m bench faults``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import boto3
from sqlalchemy import text

from bench._database import BENCH_DATADIR, _stop_server
from okyaku.db import Database
from okyaku.local.postgres import prepare_database, start_embedded_postgres
from tests.support import faults
from tests.support.faults import FaultCount, FaultRig
from tests.support.openai_server import ScriptedOpenAIServer


def main() -> None:
    size = int(os.environ.get("FAULTS_SIZE", "40"))
    from moto.server import ThreadedMotoServer

    from tests.conftest import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    logging.disable(logging.WARNING)  # the injected failures' warnings, by the hundred (the table says it all)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        os.environ.setdefault(name, value)
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    sqs = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    local = prepare_database(start_embedded_postgres(BENCH_DATADIR))
    db, owner = Database(local.app_url), Database(local.owner_url)
    rows: list[tuple[FaultCount, float | None]] = []
    try:
        with ScriptedOpenAIServer() as server, FaultRig.open(local, db, owner, server) as rig:
            runs: list[Callable[[], list[FaultCount]]] = [
                lambda: faults.duplicate_deliveries(rig, size),
                lambda: faults.concurrent_duplicates(rig, size),
                lambda: faults.consumer_crash(rig, size).counts,
                lambda: faults.postgres_restart(rig, size),
                lambda: faults.llm_timeouts(rig, size, every=8),
                lambda: [faults.relay_partial_failures(rig, size, sqs)],
            ]
            try:
                for run in runs:
                    started = time.perf_counter()
                    counts = run()
                    seconds = time.perf_counter() - started
                    rows += [(count, seconds if n == 0 else None) for n, count in enumerate(counts)]
            finally:
                with owner.session() as session:  # the bench leaves no organization behind
                    session.execute(text("DELETE FROM organizations WHERE id = ANY(:ids)"), {"ids": rig.organizations})
    finally:
        db.dispose()
        owner.dispose()
        _stop_server(BENCH_DATADIR)
        moto.stop()
        logging.disable(logging.NOTSET)
    print(f"{size} companies + contacts + activities per scenario; every consumer must read lost 0, applied twice 0")
    header = f"{'scenario/consumer':<36}{'events':>8}{'once':>8}{'lost':>6}{'twice':>7}{'messages':>10}{'deliv.':>8}"
    print(header + f"{'retried':>9}{'scenario':>9}")
    for count, seconds in rows:
        print(
            f"{count.scenario:<36}{count.events:>8}{count.applied_once:>8}{count.lost:>6}{count.twice:>7}"
            f"{count.messages:>10}{count.deliveries:>8}{count.retried:>9}"
            + (f"{seconds:>8.1f}s" if seconds is not None else "")
        )
    for count, _ in rows:
        print(count.line())
    bad = [count.scenario for count, _ in rows if not count.clean]
    print("all clean" if not bad else f"NOT CLEAN: {', '.join(bad)}")
