"""A test HTTP function: answers 202 with the API Gateway event it received, a header and a cookie."""

import base64
import json
from typing import Any


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("rawPath", "").endswith("/binary"):
        return {"statusCode": 200, "body": base64.b64encode(b"\x00\xffpng").decode(), "isBase64Encoded": True}
    return {
        "statusCode": 202,
        "headers": {"content-type": "application/json", "x-function": context.function_name},
        "cookies": ["seen=1; Path=/"],
        "body": json.dumps(event),
    }
