"""sign-in lockout: failed attempts per account, a lock after too many

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

Guessing passwords is slowed down per account, across every API process: after
``LOCKOUT_AFTER`` failed sign-ins in a row the account is locked for ``LOCKOUT_MINUTES``; a
successful sign-in clears the count. The answer during a lock is the same 401 as for a wrong
password, so a lock does not tell an outsider that the username exists.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("staff", sa.Column("failed_sign_ins", sa.Integer(), server_default="0", nullable=False))
    op.add_column("staff", sa.Column("locked_until", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("staff", "locked_until")
    op.drop_column("staff", "failed_sign_ins")
