"""The MCP function's settings (environment variables ``MCP_*``, documented in the README)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class McpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MCP_", env_file=None, extra="ignore", case_sensitive=False)

    rate_limit_per_minute: int = Field(
        default=120, ge=1, description="Requests to /mcp per API key per minute (per function instance)"
    )
    max_result_chars: int = Field(
        default=60_000, ge=2_000, description="A tool result's JSON is cut to about this size (rows dropped first)"
    )
    max_request_bytes: int = Field(default=1_048_576, ge=1024, description="Largest /mcp request body")
