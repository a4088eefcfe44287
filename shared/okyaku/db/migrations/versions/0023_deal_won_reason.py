"""deals: why a deal was won, as a column beside lost_reason

The console's Won action kept its reason in ``custom_properties.won_reason`` (there was no
column): invisible to the API's schema, untyped, and mixed with the organization's own custom
properties. The reason moves into its own column; existing values are carried over and the
custom property (with its definition) removed.

Revision ID: 0023
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("deals", sa.Column("won_reason", sa.String(length=500), nullable=True))
    # Organization by organization: the tables FORCE row-level security, so a migration role
    # without BYPASSRLS sees only the organization named in app.organization_id.
    op.execute(
        """
        DO $$
        DECLARE org record;
        BEGIN
            FOR org IN SELECT id FROM organizations LOOP
                PERFORM set_config('app.organization_id', org.id::text, true);
                UPDATE deals
                   SET won_reason = left(nullif(btrim(custom_properties->>'won_reason'), ''), 500),
                       custom_properties = custom_properties - 'won_reason'
                 WHERE custom_properties ? 'won_reason';
                DELETE FROM custom_property_definitions WHERE entity_type = 'deal' AND name = 'won_reason';
            END LOOP;
            PERFORM set_config('app.organization_id', '', true);
        END $$
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DO $$
        DECLARE org record;
        BEGIN
            FOR org IN SELECT id FROM organizations LOOP
                PERFORM set_config('app.organization_id', org.id::text, true);
                UPDATE deals
                   SET custom_properties = custom_properties || jsonb_build_object('won_reason', won_reason)
                 WHERE won_reason IS NOT NULL;
            END LOOP;
            PERFORM set_config('app.organization_id', '', true);
        END $$
        """
    )
    op.drop_column("deals", "won_reason")
