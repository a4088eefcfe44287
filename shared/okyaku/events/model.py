"""The change event as it travels on the queue (the SQS message body)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Operation = Literal["created", "updated", "deleted"]


class ChangeEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    organization_id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    operation: Operation
    changed_fields: list[str]
    version: int
    occurred_at: datetime
