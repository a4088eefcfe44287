"""The bell's numbers: the signed-in user's unread notifications and how many of them are
critical. One indexed count per page render (the bell is on every page)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from okyaku.anomalies.models import Notification

if TYPE_CHECKING:
    from okyaku.console.services import ConsoleServices


def unread_counts(
    services: ConsoleServices, organization_id: uuid.UUID, user_id: uuid.UUID | None
) -> dict[str, int] | None:
    """None: no bell (notifications are switched off)."""
    if services.anomalies is None:
        return None
    if user_id is None:  # an API key of no user: notifications are per user
        return {"unread": 0, "critical": 0}
    with services.runtime.db.organization_scope(organization_id) as session:
        row = session.execute(
            select(func.count(), func.count().filter(Notification.severity == "critical")).where(
                Notification.user_id == user_id, Notification.read_at.is_(None)
            )
        ).one()
    return {"unread": int(row[0]), "critical": int(row[1])}
