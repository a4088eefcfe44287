"""The CRM tools agents may use: reads scoped to the caller's organization, and writes that
only propose (see ``write.py``)."""

from okyaku.agents.tooling import AgentTool
from okyaku.agents.tools.read import READ_TOOLS
from okyaku.agents.tools.write import WRITE_TOOLS

ALL_TOOLS: dict[str, AgentTool] = {t.name: t for t in (*READ_TOOLS, *WRITE_TOOLS)}

__all__ = ["ALL_TOOLS", "READ_TOOLS", "WRITE_TOOLS"]
