"""crm_api: the CRM REST API (companies, contacts, pipelines, deals, activities, tasks, imports)."""

from okyaku.coldstart import built_once

with built_once():
    from mangum import Mangum

    from okyaku.crm.api import create_crm_app

    app = create_crm_app()
    handler = Mangum(app, lifespan="off")
