"""personal data at area scale: pages by (grid_code, id) and a row-level policy that tests a
code range once instead of a grid list per row

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23

bench/rls.py found two costs that grow with the size of the caller's area:

* The policy of 0008 tested ``grid_code = ANY (gridmap_context_grids())`` on every row, and
  PostgreSQL rebuilt the list from the setting each time: a street admin's count took 640 ms
  instead of 8, a district admin's more than the statement timeout. Grid codes are
  hierarchical, so one area's grids are the code range [area000…, area999…]: the API now states
  that range (``gridmap.lo``, ``gridmap.hi``) and, when every code in it is the caller's (one
  area, or the city), ``gridmap.ranged = on``; only scattered grids (several scopes) still need
  the list, which the policy now evaluates once per statement (an InitPlan) and tests as a
  hashed array. The range alone is an index condition.
* Pages ordered by id walked the primary key from the city's first resident until they found
  the area's (1–1.6 s for a community, street or district on the city demo): pages now go by
  (grid_code, id), an index range scan of the new composite indexes for any scope size. They
  replace the single-column grid_code indexes.

Without context the range is empty ('1' > '0'), so a query still returns no rows. The context
functions read only what ``open_scope`` sets (no fallback computed from the list), which keeps
the policy cheap to plan.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PERSONAL = ("resident", "household")
PAGED = ("resident", "household", "building")
RULE = ("grid_code BETWEEN gridmap_context_lo() AND gridmap_context_hi() "
        "AND ((SELECT gridmap_context_ranged()) OR grid_code = ANY (CAST((SELECT gridmap_context_grids()) AS text[])))")  # fmt: skip
OLD_RULE = ("grid_code BETWEEN gridmap_context_lo() AND gridmap_context_hi() "
            "AND (gridmap_context_all() OR grid_code = ANY (gridmap_context_grids()))")  # fmt: skip


def upgrade() -> None:
    for table in PAGED:
        op.execute(f"CREATE INDEX ix_{table}_grid_code_id ON {table} (grid_code, id)")
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_grid_code")
    # what gridmap.access.open_scope states; digits-only bounds compare the same under every
    # collation (no '~' sentinels); unset, the range is empty ('1' > '0') and nothing is visible
    op.execute(
        """
        CREATE OR REPLACE FUNCTION gridmap_context_lo() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(nullif(current_setting('gridmap.lo', true), ''), '1')
        $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION gridmap_context_hi() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(nullif(current_setting('gridmap.hi', true), ''), '0')
        $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION gridmap_context_ranged() RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(current_setting('gridmap.ranged', true), '') = 'on'
        $$
        """
    )
    for table in PERSONAL:
        op.execute(f"ALTER POLICY {table}_grid ON {table} USING ({RULE}) WITH CHECK ({RULE})")


def downgrade() -> None:
    for table in PERSONAL:
        op.execute(f"ALTER POLICY {table}_grid ON {table} USING ({OLD_RULE}) WITH CHECK ({OLD_RULE})")
    op.execute("DROP FUNCTION IF EXISTS gridmap_context_ranged()")
    op.execute(
        """
        CREATE OR REPLACE FUNCTION gridmap_context_lo() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN gridmap_context_all() THEN '' ELSE (SELECT coalesce(min(g), '~') FROM unnest(gridmap_context_grids()) g) END
        $$
        """
    )
    op.execute(
        """
        CREATE OR REPLACE FUNCTION gridmap_context_hi() RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT CASE WHEN gridmap_context_all() THEN '~' ELSE (SELECT coalesce(max(g), '') FROM unnest(gridmap_context_grids()) g) END
        $$
        """
    )
    for table in PAGED:
        op.execute(f"CREATE INDEX ix_{table}_grid_code ON {table} (grid_code)")
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_grid_code_id")
