"""per-grid case counts kept ahead for the grids tiles

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-24

A grids tile over a city district covers thousands of grids; counting each one's open,
overdue and recent cases as the tile renders made a cold z10 tile cost 95 ms. The API keeps
the counts here instead (`gridmap.services.casecounts`): the grids that a case notice names
are recounted within a fraction of a second, all of them every minute (cases turn overdue and
leave the window with the clock alone). `case_count_refresh` holds the time of the last full
recount: tiles fall back to counting as they render when it is older than a few minutes (no
API process keeping the counts). A grid without cases has no row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "grid_case_count",
        sa.Column("grid_code", sa.String(15), primary_key=True),
        sa.Column("open", sa.Integer(), nullable=False),
        sa.Column("overdue", sa.Integer(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
    )
    op.create_table(
        "case_count_refresh",
        sa.Column("id", sa.Boolean(), primary_key=True, server_default=sa.true()),
        sa.Column("window_days", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id", name="case_count_refresh_one_row"),
    )
    op.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON grid_case_count, case_count_refresh TO gridmap_api")


def downgrade() -> None:
    op.drop_table("case_count_refresh")
    op.drop_table("grid_case_count")
