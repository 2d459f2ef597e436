"""plans: the grids a plan was made from, and what its apply did

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-24

A plan (migration 0001) is made from the grids in force in its scope; `base_grid_ids` records
them, so applying it after someone else changed those grids is refused (409) instead of
silently undoing their change. A draft may hold an invalid polygon (validation names the
reason and the place), so plan_grid no longer refuses them. `report` keeps what the apply did (grids retired and created,
buildings, households, residents and open cases moved, staff assignments updated or flagged).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("plan", sa.Column("base_grid_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False, server_default="{}"))
    op.add_column("plan", sa.Column("report", postgresql.JSONB()))
    op.add_column("plan", sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False))
    op.create_index("ix_plan_scope_code", "plan", ["scope_code"])
    op.drop_constraint("plan_grid_geom_valid", "plan_grid")  # validation reports invalid polygons, with the reason


def downgrade() -> None:
    op.execute("DELETE FROM plan_grid WHERE NOT ST_IsValid(geom)")
    op.create_check_constraint("plan_grid_geom_valid", "plan_grid", "ST_IsValid(geom)")
    op.drop_index("ix_plan_scope_code", table_name="plan")
    op.drop_column("plan", "updated_at")
    op.drop_column("plan", "report")
    op.drop_column("plan", "base_grid_ids")
