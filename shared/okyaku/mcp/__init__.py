"""Okyaku as an MCP server: the CRM's tools and records for external agents (Model Context Protocol).

- ``tools``: the public contract: each tool's name, argument model (its JSON schema), description
  written for a model, and read-only / destructive hints.
- ``service``: what the tools do, through the existing services (search, chat, predictions,
  recommendations, conversation, the approval queue). Every write is a proposal.
- ``server``: the official SDK's low-level ``Server`` wired to the service (imports the SDK).
- ``api``: the ``/mcp`` Streamable HTTP endpoint (stateless, JSON responses), with the API-key
  check, the per-key rate limit and the project's error shape for plain HTTP failures.
- ``stdio``: the same server over stdio for desktop clients (``okyaku mcp --org-key KEY``).
"""
