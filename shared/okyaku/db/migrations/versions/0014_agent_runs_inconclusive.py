"""agent runs: the ``inconclusive`` status, the answer's ``verification``, and ``check`` steps

A run whose final answer is not grounded in its tool results (okyaku.agents.grounding) ends
``inconclusive``, not ``completed``; ``verification`` holds the check (verified, reason, the
numbers and names not found); the step log records the check as a ``check`` step. It alters
0004's tables, so it depends on 0004.

Revision ID: 0014
Revises: 0001
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0004"

STATUSES = "('queued', 'running', 'completed', 'inconclusive', 'stopped', 'failed')"
OLD_STATUSES = "('queued', 'running', 'completed', 'stopped', 'failed')"
KINDS = "('model', 'tool', 'check', 'limit', 'error')"
OLD_KINDS = "('model', 'tool', 'limit', 'error')"


def upgrade() -> None:
    op.drop_constraint("agent_execution_status_valid", "agent_executions", type_="check")
    op.create_check_constraint("agent_execution_status_valid", "agent_executions", f"status IN {STATUSES}")
    op.drop_constraint("agent_step_kind_valid", "agent_steps", type_="check")
    op.create_check_constraint("agent_step_kind_valid", "agent_steps", f"kind IN {KINDS}")
    op.add_column("agent_executions", sa.Column("verification", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    # The old statuses cannot say "unverified": such runs become stopped, which keeps their proposals.
    op.execute("UPDATE agent_executions SET status = 'stopped' WHERE status = 'inconclusive'")
    op.execute("DELETE FROM agent_steps WHERE kind = 'check'")
    op.drop_column("agent_executions", "verification")
    op.drop_constraint("agent_step_kind_valid", "agent_steps", type_="check")
    op.create_check_constraint("agent_step_kind_valid", "agent_steps", f"kind IN {OLD_KINDS}")
    op.drop_constraint("agent_execution_status_valid", "agent_executions", type_="check")
    op.create_check_constraint("agent_execution_status_valid", "agent_executions", f"status IN {OLD_STATUSES}")
