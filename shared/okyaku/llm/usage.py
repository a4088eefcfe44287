"""In-memory token and call counters per (operation, model), for health and logs."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from okyaku.llm.types import Usage


class UsageMeter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, str], dict[str, int]] = defaultdict(
            lambda: {"calls": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
        )

    def record(self, operation: str, model: str, usage: Usage) -> None:
        with self._lock:
            counter = self._counters[(operation, model)]
            counter["calls"] += 1
            counter["prompt_tokens"] += usage.prompt_tokens
            counter["completion_tokens"] += usage.completion_tokens

    def record_failure(self, operation: str, model: str) -> None:
        with self._lock:
            self._counters[(operation, model)]["failures"] += 1

    def totals(self) -> Usage:
        with self._lock:
            return Usage(
                sum(c["prompt_tokens"] for c in self._counters.values()),
                sum(c["completion_tokens"] for c in self._counters.values()),
            )

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"operation": operation, "model": model, **counter}
                for (operation, model), counter in sorted(self._counters.items())
            ]
