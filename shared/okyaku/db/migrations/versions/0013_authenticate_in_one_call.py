"""API-key authentication in one round trip: okyaku_authenticate(key_hash)

Authentication ran five statements (show the key to its hash, find it, scope to its
organization, check its user, record its use), each a round trip and a statement for
SQLAlchemy to build: a third of a list request's CPU. One PL/pgSQL function does the same,
in the same order and under the same row-level security (it is SECURITY INVOKER: it sees
what the application role sees once ``app.api_key_hash`` is set), and returns one row or
none.

Revision ID: 0013
Revises: 0010
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0010"  # reads users.deactivated_at
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUTHENTICATE = """
CREATE OR REPLACE FUNCTION okyaku_authenticate(p_key_hash text)
RETURNS TABLE (api_key_id uuid, organization_id uuid, user_id uuid, role text)
LANGUAGE plpgsql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    found_key record;
    found_user record;
BEGIN
    -- Row-level security shows an api_keys row to whoever presents its hash, nothing else.
    PERFORM set_config('app.api_key_hash', p_key_hash, true);
    SELECT k.id, k.organization_id, k.user_id, k.last_used_at INTO found_key
      FROM api_keys k WHERE k.key_hash = p_key_hash AND k.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM set_config('app.organization_id', found_key.organization_id::text, true);
    role := 'member';  -- a key made for no user (a service key) is a member
    IF found_key.user_id IS NOT NULL THEN
        SELECT u.role, u.deactivated_at INTO found_user FROM users u WHERE u.id = found_key.user_id;
        IF NOT FOUND OR found_user.deactivated_at IS NOT NULL THEN
            RETURN;
        END IF;
        role := found_user.role;
    END IF;
    -- Use is recorded at most once a minute: a write per request would cost more than it tells.
    IF found_key.last_used_at IS NULL OR found_key.last_used_at < now() - interval '1 minute' THEN
        UPDATE api_keys SET last_used_at = now() WHERE id = found_key.id;
    END IF;
    api_key_id := found_key.id;
    organization_id := found_key.organization_id;
    user_id := found_key.user_id;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    op.execute(AUTHENTICATE)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS okyaku_authenticate(text)")
