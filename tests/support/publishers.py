"""Publishers for tests that host functions in-process (as the local runner does)."""

from __future__ import annotations

from collections.abc import Sequence

from okyaku.events.model import ChangeEvent


class CollectingPublisher:
    """Appends every event it is given to ``into``."""

    def __init__(self, into: list[ChangeEvent]) -> None:
        self.into = into

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        self.into.extend(events)
