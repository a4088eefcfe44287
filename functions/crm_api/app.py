"""crm_api: the CRM REST API (companies, contacts, pipelines, deals, activities, tasks, imports)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.crm.api import create_crm_app
    from okyaku.entry import function_handler

    app = create_crm_app()
    handler = function_handler(name="crm_api", http=app)
