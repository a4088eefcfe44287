"""A test function: answers (to any trigger) with the settings it read at its cold start and now,
and the process that ran it."""

import json
import os
from typing import Any

from okyaku.config import Settings, get_settings


def _seen(settings: Settings) -> dict[str, Any]:
    return {
        "llm_timeout_s": settings.llm_timeout_s,
        "llm_max_retries": settings.llm_max_retries,
        "ollama_base_url": settings.ollama_base_url,
    }


AT_IMPORT = _seen(get_settings())


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    body = {"function": context.function_name, "pid": os.getpid(), "import": AT_IMPORT, "call": _seen(get_settings())}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
