"""index the open cases by grid

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23

The grids tile layer carries each grid's open and overdue cases; counting them from all of a
grid's cases (a year of them) cost most of a cold z10 tile. Open cases are a few per grid: a
partial index on them by grid makes the count a short index scan.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS ix_incident_open_grid ON incident (grid_code) WHERE status NOT IN ('closed', 'rejected')")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_incident_open_grid")
