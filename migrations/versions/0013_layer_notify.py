"""notify API processes when a map layer's data changes

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23

Vector tiles are cached per API process (``tiles.cache``). Incidents already notify
``gridmap_incidents`` with their place, so only the tiles under a changed case are dropped;
grids notify ``gridmap_grids``. The other layers change rarely and in bulk (imports, a camera
going offline): a statement on ``building``, ``camera``, ``service_point`` or ``patrol_track``
notifies ``gridmap_layers`` with the table's name at commit, and the caches drop that layer.
Statement-level, reusing ``gridmap_notify_change`` from 0003.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("building", "camera", "service_point", "patrol_track")


def upgrade() -> None:
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_layer_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_layers')"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_layer_notify ON {table}")
