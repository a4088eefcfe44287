"""Timing helpers the benches share: repeated timings, and their median and p95."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def stats(samples: list[float]) -> tuple[float, float]:
    """(median, p95) of the samples."""
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def timed(call: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds each of ``repeats`` calls took."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"
