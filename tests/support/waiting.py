"""Polling with a deadline, for tests that wait on another process or thread."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll until ``check`` returns something truthy (a deadline against hangs, not a timing test)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)
