"""dispatch: idempotency keys and change notifications for in-memory indexes

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23

- ``idempotency_key``: one row per (caller, Idempotency-Key) holding the request's hash and
  the response given, so a retried POST returns the same answer and a reused key with another
  body is refused. The primary key serialises concurrent requests with one key.
- Statement-level triggers NOTIFY ``gridmap_grids`` / ``gridmap_staff`` when grids or staff
  change; NOTIFY is delivered at commit, so API processes reload their in-memory index of the
  grids in force only after the change is visible.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NOTIFY = {"grid": "gridmap_grids", "staff": "gridmap_staff", "staff_scope": "gridmap_staff"}


def upgrade() -> None:
    op.create_table(
        "idempotency_key",
        sa.Column("caller", sa.Text(), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.SmallInteger(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("caller", "key"),
    )
    op.create_index("ix_idempotency_key_created_at", "idempotency_key", ["created_at"], unique=False)
    op.execute(
        """
        CREATE FUNCTION gridmap_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME);
          RETURN NULL;
        END $$
        """
    )
    for table, channel in NOTIFY.items():
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('{channel}')"
        )


def downgrade() -> None:
    for table in NOTIFY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
    op.execute("DROP FUNCTION IF EXISTS gridmap_notify_change()")
    op.drop_index("ix_idempotency_key_created_at", table_name="idempotency_key")
    op.drop_table("idempotency_key")
