"""SQS as the local runner emulates it: an event source's queue in memory, with visibility,
retries that back off, and redrive to a dead-letter list after ``maxReceiveCount``."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from okyaku.events.model import ChangeEvent
from okyaku.events.publishers import sqs_entry
from okyaku.lambda_events import SqsMessage
from okyaku.local.template import QueueSpec, SqsEventSource

logger = logging.getLogger(__name__)


@dataclass
class QueuedMessage(SqsMessage):
    """A message waiting in a local queue: Lambda's view of it, and when it is visible again."""

    visible_at: float = 0.0  # monotonic seconds


@dataclass
class DeadLetter:
    message_id: str
    function_id: str
    source_queue: str
    body: str
    receive_count: int
    error: str
    moved_at: str


def lambda_message_attributes(event: ChangeEvent) -> dict[str, Any]:
    """The change event's SQS message attributes (as SqsPublisher sends them), in Lambda's form."""
    attributes: dict[str, Any] = sqs_entry(0, event)["MessageAttributes"]
    return {
        name: {
            "stringValue": value["StringValue"],
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


class LocalQueue:
    """An SQS event source's queue, in memory: visibility, retries with backoff, redrive to a DLQ.

    Methods take ``now`` (monotonic seconds) so that the logic is testable without waiting.
    """

    def __init__(
        self,
        source: SqsEventSource,
        queue: QueueSpec | None,
        *,
        retry_delay_s: float = 1.0,
        dead_letters: list[DeadLetter] | None = None,
    ) -> None:
        self.source = source
        self.queue = queue
        self.retry_delay_s = retry_delay_s
        self.dead_letters = dead_letters if dead_letters is not None else []
        self.condition = threading.Condition()
        self._messages: list[QueuedMessage] = []
        self._in_flight: dict[str, QueuedMessage] = {}
        self.delivered = 0
        self.retried = 0

    @property
    def visibility_timeout_s(self) -> float:
        return float(self.queue.visibility_timeout_s if self.queue else 30)

    @property
    def max_receive_count(self) -> int | None:
        return self.queue.max_receive_count if self.queue else None

    def send(self, bodies: Sequence[tuple[str, dict[str, Any]]], now: float) -> list[str]:
        sent_at = int(time.time() * 1000)
        with self.condition:
            ids = []
            for body, attributes in bodies:
                message = QueuedMessage(str(uuid.uuid4()), body, attributes, sent_at, visible_at=now)
                self._messages.append(message)
                ids.append(message.message_id)
            self.condition.notify_all()
            return ids

    def visible_count(self, now: float) -> int:
        with self.condition:
            return sum(1 for m in self._messages if m.visible_at <= now)

    def next_visible_at(self) -> float | None:
        with self.condition:
            return min((m.visible_at for m in self._messages), default=None)

    def oldest_visible_since(self, now: float) -> float | None:
        with self.condition:
            return min((m.visible_at for m in self._messages if m.visible_at <= now), default=None)

    def receive(self, now: float, max_messages: int | None = None) -> list[QueuedMessage]:
        """Take up to a batch of visible messages; each is hidden until settled."""
        limit = max_messages or self.source.batch_size
        with self.condition:
            batch = [m for m in self._messages if m.visible_at <= now][:limit]
            received_at = int(time.time() * 1000)
            for message in batch:
                self._messages.remove(message)
                message.receive_count += 1
                message.first_received_at_ms = message.first_received_at_ms or received_at
                message.visible_at = now + self.visibility_timeout_s
                self._in_flight[message.message_id] = message
            return batch

    def settle(self, batch: Sequence[QueuedMessage], failed: set[str], now: float, error: str = "") -> None:
        """Delete what succeeded; put back what failed (after a backoff) or dead-letter it."""
        with self.condition:
            for message in batch:
                self._in_flight.pop(message.message_id, None)
                if message.message_id not in failed:
                    self.delivered += 1
                    continue
                limit = self.max_receive_count
                if limit is not None and message.receive_count >= limit:
                    self._dead_letter(message, error or "reported as failed")
                    continue
                self.retried += 1
                delay = min(self.retry_delay_s * 2 ** (message.receive_count - 1), self.visibility_timeout_s)
                message.visible_at = now + delay
                self._messages.append(message)
            self._messages.sort(key=lambda m: m.visible_at)
            self.condition.notify_all()

    def _dead_letter(self, message: QueuedMessage, error: str) -> None:
        dlq = (self.queue.dead_letter_queue if self.queue else None) or "dead-letters"
        self.dead_letters.append(
            DeadLetter(
                message_id=message.message_id,
                function_id=self.source.function_id,
                source_queue=self.source.queue,
                body=message.body,
                receive_count=message.receive_count,
                error=error[:2000],
                moved_at=datetime.now(UTC).isoformat(),
            )
        )
        logger.error(
            "%s: message %s failed %d times (maxReceiveCount); moved to %s: %s",
            self.source.function_id,
            message.message_id,
            message.receive_count,
            dlq,
            error[:500],
        )

    def pending(self) -> int:
        with self.condition:
            return len(self._messages) + len(self._in_flight)

    def busy(self, now: float) -> bool:
        """Messages ready now or being handled (not those waiting out a retry backoff)."""
        with self.condition:
            return bool(self._in_flight) or any(m.visible_at <= now for m in self._messages)
