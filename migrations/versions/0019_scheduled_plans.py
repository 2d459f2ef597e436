"""plans scheduled for a date, and plans whose scheduled apply failed

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-24

A plan applied with a future `effective_at` is checked at once and waits as `scheduled`; the API
processes (or `gridmap plan apply-due` from cron) apply it when the time comes. Should it no
longer apply then (someone changed the grids since), it becomes `failed` with the reason in
its report. The partial index finds the due plans.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "('draft', 'validated', 'applied', 'discarded', 'rolled_back')"
NEW = "('draft', 'validated', 'scheduled', 'applied', 'failed', 'discarded', 'rolled_back')"


def upgrade() -> None:
    op.drop_constraint("plan_status", "plan")
    op.create_check_constraint("plan_status", "plan", f"status IN {NEW}")
    op.execute("CREATE INDEX ix_plan_due ON plan (effective_at) WHERE status = 'scheduled'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_plan_due")
    op.execute("UPDATE plan SET status = 'discarded' WHERE status IN ('scheduled', 'failed')")
    op.drop_constraint("plan_status", "plan")
    op.create_check_constraint("plan_status", "plan", f"status IN {OLD}")
