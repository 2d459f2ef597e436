"""The audit log (审计日志), for auditors: who read or changed whose data, and who was refused."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from api.deps import PrincipalDep, SessionDep
from gridmap import audit
from gridmap.errors import Forbidden

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", summary="Audit rows, newest first, filtered by user, area, action and time (auditors)")
def list_audit(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    user: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="staff id of the actor")] = None,
    grid: Annotated[str | None, Query(description="a grid, community, street or district code")] = None,
    action: Annotated[str | None, Query(max_length=32, description="read, read_refused, read_not_found, audit_read, …")] = None,
    since: Annotated[dt.datetime | None, Query(alias="from", description="at or after (ISO 8601 with zone)")] = None,
    until: Annotated[dt.datetime | None, Query(alias="to", description="before (ISO 8601 with zone)")] = None,
    limit: Annotated[int, Query(description=f"page size, at most {audit.MAX_PAGE}")] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="the next_before of the previous page")] = None,
) -> dict[str, Any]:
    try:
        return audit.list_audit(session, principal, actor_id=user, grid=grid, action=action, since=since, until=until,
                                limit=limit, before=before)  # fmt: skip
    except Forbidden:
        audit.record_refusal(request.app.state.engine, principal, "audit_read_refused", object_type="audit_log")
        raise
