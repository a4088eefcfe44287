"""recommendations: next-best actions, explain, apply, feedback, daily priorities (HTTP), and the
daily refresh of every organization's cards (schedule)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.entry import function_handler
    from okyaku.recommendations.api import create_recommendations_app, default_writer
    from okyaku.recommendations.service import RecommendationService
    from okyaku.runtime import Runtime

    runtime = Runtime()
    service = RecommendationService(runtime, writer=default_writer(runtime.settings))
    app = create_recommendations_app(service)
    handler = function_handler(name="recommendations", http=app, on_schedule=service.on_schedule)
