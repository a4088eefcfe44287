"""content: AI content generation (/api/v1/ai/content/*) and AI health (/api/v1/ai/health)."""

from okyaku.coldstart import built_once

with built_once():
    from mangum import Mangum

    from okyaku.content.api import create_content_app

    app = create_content_app()
    handler = Mangum(app, lifespan="off")
