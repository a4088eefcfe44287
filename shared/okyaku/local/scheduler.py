"""The local runner's scheduler: when each enabled schedule rule fires next."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from okyaku.local.template import ScheduleEvent


class Scheduler:
    """Next fire times of the enabled rules; ``due(now)`` returns the rules to fire now."""

    def __init__(self, rules: Sequence[ScheduleEvent], start: datetime) -> None:
        self.start = start
        self.rules = {rule.rule_name: rule for rule in rules}
        self.next_fire: dict[str, datetime | None] = {
            rule.rule_name: rule.schedule.next_fire(start, start) if rule.enabled else None for rule in rules
        }

    def due(self, now: datetime) -> list[tuple[ScheduleEvent, datetime]]:
        fired = []
        for name, when in self.next_fire.items():
            if when is not None and when <= now:
                fired.append((self.rules[name], when))
                # Missed fires (a suspended laptop) collapse into one, as they would on AWS.
                self.next_fire[name] = self.rules[name].schedule.next_fire(now, self.start)
        return fired

    def next_wakeup(self) -> datetime | None:
        return min((when for when in self.next_fire.values() if when is not None), default=None)
