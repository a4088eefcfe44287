"""Record-change events: the outbox, publishers, and the relay that retries them."""

from okyaku.events.envelope import decode_change_event
from okyaku.events.model import ChangeEvent
from okyaku.events.outbox import record_change, record_changes, write_transaction

__all__ = ["ChangeEvent", "decode_change_event", "record_change", "record_changes", "write_transaction"]
