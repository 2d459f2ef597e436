"""grid area stored with the grid

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-24

Every grids tile and every per-grid statistic gave each grid's area on the ellipsoid
(ST_Area over geography), a quarter of a city-district tile's time. The area only changes
with the boundary, so it is a stored generated column: computed when a grid version is
written, never out of step with its geometry.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE grid ADD COLUMN area_m2 double precision GENERATED ALWAYS AS (ST_Area(geom::geography)) STORED")


def downgrade() -> None:
    op.execute("ALTER TABLE grid DROP COLUMN area_m2")
