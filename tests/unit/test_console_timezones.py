"""The console's time zone rules (console/timezones.py): which zone, and wall-clock times to UTC
and back, across daylight saving changes."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from okyaku.console.timezones import chosen_zone, local_text, utc_text, zone_named

PARIS = ZoneInfo("Europe/Paris")


def test_only_real_iana_zones_are_taken() -> None:
    assert zone_named("Europe/Paris") == PARIS
    for bad in ("", None, "Mars/Olympus", "../../etc/passwd", "/etc/localtime", "x" * 65):
        assert zone_named(bad) is None
    assert chosen_zone("Mars/Olympus", "Asia/Tokyo") == ZoneInfo("Asia/Tokyo")  # the first valid one
    assert chosen_zone(None, "nope") == ZoneInfo("UTC")


def test_wall_clock_times_become_utc_with_the_offset_of_their_date() -> None:
    assert utc_text("2026-01-15T09:00", PARIS) == "2026-01-15T08:00:00+00:00"  # CET, UTC+1
    assert utc_text("2026-07-15T09:00", PARIS) == "2026-07-15T07:00:00+00:00"  # CEST, UTC+2
    assert utc_text("2026-07-15T09:00+05:00", PARIS) == "2026-07-15T09:00+05:00"  # its own offset wins
    assert utc_text("tomorrow", PARIS) == "tomorrow"  # left to the API's validation


def test_stored_moments_are_shown_on_the_wall_clock() -> None:
    assert local_text(datetime(2026, 7, 15, 7, 0, tzinfo=UTC), PARIS) == "2026-07-15T09:00"
    assert local_text(datetime(2026, 1, 15, 8, 0), PARIS) == "2026-01-15T09:00"  # naive: UTC
    for text in ("2026-03-29T01:30", "2026-10-25T02:30", "2026-10-25T04:00"):  # around both changes
        assert local_text(datetime.fromisoformat(utc_text(text, PARIS)), PARIS) == text
