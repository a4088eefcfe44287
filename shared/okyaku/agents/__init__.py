"""AI agents that propose and humans approve: the framework, CRM tools, three agents, the
approval queue and their API. Import submodules directly (``okyaku.agents.api``, ...)."""
