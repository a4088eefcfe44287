"""console: the web console, server-rendered pages under / and /console/... (HTTP)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.console.app import create_console_app
    from okyaku.console.services import console_services
    from okyaku.entry import function_handler

    services = console_services()
    app = create_console_app(services)
    handler = function_handler(name="console", http=app)
