"""Where change events go after commit: an EventBridge bus (fanned out by rules to one queue
per consumer) or one SQS queue when configured, nowhere (left pending for the relay) otherwise.
(The local runner hands its runtimes its own publisher: see ``okyaku.runtime``.)"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from okyaku.aws import boto3_client
from okyaku.config import Settings
from okyaku.events.envelope import eventbridge_entry
from okyaku.events.model import ChangeEvent

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class EventPublisher(Protocol):
    def publish(self, events: Sequence[ChangeEvent]) -> None:
        """Deliver every event or raise. A plain raise leaves them all pending; a
        :class:`PublishFailed` names those that were delivered before the failure, and only the
        others stay pending (so a failure part-way does not send the first ones twice)."""


class PublishFailed(RuntimeError):
    """Publishing stopped part-way: ``published`` holds the ids of the events that went out."""

    def __init__(self, message: str, published: Iterable[uuid.UUID] = ()) -> None:
        super().__init__(message)
        self.published: frozenset[uuid.UUID] = frozenset(published)


def published_before_failure(error: BaseException) -> frozenset[uuid.UUID]:
    """The events a failed ``publish`` did deliver (none, unless it said so)."""
    return error.published if isinstance(error, PublishFailed) else frozenset()


class SqsPublisher:
    """Sends events in batches of 10 (the SQS limit); raises if any entry fails."""

    def __init__(
        self,
        queue_url: str,
        client: SQSClient | None = None,
        *,
        endpoint_url: str = "",
        region: str = "us-east-1",
    ) -> None:
        self.queue_url = queue_url
        self._client = client
        self._endpoint_url = endpoint_url
        self._region = region

    @property
    def client(self) -> SQSClient:
        if self._client is None:
            self._client = boto3_client("sqs", endpoint_url=self._endpoint_url, region=self._region)
        return self._client

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        sent: list[uuid.UUID] = []
        for start in range(0, len(events), 10):
            batch = events[start : start + 10]
            try:
                response = self.client.send_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[sqs_entry(i, event) for i, event in enumerate(batch)],
                )
            except Exception as error:  # the earlier batches are out: say so, or they are sent again
                raise PublishFailed(
                    f"SQS unreachable after {len(sent)} of {len(events)} events: {error}", sent
                ) from error
            failed = response.get("Failed", [])
            sent += [batch[int(entry["Id"])].event_id for entry in response.get("Successful", [])]
            if failed:
                raise PublishFailed(f"SQS rejected {len(failed)} of {len(batch)} events: {failed[0]}", sent)


def sqs_entry(index: int, event: ChangeEvent) -> Any:
    return {
        "Id": str(index),
        "MessageBody": event.model_dump_json(),
        "MessageAttributes": {
            "entity_type": {"DataType": "String", "StringValue": event.entity_type},
            "operation": {"DataType": "String", "StringValue": event.operation},
        },
    }


class PutEventsClient(Protocol):
    def put_events(self, *, Entries: Sequence[Any]) -> Any: ...  # boto3 names it Entries


class EventBridgePublisher:
    """Puts events on an EventBridge bus in batches of 10 (the PutEvents limit); raises if any
    entry fails, so the outbox keeps them all (at least once: consumers are idempotent)."""

    def __init__(
        self,
        bus_name: str,
        client: PutEventsClient | None = None,
        *,
        endpoint_url: str = "",
        region: str = "us-east-1",
    ) -> None:
        self.bus_name = bus_name
        self._client = client
        self._endpoint_url = endpoint_url
        self._region = region

    @property
    def client(self) -> PutEventsClient:
        if self._client is None:
            self._client = boto3_client("events", endpoint_url=self._endpoint_url, region=self._region)
        return self._client

    def publish(self, events: Sequence[ChangeEvent]) -> None:
        sent: list[uuid.UUID] = []
        for start in range(0, len(events), 10):
            batch = events[start : start + 10]
            try:
                response = self.client.put_events(Entries=[eventbridge_entry(event, self.bus_name) for event in batch])
            except Exception as error:  # the earlier batches are out: say so, or they are sent again
                raise PublishFailed(
                    f"EventBridge unreachable after {len(sent)} of {len(events)} events: {error}", sent
                ) from error
            failed = int(response.get("FailedEntryCount") or 0)
            if failed:
                # The result entries are in the order of the request's: an EventId means it was put.
                results = list(response.get("Entries", []))
                sent += [
                    event.event_id
                    for event, result in zip(batch, results, strict=False)
                    if result.get("EventId") and not result.get("ErrorCode")
                ]
                errors = [e for e in results if e.get("ErrorCode")]
                first = errors[0] if errors else {}
                raise PublishFailed(
                    f"EventBridge rejected {failed} of {len(batch)} events: "
                    f"{first.get('ErrorCode')}: {first.get('ErrorMessage')}",
                    sent,
                )
            sent += [event.event_id for event in batch]


def publisher_from_settings(settings: Settings) -> EventPublisher | None:
    if settings.change_events_bus_name:
        return EventBridgePublisher(
            settings.change_events_bus_name,
            endpoint_url=settings.aws_endpoint_url,
            region=settings.aws_region,
        )
    if settings.change_events_queue_url:
        return SqsPublisher(
            settings.change_events_queue_url,
            endpoint_url=settings.aws_endpoint_url,
            region=settings.aws_region,
        )
    return None  # events stay pending until a relay with a queue publishes them
