"""Row-level security for tenant tables: the statements every migration runs for its tables."""

from __future__ import annotations

CURRENT_ORGANIZATION = "NULLIF(current_setting('app.organization_id', true), '')::uuid"


def tenant_isolation_sql(table: str, app_role: str) -> list[str]:
    """FORCE RLS on ``table``: the app role sees and writes only the transaction's organization."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY {table}_tenant ON {table} FOR ALL "
        f"USING (organization_id = {CURRENT_ORGANIZATION}) WITH CHECK (organization_id = {CURRENT_ORGANIZATION})",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}",
    ]
