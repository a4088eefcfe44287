"""The CRM tools agents may use: reads scoped to the caller's organization, and writes that
only propose (see ``write.py``).

The tool lists are loaded at first use (PEP 562 ``__getattr__``), not when a submodule such as
``okyaku.agents.tools.services`` is imported: chat and the console import that one at cold start
and need no tool until an action is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from okyaku.agents.tooling import AgentTool
    from okyaku.agents.tools.read import READ_TOOLS
    from okyaku.agents.tools.write import WRITE_TOOLS

    ALL_TOOLS: dict[str, AgentTool]

__all__ = ["ALL_TOOLS", "READ_TOOLS", "WRITE_TOOLS"]


def __getattr__(name: str) -> Any:
    if name == "READ_TOOLS":
        from okyaku.agents.tools.read import READ_TOOLS

        return READ_TOOLS
    if name == "WRITE_TOOLS":
        from okyaku.agents.tools.write import WRITE_TOOLS

        return WRITE_TOOLS
    if name == "ALL_TOOLS":
        from okyaku.agents.tools.read import READ_TOOLS
        from okyaku.agents.tools.write import WRITE_TOOLS

        tools = {t.name: t for t in (*READ_TOOLS, *WRITE_TOOLS)}
        globals()["ALL_TOOLS"] = tools  # built once
        return tools
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
