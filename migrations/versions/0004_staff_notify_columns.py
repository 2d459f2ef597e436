"""staff NOTIFY only for the columns the locate index uses

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23

GPS positions update ``staff.last_position`` many times a second at city scale; those updates
must not make every API process reload its grid index. The staff trigger now fires only when
name, phone, role, duty status or active change (``UPDATE OF``), and on insert/delete/truncate.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS staff_notify ON staff")
    op.execute(
        "CREATE TRIGGER staff_notify AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF name, phone, role, duty_status, active "
        "ON staff FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_staff')"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS staff_notify ON staff")
    op.execute(
        "CREATE TRIGGER staff_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON staff "
        "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_staff')"
    )
