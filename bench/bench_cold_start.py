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
TIMER = (
    "import time, sys\n"
    "started = time.perf_counter()\n"
    "import app\n"
    "sys.stdout.write(str((time.perf_counter() - started) * 1000))\n"
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
# What a function imports at its first request rather than at cold start, timed as a row of its own
# (import app + these), so that deferring an import does not hide its cost.
FIRST_REQUEST_IMPORTS = {"McpFunction": "import okyaku.mcp.server, mcp.server.streamable_http_manager\n"}


@dataclass
class Row:
    name: str
    code_dir: Path
    triggers: str
    samples: list[float] = field(default_factory=list)
    first_request: str = ""  # imported after app, inside the timing

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


def environment(write_bytecode: bool = False) -> dict[str, str]:
    # What a function sees at import: no database is reached while importing.
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    return env if write_bytecode else env | {"PYTHONDONTWRITEBYTECODE": "1"}


def measure(row: Row, write_bytecode: bool = False) -> float:
    result = subprocess.run(
        [sys.executable, "-c", TIMER.replace("import app\n", "import app\n" + row.first_request)],
        cwd=row.code_dir,
        env=environment(write_bytecode),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{row.name}: import failed:\n{result.stderr[-2000:]}")
    return float(result.stdout)


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


def main() -> None:
    runs = int(os.environ.get("BENCH_COLD_RUNS", "7"))
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
                row.samples.append(measure(row))

        floor = references["floor"].median
        print(f"cold `import app`, median of {runs} fresh interpreters (ms); goal: HTTP <= floor + {GOAL_MS:.0f}")
        print(f"{'handler':<24}{'triggers':<18}{'median':>8}{'min':>8}{'max':>8}{'vs floor':>10}  goal")
        for row in rows:
            delta = row.median - floor
            goal = "" if row.triggers == "reference" else ("ok" if delta <= GOAL_MS else "MISSED")
            if row.triggers != "reference" and "http" not in row.triggers:
                goal = "(not HTTP)"
            print(
                f"{row.name:<24}{row.triggers:<18}{row.median:>8.0f}{min(row.samples):>8.0f}"
                f"{max(row.samples):>8.0f}{delta:>+10.0f}  {goal}"
            )
        print("\nheaviest modules each function imports beyond the floor (self ms, -X importtime):")
        for row in functions:
            if row.first_request:
                continue
            heavy = ", ".join(f"{name} {ms:.0f}" for name, ms in heaviest_beyond_floor(row.code_dir))
            print(f"  {row.name:<22} {heavy}")


if __name__ == "__main__":
    main()
