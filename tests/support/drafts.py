"""A draft_email proposal as an agent run makes it: the real tool, then the approval queue."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from okyaku.agents.approvals import ApprovalService
from okyaku.agents.tooling import ToolContext
from okyaku.agents.tools.services import ToolServices
from okyaku.agents.tools.write import DraftEmailArgs, draft_email
from okyaku.clock import utc_now
from okyaku.runtime import Runtime


def propose_draft_email(
    runtime: Runtime,
    approvals: ApprovalService,
    organization_id: uuid.UUID,
    args: DraftEmailArgs,
    *,
    requested_by: uuid.UUID | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Any:
    """The pending action of a draft_email the tool proposed (not yet approved)."""
    ctx = ToolContext(
        runtime=runtime,
        organization_id=organization_id,
        execution_id=uuid.uuid4(),
        agent="deal_assistant",
        task="follow up",
        requested_by=requested_by,
        services=ToolServices(runtime),
        clock=clock,
    )
    # On a thread of its own: a caller may already run an event loop (Playwright's sync API does).
    with ThreadPoolExecutor(1) as pool:
        proposal = pool.submit(asyncio.run, draft_email.execute(ctx, args)).result()  # type: ignore[arg-type]
    return approvals.propose(
        organization_id,
        execution_id=None,
        agent="deal_assistant",
        action="draft_email",
        proposal=proposal,
        low_risk=False,
        context={},
        requested_by=requested_by,
    )
