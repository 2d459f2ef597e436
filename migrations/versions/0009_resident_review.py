"""residents: a second registration of an ID number is kept for review instead of refused

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

A grid worker who registers an ID number that is already registered in another grid must not
learn that it exists (his grid's residents are all he may see). A plain unique constraint
would tell him through its error. Instead the number is unique among reviewed residents only:
the second registration is stored with ``review = 'duplicate_id_number'``, answered like any
other, and audited, for the community office to resolve.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE resident ADD COLUMN review varchar(24)")
    op.execute("ALTER TABLE resident ADD CONSTRAINT resident_review CHECK (review IS NULL OR review IN ('duplicate_id_number'))")
    op.execute("ALTER TABLE resident DROP CONSTRAINT resident_id_number_key")
    op.execute("CREATE UNIQUE INDEX uq_resident_id_number ON resident (id_number) WHERE review IS NULL")


def downgrade() -> None:
    op.execute("DELETE FROM resident WHERE review IS NOT NULL")
    op.execute("DROP INDEX uq_resident_id_number")
    op.execute("ALTER TABLE resident ADD CONSTRAINT resident_id_number_key UNIQUE (id_number)")
    op.execute("ALTER TABLE resident DROP CONSTRAINT resident_review")
    op.execute("ALTER TABLE resident DROP COLUMN review")
