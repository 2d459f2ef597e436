"""The audit log (审计日志): who read or changed whose personal data, and who was refused.

Reads of clear personal data and changes are written in the request's own transaction: if the
audit row cannot be written, the read or change fails with it. A refusal is written in a short
transaction of its own, since the refused request's transaction rolls back.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gridmap.auth import Principal

INSERT_SQL = text(
    """
    INSERT INTO audit_log (actor_id, actor, action, object_type, object_id, grid_code, detail)
    VALUES (:actor_id, :actor, :action, :object_type, :object_id, :grid_code, CAST(:detail AS jsonb))
    """
)


def _row(principal: Principal | None, action: str, object_type: str | None, object_ids: Sequence[Any],
         grid_code: str | None, detail: dict[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    actor = f"{principal.kind}:{principal.id}:{principal.role}" if principal else "anonymous"
    ids = [str(i) for i in object_ids]
    extra = dict(detail or {})
    if len(ids) > 1:
        extra["object_ids"] = ids
    return {"actor_id": principal.id if principal and principal.kind == "user" else None, "actor": actor,
            "action": action, "object_type": object_type, "object_id": ids[0] if len(ids) == 1 else None,
            "grid_code": grid_code, "detail": json.dumps(extra, ensure_ascii=False) if extra else None}  # fmt: skip


def record(session: Session, principal: Principal | None, action: str, *, object_type: str | None = None,
           object_ids: Sequence[Any] = (), grid_code: str | None = None, detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    """An audit row in the caller's transaction (reads of clear data, changes)."""
    session.execute(INSERT_SQL, _row(principal, action, object_type, object_ids, grid_code, detail))


def record_refusal(engine: Engine, principal: Principal | None, action: str, *, object_type: str | None = None,
                   object_ids: Sequence[Any] = (), detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    """An audit row for a refused attempt, committed on its own (the request itself rolls back)."""
    with engine.begin() as conn:
        conn.execute(INSERT_SQL, _row(principal, action, object_type, object_ids, None, detail))
