"""row-level security on personal data: the second wall behind the API's own checks

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

``gridmap_api`` is the role API requests run as (``SET LOCAL ROLE`` inside each request's
transaction): it owns nothing, cannot bypass row-level security and may not change or delete
audit rows or case events. Each request states whom it serves with transaction-local settings
(``set_config(…, true)``, never a session-level SET that could outlive the request in a pooled
connection):

* ``gridmap.grids`` — the grid codes the caller may see, comma-separated (a grid worker's own
  grids, a community admin's grids, …);
* ``gridmap.all`` — ``on`` for roles that work city-wide (their answers are masked by the API).

The RESTRICTIVE policies on ``resident`` and ``household`` let ``gridmap_api`` reach a row only
when its (indexed) ``grid_code`` is among those grids, for reads and writes alike (a row cannot
be moved into a grid outside them either). Without context a query returns no rows — it does not
fail. FORCE ROW LEVEL SECURITY applies the policies to the table owner too; the owner keeps a
permissive policy of its own for migrations, imports and the demo loader.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSONAL = ("resident", "household")


def upgrade() -> None:
    op.execute(
        """
        DO $$ BEGIN
          IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gridmap_api') THEN
            CREATE ROLE gridmap_api NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
          END IF;
        END $$
        """
    )
    op.execute("GRANT gridmap_api TO CURRENT_USER")
    op.execute("GRANT USAGE ON SCHEMA public TO gridmap_api")
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO gridmap_api")
    op.execute("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO gridmap_api")
    # tables and sequences later migrations create get the same grants
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gridmap_api")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO gridmap_api")
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON audit_log, incident_event FROM gridmap_api")
    op.execute("REVOKE ALL ON alembic_version FROM gridmap_api")
    op.execute(
        """
        CREATE FUNCTION gridmap_context_grids() RETURNS text[] LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(string_to_array(nullif(current_setting('gridmap.grids', true), ''), ','), '{}')
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_context_all() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(current_setting('gridmap.all', true), '') = 'on'
        $$
        """
    )
    # the span of codes the context allows: grid codes are hierarchical, so a community's or a
    # street's grids are one contiguous range and the policy's range test is an index range scan
    op.execute(
        """
        CREATE FUNCTION gridmap_context_lo() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN gridmap_context_all() THEN '' ELSE (SELECT coalesce(min(g), '~') FROM unnest(gridmap_context_grids()) g) END
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_context_hi() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN gridmap_context_all() THEN '~' ELSE (SELECT coalesce(max(g), '') FROM unnest(gridmap_context_grids()) g) END
        $$
        """
    )
    for table in PERSONAL:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_owner ON {table} TO CURRENT_USER USING (true) WITH CHECK (true)")
        op.execute(f"CREATE POLICY {table}_api ON {table} TO gridmap_api USING (true) WITH CHECK (true)")
        rule = ("grid_code BETWEEN gridmap_context_lo() AND gridmap_context_hi() "
                "AND (gridmap_context_all() OR grid_code = ANY (gridmap_context_grids()))")  # fmt: skip
        op.execute(f"CREATE POLICY {table}_grid ON {table} AS RESTRICTIVE TO gridmap_api USING ({rule}) WITH CHECK ({rule})")


def downgrade() -> None:
    for table in PERSONAL:
        for policy in ("grid", "api", "owner"):
            op.execute(f"DROP POLICY IF EXISTS {table}_{policy} ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION IF EXISTS gridmap_context_hi()")
    op.execute("DROP FUNCTION IF EXISTS gridmap_context_lo()")
    op.execute("DROP FUNCTION IF EXISTS gridmap_context_all()")
    op.execute("DROP FUNCTION IF EXISTS gridmap_context_grids()")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM gridmap_api")
    op.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM gridmap_api")
    op.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM gridmap_api")
    op.execute("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM gridmap_api")
    op.execute("REVOKE USAGE ON SCHEMA public FROM gridmap_api")
    # the role is cluster-wide and other databases may use it: it stays
