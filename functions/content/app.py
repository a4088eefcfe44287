"""content: AI content generation (/api/v1/ai/content/*) and AI health (/api/v1/ai/health)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.content.api import create_content_app
    from okyaku.entry import function_handler

    app = create_content_app()
    handler = function_handler(name="content", http=app)
