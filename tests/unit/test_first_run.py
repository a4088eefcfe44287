"""The first run's bookkeeping (okyaku.local.first_run): steps in order, one line each, done steps
recorded and not done again, a failing step retried then reported while the others still run, a
crash resumed from the first step not done. The services themselves are exercised end to end in
tests/e2e/test_first_run.py; here the function hosts are small fakes with real modules."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from okyaku.local import first_run
from okyaku.local.first_run import FirstRunState, Step, run_first_run


class FakeHost:
    """A function host whose handler module holds ``calls`` (what the steps did) and whose own
    environment is entered around each step."""

    def __init__(self, name: str) -> None:
        self.module: ModuleType | None = None
        self.name = name
        self.inside = False
        self.imports = 0

    @property
    def handler(self) -> Any:
        if self.module is None:
            self.imports += 1
            self.module = ModuleType(self.name)
            self.module.calls = []  # type: ignore[attr-defined]
        return lambda event, context: None

    @contextmanager
    def own_environment(self) -> Iterator[None]:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False


def recording(name: str, host: FakeHost, *, fail_times: int = 0) -> Step:
    failures = {"left": fail_times}

    def run(module: ModuleType, organization_id: uuid.UUID) -> Mapping[str, Any]:
        assert host.inside, "a step runs inside its function's own environment"
        module.calls.append((name, organization_id))  # type: ignore[attr-defined]
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError(f"{name} broke")
        return {"step": name}

    return Step(name, f"doing {name}", host.name, run)


@pytest.fixture(autouse=True)
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(first_run, "RETRY_DELAY_S", 0.0)


def test_steps_run_in_order_once_with_a_line_each(tmp_path: Path) -> None:
    org = uuid.uuid4()
    a, b = FakeHost("A"), FakeHost("B")
    steps = (recording("one", a), recording("two", b), recording("three", a))
    lines: list[str] = []
    state = tmp_path / "first-run.json"

    outcomes = run_first_run({"A": a, "B": b}, org, state, steps=steps, say=lines.append)

    assert [(o.name, o.status) for o in outcomes] == [("one", "done"), ("two", "done"), ("three", "done")]
    assert a.module is not None and b.module is not None
    assert a.module.calls == [("one", org), ("three", org)] and b.module.calls == [("two", org)]
    assert a.imports == 1  # the module is imported once, as the runner would
    step_lines = [line for line in lines if ": done in" in line]
    assert [line.split(":")[1].strip() for line in step_lines] == ["doing one", "doing two", "doing three"]
    assert lines[-1].strip().startswith("First run: all done in")
    saved = json.loads(state.read_text())
    assert saved["organization_id"] == str(org) and list(saved["steps"]) == ["one", "two", "three"]
    assert saved["steps"]["two"]["result"] == {"step": "two"}

    again: list[str] = []
    second = run_first_run({"A": a, "B": b}, org, state, steps=steps, say=again.append)
    assert [o.status for o in second] == ["skipped"] * 3
    assert again == ["  First run: done at an earlier start (3 steps in first-run.json)"]
    assert a.module.calls == [("one", org), ("three", org)]  # nothing done twice


def test_a_failing_step_is_retried_then_reported_and_the_others_still_run(tmp_path: Path) -> None:
    org = uuid.uuid4()
    host = FakeHost("A")
    state = tmp_path / "first-run.json"
    flaky = recording("flaky", host, fail_times=1)  # passes on its second attempt
    broken = recording("broken", host, fail_times=99)
    steps = (flaky, broken, recording("after", host))
    lines: list[str] = []

    outcomes = run_first_run({"A": host}, org, state, steps=steps, say=lines.append)

    assert [(o.name, o.status) for o in outcomes] == [("flaky", "done"), ("broken", "failed"), ("after", "done")]
    assert "RuntimeError: broken broke" in (outcomes[1].error or "")
    assert any("doing broken: FAILED" in line for line in lines)
    assert any("attempt 1 failed" in line for line in lines)
    assert "failed: broken" in lines[-1]
    assert set(json.loads(state.read_text())["steps"]) == {"flaky", "after"}

    # The next start tries only what is not done.
    fixed = (flaky, recording("broken", host), recording("after", host))
    assert host.module is not None
    host.module.calls.clear()  # type: ignore[attr-defined]
    retried = run_first_run({"A": host}, org, state, steps=fixed, say=lambda _: None)
    assert [(o.name, o.status) for o in retried] == [("flaky", "skipped"), ("after", "skipped"), ("broken", "done")]
    assert host.module.calls == [("broken", org)]  # type: ignore[attr-defined]


def test_a_crash_midway_resumes_and_another_organization_starts_afresh(tmp_path: Path) -> None:
    org = uuid.uuid4()
    host = FakeHost("A")
    state_path = tmp_path / "first-run.json"
    # What a process killed during the second step leaves: the first step recorded, nothing else.
    FirstRunState.load(state_path, org).mark_done("one", 1.5, {"step": "one"})
    assert not list(tmp_path.glob("*.partial"))
    steps = (recording("one", host), recording("two", host))

    outcomes = run_first_run({"A": host}, org, state_path, steps=steps, say=lambda _: None)
    assert [(o.name, o.status) for o in outcomes] == [("one", "skipped"), ("two", "done")]

    other = uuid.uuid4()  # the database was reset: a new demo organization
    fresh = run_first_run({"A": host}, other, state_path, steps=steps, say=lambda _: None)
    assert [o.status for o in fresh] == ["done", "done"]
    assert json.loads(state_path.read_text())["organization_id"] == str(other)


def test_a_step_whose_function_the_template_lacks_is_left_out_and_stop_ends_it(tmp_path: Path) -> None:
    host = FakeHost("A")
    stop = threading.Event()
    stop.set()
    steps = (recording("one", host), Step("missing", "needs B", "B", lambda m, o: {}))
    lines: list[str] = []
    outcomes = run_first_run({"A": host}, uuid.uuid4(), tmp_path / "s.json", steps=steps, say=lines.append, stop=stop)
    assert host.module is None  # stopped before the first step
    assert "stopped" in lines[-1]
    assert [(o.name, o.status) for o in outcomes] == [("missing", "unavailable")]
