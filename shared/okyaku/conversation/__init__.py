"""Conversation intelligence: every call, meeting, email and note analysed, quoted, and turned into
proposed CRM updates through the approval queue (see ``service``); a rules floor without the LLM."""
