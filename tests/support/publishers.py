"""Publishers for tests that host functions in-process (as the local runner does)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from okyaku.events.model import ChangeEvent


class CollectingPublisher:
    """Appends every event it is given to ``into``."""

    def __init__(self, into: list[ChangeEvent]) -> None:
        self.into = into

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        self.into.extend(events)


class FlakySqsClient:
    """An SQS client (boto3's, passed in) that is unreachable on some of its ``send_message_batch``
    calls (``fail_calls``, counted from 1): a publisher using it fails part-way through a publish."""

    def __init__(self, client: Any, *, fail_calls: Iterable[int]) -> None:
        self._client = client
        self.fail_calls = set(fail_calls)
        self.calls = 0

    def send_message_batch(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self.fail_calls:
            raise ConnectionError(f"could not connect to the SQS endpoint (call {self.calls})")
        return self._client.send_message_batch(**kwargs)
