"""Record-change events: the outbox, publishers, and the relay that retries them."""

from okyaku.events.model import ChangeEvent
from okyaku.events.outbox import record_change, write_transaction

__all__ = ["ChangeEvent", "record_change", "write_transaction"]
