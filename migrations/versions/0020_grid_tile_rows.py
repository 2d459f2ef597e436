"""the kept case counts carry each grid's name, kind, area and shape in Web Mercator

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-24

A grids tile at zoom 10 covers hundreds of grids; joining their kept counts (0016) and
projecting each boundary cost more than the whole tile of a plain tile server. `grid_case_count`
now has a row for every grid in force with what its tile needs — version, name, kind, area and
the boundary already in Web Mercator — so grids tiles read one table. The API's case-count
keeper writes them when grids change. Until its first full recount under this revision the
tiles read the grids and count as they render (the refresh mark is cleared).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("grid_case_count", sa.Column("grid_id", sa.BigInteger()))
    op.add_column("grid_case_count", sa.Column("name", sa.Text()))
    op.add_column("grid_case_count", sa.Column("kind", sa.String(20)))
    op.add_column("grid_case_count", sa.Column("area_km2", sa.Float()))
    op.add_column("grid_case_count", sa.Column("geom_m", Geometry("GEOMETRY", srid=3857, spatial_index=False)))
    op.execute("CREATE INDEX ix_grid_case_count_geom_m ON grid_case_count USING gist (geom_m)")
    op.execute("DELETE FROM case_count_refresh")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_grid_case_count_geom_m")
    for column in ("geom_m", "area_km2", "kind", "name", "grid_id"):
        op.drop_column("grid_case_count", column)
