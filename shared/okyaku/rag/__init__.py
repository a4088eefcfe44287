"""Retrieval-augmented generation: the context that grounds chat, recommendations and agents."""

from okyaku.rag.context import Citation, ContextBuilder, EntityRef, RagContext, estimate_tokens

__all__ = ["Citation", "ContextBuilder", "EntityRef", "RagContext", "estimate_tokens"]
