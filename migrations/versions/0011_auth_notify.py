"""notify API processes when an account or an API key changes

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23

API processes keep the callers of recently seen credentials in memory for a few seconds
(``gridmap.auth.PrincipalCache``), so the hot endpoints need no database round trip to know
who is calling. A change that must end access at once (a new token version — disable, new
role, scopes or password — or a revoked or changed API key) notifies ``gridmap_auth`` at commit,
and every process clears its cache. Scope and role changes also notify ``gridmap_staff``
(migrations 0003/0004). Statement-level, reusing ``gridmap_notify_change`` from 0003.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "CREATE TRIGGER staff_auth_notify AFTER UPDATE OF token_version, active, role ON staff "
        "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_auth')"
    )
    op.execute(
        "CREATE TRIGGER api_key_auth_notify AFTER UPDATE OF revoked_at, role, scope_level, scope_code, key_hash "
        "OR DELETE OR TRUNCATE ON api_key "
        "FOR EACH STATEMENT EXECUTE FUNCTION gridmap_notify_change('gridmap_auth')"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS api_key_auth_notify ON api_key")
    op.execute("DROP TRIGGER IF EXISTS staff_auth_notify ON staff")
