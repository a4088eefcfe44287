"""content: AI content generation (/api/v1/ai/content/*) and AI health (/api/v1/ai/health)."""

import gc

# Cold start: what is built below lives as long as the process, so the cyclic collector only burns
# time scanning it while it is being built (≈ 10% of the import); pause it, then freeze the result.
gc.disable()

from mangum import Mangum  # noqa: E402

from okyaku.content.api import create_content_app  # noqa: E402

app = create_content_app()
handler = Mangum(app, lifespan="off")
gc.freeze()
gc.enable()
