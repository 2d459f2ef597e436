"""Residents (居民): personal data, within the caller's grids, masked for city-wide roles.

Authentication is required. The request's transaction runs as ``gridmap_api`` with the
caller's grids as context (row-level security), after the role check here; clear reads are
audited in the same transaction, refusals in one of their own.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from api.deps import PrincipalDep, SessionDep
from gridmap import access, audit
from gridmap.errors import Forbidden, NotFound
from gridmap.services import residents as svc

router = APIRouter(prefix="/v1", tags=["residents"])


def _scope(request: Request, session: SessionDep, principal: PrincipalDep, action: str) -> access.Scope:
    try:
        scope = access.resident_scope(session, principal)
    except Forbidden:
        audit.record_refusal(request.app.state.engine, principal, f"{action}_refused", object_type="resident",
                             detail={"path": request.url.path})  # fmt: skip
        raise
    access.open_scope(session, scope)
    return scope


@router.get("/residents", summary="Residents in your grids (masked for city-wide roles), by id, a page at a time")
def list_residents(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    grid: Annotated[str | None, Query(description="only this 15-digit grid code")] = None,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = 100,
    after: Annotated[int | None, Query(description="the next_after of the previous page")] = None,
) -> dict[str, Any]:
    scope = _scope(request, session, principal, "read")
    return svc.list_residents(session, principal, scope, grid=grid, limit=limit, after=after)


@router.get("/residents/{resident_id}", summary="One resident, if in your grids")
def get_resident(request: Request, session: SessionDep, principal: PrincipalDep,
                 resident_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:  # fmt: skip
    scope = _scope(request, session, principal, "read")
    try:
        return svc.get_resident(session, principal, scope, resident_id)
    except NotFound:
        audit.record_refusal(request.app.state.engine, principal, "read_not_found", object_type="resident",
                             object_ids=[resident_id])  # fmt: skip
        raise
