"""What the model server is and can do, learned once per process: which server (Ollama, llama.cpp
or another OpenAI-compatible one), its context window per request, and whether it decodes
structured output against a JSON schema (``response_format: json_schema``).

- llama.cpp: ``GET /props`` gives ``default_generation_settings.n_ctx`` (per slot); it constrains
  output to a JSON schema with a grammar.
- Ollama: ``GET /api/version``; ``POST /api/show`` gives the model's ``num_ctx`` parameter when a
  Modelfile sets one, else the server's default applies (4,096 tokens since 0.6, 2,048 before; an
  ``OLLAMA_CONTEXT_LENGTH`` set on the server is not visible through its API: set OLLAMA_NUM_CTX).
  Ollama ≥ 0.5 decodes against a JSON schema.
- ``OLLAMA_NUM_CTX`` (> 0) overrides whatever was learned.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger(__name__)

ServerKind = Literal["ollama", "llama.cpp", "unknown"]
OLLAMA_DEFAULT_CONTEXT = 4096
OLLAMA_OLD_DEFAULT_CONTEXT = 2048


@dataclass(frozen=True)
class ServerInfo:
    kind: ServerKind
    version: str | None
    context_window: int | None  # tokens one request may use (prompt + answer); None: not known
    context_source: str
    json_schema: bool  # constrained decoding against a JSON schema
    model_context_length: int | None = None  # what the model was trained for (Ollama's model_info)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": self.version,
            "context_window": self.context_window,
            "context_source": self.context_source,
            "json_schema": self.json_schema,
            "model_context_length": self.model_context_length,
        }


def root_url(base_url: str) -> str:
    """The server's root from the OpenAI-compatible base URL (``…/v1``)."""
    return re.sub(r"/v1/?$", "", base_url.rstrip("/"))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version)[:3])


class ServerUnreachable(Exception):
    """The server did not answer the probe (it may be down): nothing is learned, try later."""


async def detect_server(http: Any, base_url: str, model: str, num_ctx_override: int = 0) -> ServerInfo:
    """Ask the server what it is; ``http`` is an ``httpx.AsyncClient``. Raises
    :class:`ServerUnreachable` when it cannot be reached at all."""
    import httpx

    root = root_url(base_url)
    try:
        info = await _ollama(http, root, model) or await _llama_cpp(http, root)
    except httpx.TransportError as error:
        raise ServerUnreachable(str(error) or type(error).__name__) from error
    if info is None:
        info = ServerInfo("unknown", None, None, "unknown (neither Ollama nor llama.cpp answered)", False)
    if num_ctx_override > 0:
        info = ServerInfo(
            info.kind, info.version, num_ctx_override, "OLLAMA_NUM_CTX", info.json_schema, info.model_context_length
        )
    return info


async def _json(http: Any, method: str, url: str, **kwargs: Any) -> Any:
    response = await http.request(method, url, **kwargs)
    if response.status_code != 200:
        return None
    try:
        return response.json()
    except ValueError:
        return None


async def _ollama(http: Any, root: str, model: str) -> ServerInfo | None:
    version_body = await _json(http, "GET", f"{root}/api/version")
    if not isinstance(version_body, dict) or "version" not in version_body:
        return None
    version = str(version_body["version"])
    parts = _version_tuple(version)
    json_schema = parts >= (0, 5)
    default = OLLAMA_DEFAULT_CONTEXT if parts >= (0, 6) else OLLAMA_OLD_DEFAULT_CONTEXT
    show = await _json(http, "POST", f"{root}/api/show", json={"model": model})
    trained = None
    num_ctx = None
    if isinstance(show, dict):
        for key, value in (show.get("model_info") or {}).items():
            if str(key).endswith(".context_length") and isinstance(value, int):
                trained = value
        match = re.search(r"(?m)^\s*num_ctx\s+(\d+)", str(show.get("parameters") or ""))
        if match:
            num_ctx = int(match.group(1))
    if num_ctx is not None:
        context, source = num_ctx, "the model's num_ctx (Ollama /api/show)"
    else:
        context, source = default, f"Ollama {version}'s default context"
    if trained is not None:
        context = min(context, trained)
    return ServerInfo("ollama", version, context, source, json_schema, trained)


async def _llama_cpp(http: Any, root: str) -> ServerInfo | None:
    props = await _json(http, "GET", f"{root}/props")
    if not isinstance(props, dict) or "default_generation_settings" not in props:
        return None
    settings = props.get("default_generation_settings") or {}
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    version = props.get("build_info")
    return ServerInfo(
        "llama.cpp",
        str(version) if version else None,
        int(n_ctx) if isinstance(n_ctx, int) and n_ctx > 0 else None,
        "llama.cpp /props (n_ctx per slot)",
        True,
    )
