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


MAX_PAGE = 1000


def list_audit(session: Session, principal: Principal, *, actor_id: int | None = None, grid: str | None = None,
               action: str | None = None, since: Any = None, until: Any = None, limit: int = 100,
               before: int | None = None) -> dict[str, Any]:  # fmt: skip
    """Audit rows newest first, for auditors; `before` = the last id of the previous page."""
    from gridmap.access import require
    from gridmap.errors import InvalidInput

    require(principal, "audit.read")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"Invalid value for parameter limit: 1 to {MAX_PAGE}")
    where, params = ["true"], {"limit": limit + 1}
    for name, value, sql in (("actor_id", actor_id, "actor_id = :actor_id"), ("grid", grid, "grid_code LIKE :grid"),
                             ("action", action, "action = :action"), ("since", since, "at >= :since"),
                             ("until", until, "at < :until"), ("before", before, "id < :before")):  # fmt: skip
        if value is not None:
            if name in ("since", "until") and getattr(value, "tzinfo", None) is None:
                raise InvalidInput(f"Invalid value for parameter {name}: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
            if name == "grid" and not (value.isascii() and value.isdigit() and len(value) in (6, 9, 12, 15)):
                raise InvalidInput("Invalid value for parameter grid: a 6-, 9-, 12- or 15-digit area code")
            where.append(sql)
            params[name] = f"{value}%" if name == "grid" else value
    rows = session.execute(
        text(f"SELECT id, at, actor_id, actor, action, object_type, object_id, grid_code, detail FROM audit_log "
             f"WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit"), params,
    ).mappings().all()  # fmt: skip
    page = [dict(r, at=r["at"].isoformat()) for r in rows[:limit]]
    record(session, principal, "audit_read", object_type="audit_log", detail={"count": len(page)})
    return {"items": page, "next_before": page[-1]["id"] if len(rows) > limit else None}
