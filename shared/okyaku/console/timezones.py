"""The time zone console forms and pages use for dates and times.

Users have no time zone of their own in Okyaku, and the organization's clock is a deployment
setting (``AI_CHAT_TIMEZONE``, what the chat calls "today"). So the console uses the browser's
zone when it knows it: forms.js stores ``Intl.DateTimeFormat().resolvedOptions().timeZone`` in
the ``okyaku_tz`` cookie; without JavaScript (or before the first page has run it) the
organization's clock. A form carries the zone it was rendered in (the hidden ``tz`` field), so
what it shows and what it sends are read in one zone even when the cookie changes in between.

Pure functions: a ``datetime-local`` value is a wall-clock time without an offset."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

COOKIE = "okyaku_tz"
FIELD = "tz"  # the hidden form field with the zone a form was rendered in
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> shows and sends


def zone_named(name: str | None) -> ZoneInfo | None:
    """The IANA zone ``name`` ("Europe/Paris"), or None when it is not one."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def chosen_zone(*names: str | None) -> ZoneInfo:
    """The first valid zone of ``names`` (most specific first), else UTC."""
    for name in names:
        zone = zone_named(name)
        if zone is not None:
            return zone
    return ZoneInfo("UTC")


def local_text(value: datetime, zone: ZoneInfo) -> str:
    """A stored moment as a ``datetime-local`` control shows it, on the wall clock of ``zone``."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return aware.astimezone(zone).strftime(LOCAL_FORMAT)


def utc_text(text: str, zone: ZoneInfo) -> str:
    """A ``datetime-local`` value typed on the wall clock of ``zone``, as an ISO 8601 moment in
    UTC. A value with its own offset, or one that is not a date-time, is returned unchanged (the
    API's validation has the last word on it)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        return text
    # fold=0: a wall-clock time that happens twice (the autumn change) is the first one.
    return parsed.replace(tzinfo=zone).astimezone(UTC).isoformat()
