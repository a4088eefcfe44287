"""chat: questions about the CRM answered from its records (/api/v1/ai/chat, streaming, conversations)."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.chat.api import create_chat_app
    from okyaku.chat.service import ChatService
    from okyaku.entry import function_handler
    from okyaku.llm.gateway import LLMGateway
    from okyaku.runtime import Runtime

    runtime = Runtime()
    service = ChatService(runtime, LLMGateway.from_settings(runtime.settings))
    app = create_chat_app(service)
    handler = function_handler(name="chat", http=app)
