"""Cold import of each function's handler (``import app`` in a fresh interpreter, as a Lambda cold
start does) next to the framework floor measured in the same run: a handler importing only
fastapi, mangum, sqlalchemy and psycopg, and a bare standard-library handler.

``python -m bench cold_start`` (``BENCH_COLD_RUNS`` runs per handler, default 7; the runs are
interleaved so that machine noise hits every row alike). Goal: every HTTP function within 150 ms
of the floor. For each function it lists what it imports beyond the floor that costs most
(``-X importtime``, self time), which is where to look when a function misses the goal.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from okyaku.local.template import parse_template

ROOT = Path(__file__).resolve().parents[1]
GOAL_MS = 150.0
# The floor on a quiet machine (README figures): on a busy one every import is slower alike, so the
# goal is also judged as a ratio to the floor measured in the same run, 1 + 150 / 447 ≈ 1.34.
QUIET_FLOOR_MS = 447.0
GOAL_RATIO = 1 + GOAL_MS / QUIET_FLOOR_MS
# Wall time and this process's CPU time of the import: on a machine shared with other work the CPU
# time is the steadier figure (time spent waiting for a core is not counted in it).
TIMER = (
    "import time, sys\n"
    "started, cpu = time.perf_counter(), time.process_time()\n"
    "import app\n"
    "sys.stdout.write(f'{(time.perf_counter() - started) * 1000} {(time.process_time() - cpu) * 1000}')\n"
)
FLOOR_APP = """
import fastapi, mangum, sqlalchemy, psycopg
from fastapi import FastAPI
from mangum import Mangum

app = FastAPI()


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}


handler = Mangum(app, lifespan="off")
"""
ORM_FLOOR_APP = "import sqlalchemy.orm, sqlalchemy.dialects.postgresql\n" + FLOOR_APP
# The floor with the cyclic collector paused during the import, as the HTTP handlers do: what that
# trick alone is worth, so that it is not mistaken for less work done by the handlers.
GC_FLOOR_APP = "import gc\ngc.disable()\n" + FLOOR_APP + "gc.freeze()\ngc.enable()\n"
BARE_APP = """
import json


def handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"ok": True})}
"""
FLOOR_IMPORTS = "import fastapi, mangum, sqlalchemy, psycopg\nfrom fastapi import FastAPI\nfrom mangum import Mangum\n"
# Imported before the timer starts: the handler's own objects are then built with the collector running.
GC_RUNNING = "import contextlib, okyaku.coldstart\nokyaku.coldstart.built_once = contextlib.nullcontext\n"
# What a function imports at its first request rather than at cold start, timed as a row of its own
# (import app + these), so that deferring an import does not hide its cost.
FIRST_REQUEST_IMPORTS = {"McpFunction": "import okyaku.mcp.server, mcp.server.streamable_http_manager\n"}


@dataclass
class Row:
    name: str
    code_dir: Path
    triggers: str
    samples: list[float] = field(default_factory=list)  # wall ms
    cpu_samples: list[float] = field(default_factory=list)  # this process's CPU ms
    first_request: str = ""  # imported after app, inside the timing
    gc_paused: bool = True  # False: okyaku.coldstart.built_once made a no-op, to see what the trick is worth
    pythonpath: str | None = None  # another checkout's shared/ (BENCH_COLD_COMPARE), else the inherited one

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu_samples)

    @property
    def judged(self) -> bool:
        """A row the goal applies to: a function's cold start (not a reference, not a first request)."""
        return self.triggers != "reference" and not self.first_request and self.gc_paused and not self.pythonpath


def environment(write_bytecode: bool = False) -> dict[str, str]:
    # What a function sees at import: no database is reached while importing. PYTHONPATH is kept so
    # that a checkout's own shared/ is measured rather than whichever one the venv was installed from.
    keep = ("PATH", "HOME", "LANG", "TMPDIR", "PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env if write_bytecode else env | {"PYTHONDONTWRITEBYTECODE": "1"}


def measure(row: Row, write_bytecode: bool = False) -> tuple[float, float]:
    """(wall ms, CPU ms) of one cold ``import app``."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            ("" if row.gc_paused else GC_RUNNING) + TIMER.replace("import app\n", "import app\n" + row.first_request),
        ],
        cwd=row.code_dir,
        env=environment(write_bytecode) | ({"PYTHONPATH": row.pythonpath} if row.pythonpath else {}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{row.name}: import failed:\n{result.stderr[-2000:]}")
    wall, cpu = result.stdout.split()
    return float(wall), float(cpu)


def heaviest_beyond_floor(code_dir: Path, count: int = 4) -> list[tuple[str, float]]:
    """The modules ``import app`` loads beyond the floor, by self time."""
    script = FLOOR_IMPORTS + "import app\n"
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script],
        cwd=code_dir,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, _, name = line[len("import time:") :].split("|")
            rows.append((int(self_us), name.rstrip()))
    top_level = [i for i, (_, name) in enumerate(rows) if not name.startswith("  ")]
    app_index = max(i for i in top_level if rows[i][1].strip() == "app")
    first = max((i for i in top_level if i < app_index), default=-1) + 1
    mine = sorted(rows[first : app_index + 1], key=lambda r: -r[0])
    return [(name.strip(), self_us / 1000) for self_us, name in mine[:count]]


def verdict(row: Row, delta: float) -> str:
    if row.triggers == "reference":
        return ""
    if "http" not in row.triggers:
        # Queue and schedule functions: below the floor (they need no web framework at import).
        return "ok" if delta <= 0 else "ABOVE FLOOR"
    return "ok" if delta <= GOAL_MS else "MISSED"


def print_table(rows: list[Row], references: dict[str, Row], runs: int) -> None:
    floor, cpu_floor = references["floor"].median, references["floor"].cpu_median
    load = os.getloadavg()[0]
    print(
        f"cold `import app`, median of {runs} fresh interpreters (ms), load average {load:.1f} on "
        f"{os.cpu_count()} cores; goal: HTTP <= floor + {GOAL_MS:.0f}, queue-only below the floor"
    )
    print("(cpu: the process's own CPU time; the steadier figure when the machine is shared)")
    print(
        f"{'handler':<32}{'triggers':<18}{'median':>8}{'min':>7}{'max':>7}{'vs floor':>9}  {'goal':<12}"
        f"{'cpu':>6}{'vs floor':>9}  {'goal':<12}{'x floor':>8}"
    )
    for row in rows:
        delta, cpu_delta = row.median - floor, row.cpu_median - cpu_floor
        print(
            f"{row.name:<32}{row.triggers:<18}{row.median:>8.0f}{min(row.samples):>7.0f}{max(row.samples):>7.0f}"
            f"{delta:>+9.0f}  {verdict(row, delta):<12}{row.cpu_median:>6.0f}{cpu_delta:>+9.0f}  "
            f"{verdict(row, cpu_delta):<12}{row.cpu_median / cpu_floor:>8.2f}"
        )
    judged = [r for r in rows if r.judged]
    gc_on = [r for r in rows if not r.gc_paused]
    wall_ok = sum(verdict(r, r.median - floor) == "ok" for r in judged)
    cpu_ok = sum(verdict(r, r.cpu_median - cpu_floor) == "ok" for r in judged)
    gc_on_ok = sum(verdict(r, r.cpu_median - cpu_floor) == "ok" for r in gc_on)

    def by_ratio(r: Row) -> str:
        return verdict(r, (r.cpu_median / cpu_floor - 1) * QUIET_FLOOR_MS)

    ratio_ok = sum(by_ratio(r) == "ok" for r in judged)
    worst = max((r for r in judged if "http" in r.triggers), key=lambda r: r.median - floor, default=None)
    print(
        f"GOAL: {wall_ok} of {len(judged)} functions meet it by wall time, {cpu_ok} of {len(judged)} by CPU time"
        + (f"; slowest HTTP function {worst.name} {worst.median - floor:+.0f} ms wall" if worst else "")
        + (f" (load {load:.1f}: trust the CPU column)" if load > (os.cpu_count() or 1) * 0.5 else "")
    )
    print(
        f"      by CPU time as a ratio to the floor (<= {GOAL_RATIO:.2f}, the goal over a quiet "
        f"{QUIET_FLOOR_MS:.0f} ms floor): {ratio_ok} of {len(judged)}"
        + (f"; missed by {', '.join(r.name for r in judged if by_ratio(r) != 'ok')}" if ratio_ok < len(judged) else "")
    )
    if gc_on:
        gc_ratio_ok = sum(by_ratio(r) == "ok" for r in gc_on)
        print(
            f"      without the gc pause: {gc_on_ok} of {len(gc_on)} HTTP functions meet it by CPU time, "
            f"{gc_ratio_ok} of {len(gc_on)} by the ratio"
        )


def main() -> None:
    runs = int(os.environ.get("BENCH_COLD_RUNS", "7"))
    # Each HTTP function also with the gc pause undone (BENCH_COLD_GC_BOTH=0 skips those rows).
    gc_both = os.environ.get("BENCH_COLD_GC_BOTH", "1") != "0"
    # BENCH_COLD_COMPARE=/path/to/another/checkout: each function of that checkout too, interleaved
    # with this one's (a before/after on a shared machine), as "<name> (other)" rows.
    other = Path(os.environ["BENCH_COLD_COMPARE"]).resolve() if os.environ.get("BENCH_COLD_COMPARE") else None
    template = parse_template(ROOT / "template.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        references = {}
        for name, source in (
            ("floor", FLOOR_APP),
            ("floor + sqlalchemy.orm", ORM_FLOOR_APP),
            ("floor, gc paused", GC_FLOOR_APP),
            ("bare stdlib", BARE_APP),
        ):
            folder = Path(tmp) / name.replace(" ", "_").replace("+", "plus").replace(".", "_").replace(",", "")
            folder.mkdir()
            (folder / "app.py").write_text(textwrap.dedent(source))
            references[name] = Row(name, folder, "reference")
        functions = []
        for logical_id, spec in template.functions.items():
            triggers = []
            if any(r.function_id == logical_id for r in template.routes):
                triggers.append("http")
            if any(s.function_id == logical_id for s in template.sqs_sources):
                triggers.append("sqs")
            if any(s.function_id == logical_id for s in template.schedules):
                triggers.append("schedule")
            functions.append(Row(logical_id, spec.code_dir, "+".join(triggers)))
            if other is not None and (other / spec.code_dir.relative_to(ROOT)).is_dir():
                functions.append(
                    Row(
                        f"{logical_id} (other)",
                        other / spec.code_dir.relative_to(ROOT),
                        "+".join(triggers),
                        pythonpath=os.pathsep.join([str(other / "shared"), str(other)]),
                    )
                )
            if gc_both and "http" in triggers:
                functions.append(Row(f"{logical_id} gc on", spec.code_dir, "+".join(triggers), gc_paused=False))
            if logical_id in FIRST_REQUEST_IMPORTS:
                name = f"{logical_id} + 1st request"
                functions.append(
                    Row(name, spec.code_dir, "+".join(triggers), first_request=FIRST_REQUEST_IMPORTS[logical_id])
                )
        rows = [*references.values(), *functions]
        # Warm the file cache once, outside the figures, and write the bytecode of sources edited since
        # their last import, so that every run loads .pyc files as the dependencies do (otherwise a
        # recently edited module is compiled in every run and the figures depend on who imported last).
        for row in rows:
            measure(row, write_bytecode=True)
        for _ in range(runs):
            for row in rows:
                wall, cpu = measure(row)
                row.samples.append(wall)
                row.cpu_samples.append(cpu)
        print_table(rows, references, runs)
        print("\nheaviest modules each function imports beyond the floor (self ms, -X importtime):")
        for row in functions:
            if not row.judged:
                continue
            heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in heaviest_beyond_floor(row.code_dir))
            print(f"  {row.name:<22} {heavy}")


if __name__ == "__main__":
    main()
