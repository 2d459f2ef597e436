"""a spatial index of open incidents, for the duplicate check of every report

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

Every report looks for open incidents of its category within 50 m. Through the index of all
incidents the 100 m box around a busy address returns the whole history of that address (two
hundred cases in the city demo) to keep four; a partial index of the open ones returns the few
that can match. The duplicate query repeats the index's predicate so that the planner uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE INDEX ix_incident_open_geom ON incident USING gist (geom) "
        "WHERE status NOT IN ('closed', 'rejected')"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_incident_open_geom")
