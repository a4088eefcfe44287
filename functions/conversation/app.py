"""conversation: activity change events -> analyses and proposals (SQS), a sweep of what is still
unanalysed (schedule), /api/v1/ai/conversation/* (HTTP)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.conversation.api import create_conversation_app
    from okyaku.conversation.service import ConversationService
    from okyaku.entry import function_handler
    from okyaku.llm.gateway import LLMGateway
    from okyaku.runtime import Runtime

    runtime = Runtime()
    service = ConversationService(runtime, LLMGateway.from_settings(runtime.settings))
    app = create_conversation_app(service)
    handler = function_handler(
        name="conversation", http=app, on_record=service.on_change_record, on_schedule=service.on_schedule
    )
