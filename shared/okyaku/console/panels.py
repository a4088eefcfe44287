"""Dashboard panels other features contribute (anomalies and insights, ...)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class InsightPanel:
    """A panel on the dashboard from another feature (anomalies/insights hook here)."""

    title: str
    items: list[dict[str, Any]]  # each: {"text": ..., "href": optional link, "severity": optional}
    note: str = ""


# A provider reads one organization's insights in an organization-scoped session.
InsightProvider = Callable[["Session", uuid.UUID], InsightPanel | None]
