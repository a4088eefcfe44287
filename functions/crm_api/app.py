"""crm_api: the CRM REST API (companies, contacts, pipelines, deals, activities, tasks, imports)."""

import gc

# Cold start: what is built below lives as long as the process, so the cyclic collector only burns
# time scanning it while it is being built (≈ 10% of the import); pause it, then freeze the result.
gc.disable()

from mangum import Mangum  # noqa: E402

from okyaku.crm.api import create_crm_app  # noqa: E402

app = create_crm_app()
handler = Mangum(app, lifespan="off")
gc.freeze()
gc.enable()
