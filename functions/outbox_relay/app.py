"""outbox_relay: on its schedule, publishes change events left pending in the outbox."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.events.relay import relay_scheduled
    from okyaku.runtime import Runtime

    runtime = Runtime()
    handler = function_handler(name="outbox_relay", on_schedule=lambda _event, _context: relay_scheduled(runtime))
