"""patrol coverage computed ahead, for the map

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-23

Coverage of the whole city takes minutes (bench/analytics.py), too long for a map request.
`gridmap stats refresh-coverage` (from cron) computes it and replaces this table in one
transaction: per grid its covered share of area and road length, the tracks that came near,
and the uncovered part. The `gaps` tile layer and the grids tiles read it; a statement on it
notifies ``gridmap_layers`` so the tile caches drop those layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "coverage_snapshot",
        sa.Column("grid_code", sa.String(15), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("buffer_m", sa.Float(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.Column("covered_share", sa.Float(), nullable=False),
        sa.Column("road_covered_share", sa.Float()),
        sa.Column("uncovered", Geometry("MULTIPOLYGON", srid=4326, spatial_index=False)),
    )
    op.execute("CREATE INDEX ix_coverage_snapshot_uncovered ON coverage_snapshot USING gist (uncovered)")
    op.execute("GRANT SELECT ON coverage_snapshot TO gridmap_api")
    op.execute(
        "CREATE TRIGGER coverage_snapshot_layer_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON coverage_snapshot "
        "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_layers')"
    )


def downgrade() -> None:
    op.drop_table("coverage_snapshot")
