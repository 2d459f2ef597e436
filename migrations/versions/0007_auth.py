"""authentication: API keys for machines, a token version per staff member

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

People sign in with their staff account (``staff.password_hash``, argon2id) and get signed,
expiring bearer tokens; ``staff.token_version`` is part of every token, so raising it (a
disable, a new role or scope, a new password) ends every token issued before. Machines (the
hotline, camera systems) use API keys: only a SHA-256 of the key is stored (keys are 256-bit
random, so a fast hash is safe), with a short prefix to find it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("staff", sa.Column("token_version", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "api_key",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("prefix", sa.String(12), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("scope_level", sa.String(10), nullable=False, server_default="city"),
        sa.Column("scope_code", sa.String(15)),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint(
            "role IN ('grid_worker', 'grid_leader', 'community_admin', 'street_admin', 'district_admin', "
            "'dispatcher', 'command_center', 'planner', 'analyst', 'auditor', 'admin')",
            name="api_key_role",
        ),
        sa.CheckConstraint("scope_level IN ('grid', 'community', 'street', 'district', 'city')", name="api_key_scope_level"),
        sa.UniqueConstraint("prefix", name="uq_api_key_prefix"),
    )


def downgrade() -> None:
    op.drop_table("api_key")
    op.drop_column("staff", "token_version")
