"""A test consumer: appends every event it receives to $RECORDER_OUTPUT (one JSON line each).

Fails chosen change events to exercise the runner's retries: records whose
"entity_type:operation" equals $RECORDER_FAIL_ONCE fail on their first delivery only; those
equal to $RECORDER_FAIL_ALWAYS fail every time (and end in the dead-letter list).
"""

import json
import os
import threading
from typing import Any

from okyaku.events import decode_change_event

_write_lock = threading.Lock()


def _append(entry: dict[str, Any]) -> None:
    with _write_lock, open(os.environ["RECORDER_OUTPUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any] | None:
    if "Records" not in event:
        _append({"kind": "event", "event": event, "function": context.function_name})
        return None
    fail_once = os.environ.get("RECORDER_FAIL_ONCE", "")
    fail_always = os.environ.get("RECORDER_FAIL_ALWAYS", "")
    records = []
    failures = []
    for record in event["Records"]:
        change = decode_change_event(record["body"])
        key = f"{change.entity_type}:{change.operation}"
        receive_count = int(record["attributes"]["ApproximateReceiveCount"])
        if key == fail_always or (key == fail_once and receive_count == 1):
            failures.append({"itemIdentifier": record["messageId"]})
        records.append(
            {
                "message_id": record["messageId"],
                "receive_count": receive_count,
                "event_source": record["eventSource"],
                "event_source_arn": record["eventSourceARN"],
                "entity_type": change.entity_type,
                "entity_id": str(change.entity_id),
                "operation": change.operation,
                "enveloped": "detail-type" in json.loads(record["body"]),
            }
        )
    _append({"kind": "sqs", "records": records, "failed": [f["itemIdentifier"] for f in failures]})
    return {"batchItemFailures": failures}
