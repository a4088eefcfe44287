"""Delivery semantics against a real SQS API (moto's server): partial retries and the DLQ."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from okyaku.embeddings.models import Embedding
from okyaku.embeddings.triggers import EmbeddingTriggers
from okyaku.events.publishers import SqsPublisher
from tests.support.hashing_embedder import HashingEmbedder


def lambda_event(messages, queue_arn):
    """What Lambda's event source mapping builds from received SQS messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": value["DataType"],
                    }
                    for name, value in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def poll(sqs, queue_url, queue_arn, handler, *, max_rounds=20):
    """Lambda's poller, in short: receive, invoke, delete what succeeded; failed messages become
    visible again (as when their visibility timeout ends) until the redrive policy moves them."""
    deliveries: dict[str, int] = {}  # body -> times the function saw it
    for _ in range(max_rounds):
        received = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not received:
            return deliveries
        for message in received:
            deliveries[message["Body"]] = deliveries.get(message["Body"], 0) + 1
        response = handler(lambda_event(received, queue_arn), None)
        failed = {f["itemIdentifier"] for f in response["batchItemFailures"]}
        for message in received:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    raise AssertionError("the queue never drained")


def make_queues(sqs, name):
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=name,
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return queue_url, queue_arn, dlq_url


def test_a_poison_message_ends_in_the_dlq_and_never_blocks_the_others(
    tenant, publisher, runtime, db, sqs, moto_endpoint
):
    queue_url, queue_arn, dlq_url = make_queues(sqs, "okyaku-embeddings-poison")
    for i in range(6):
        tenant.client.post("/api/v1/companies", json={"name": f"Harbour Freight {i}", "industry": "Shipping"})
    SqsPublisher(queue_url, endpoint_url=moto_endpoint).publish(publisher.events)  # as the relay would
    sqs.send_message(QueueUrl=queue_url, MessageBody="{this is not json")  # the poison

    function = EmbeddingTriggers(runtime, HashingEmbedder())
    deliveries = poll(sqs, queue_url, queue_arn, function.consume)

    assert deliveries.pop("{this is not json") == 2  # retried up to maxReceiveCount, then moved
    assert list(deliveries.values()) == [1] * 6  # the others were never retried
    with db.organization_scope(tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 6
    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    assert [m["Body"] for m in dead] == ["{this is not json"]
    queue_attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert queue_attrs["ApproximateNumberOfMessages"] == "0"
    assert queue_attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_message_that_fails_once_succeeds_on_retry_without_duplicates(
    tenant, publisher, runtime, db, sqs, moto_endpoint
):
    queue_url, queue_arn, dlq_url = make_queues(sqs, "okyaku-embeddings-retry")

    class FlakyEmbedder(HashingEmbedder):
        """Fails its first call (a model server restarting), then works."""

        def embed(self, texts):
            if self.calls == 0:
                self.calls += 1
                raise ConnectionError("model server restarting")
            return super().embed(texts)

    tenant.client.post("/api/v1/companies", json={"name": "Quayside Imports"})
    SqsPublisher(queue_url, endpoint_url=moto_endpoint).publish(publisher.events)
    SqsPublisher(queue_url, endpoint_url=moto_endpoint).publish(publisher.events)  # and a duplicate delivery
    embedder = FlakyEmbedder()
    function = EmbeddingTriggers(runtime, embedder)

    poll(sqs, queue_url, queue_arn, function.consume)

    with db.organization_scope(tenant.id) as session:
        assert session.scalar(select(func.count()).select_from(Embedding)) == 1
    assert sqs.receive_message(QueueUrl=dlq_url).get("Messages", []) == []
