"""Residents (居民): personal data, within the caller's grids, masked for city-wide roles.

Authentication is required. The request's transaction runs as ``gridmap_api`` with the
caller's grids as context (row-level security), after the role check here; clear reads are
audited in the same transaction, refusals in one of their own.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AfterQuery, GridQuery, PrincipalDep, SessionDep, audit_refusals
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


@router.get("/exports/residents.csv", summary="Residents in your reach as CSV, always de-identified (masked values, keyed pseudonyms)",
            response_class=Response, responses={200: {"content": {"text/csv": {}}}})  # fmt: skip
def export_residents(request: Request, session: SessionDep, principal: PrincipalDep, grid: GridQuery = None) -> Response:
    scope = _scope(request, session, principal, "export")
    body = _guarded(request, principal, "export", [], lambda: svc.export_residents(session, principal, scope, grid=grid))
    return Response(body.encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="residents.csv"'})  # fmt: skip


@router.get("/residents", summary="Residents in your grids (masked for city-wide roles), by id, a page at a time")
def list_residents(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    grid: GridQuery = None,
    name: Annotated[str | None, Query(description="part of the name (clear access only)")] = None,
    id_number: Annotated[str | None, Query(description="exact ID number (clear access only)")] = None,
    phone: Annotated[str | None, Query(description="exact phone (clear access only)")] = None,
    tag: Annotated[str | None, Query(description="residents with this tag, e.g. 独居老人")] = None,
    review: Annotated[bool, Query(description="only those stored for review (duplicate ID numbers); area admins")] = False,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = 100,
    after: AfterQuery = None,
) -> dict[str, Any]:
    scope = _scope(request, session, principal, "read")
    return _guarded(request, principal, "read", [], lambda: svc.list_residents(
        session, principal, scope, grid=grid, name=name, id_number=id_number, phone=phone, tag=tag, review=review,
        limit=limit, after=after))  # fmt: skip


@router.get("/residents/counts", summary="Residents per grid, community or street in reach (small counts suppressed for masked roles)")
def count_residents(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    by: Annotated[str, Query(description="grid, community or street")] = "grid",
    tag: Annotated[str | None, Query(description="only residents with this tag, e.g. 独居老人")] = None,
) -> dict[str, Any]:
    scope = _scope(request, session, principal, "count")
    return svc.count_residents(session, principal, scope, by=by, tag=tag)


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: str = Field(description="this: keep this registration and remove the earlier one · other: remove this one")


@router.post("/residents/{resident_id}/review", summary="Resolve a duplicate ID number (area admins over both registrations)")
def resolve_review(request: Request, session: SessionDep, principal: PrincipalDep, payload: ReviewIn,
                   resident_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:  # fmt: skip
    scope = _scope(request, session, principal, "review")
    return _guarded(request, principal, "review", [resident_id],
                    lambda: svc.resolve_review(session, principal, scope, resident_id, keep=payload.keep))  # fmt: skip


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


class ResidentIn(BaseModel):
    """A resident registered in a household; the grid follows the household (it cannot be sent)."""

    model_config = ConfigDict(extra="forbid")

    household_id: int = Field(ge=1, le=2**63 - 1, description="the household, in one of your grids")
    name: str = Field(description="full name, at most 64 characters")
    id_number: str | None = Field(None, description="GB 11643 resident ID number (18 characters)")
    gender: str | None = Field(None, description="M or F; taken from the ID number when given")
    birth_date: dt.date | None = Field(None, description="taken from the ID number when given")
    phone: str | None = Field(None, description="mobile or landline with area code")
    relation: str | None = Field(None, description="relation to the head of household, e.g. 户主, 配偶, 子女")
    tags: list[str] | None = Field(None, description="care groups etc., e.g. 独居老人; at most 20")


class ResidentPatch(BaseModel):
    """Fields that may change; moving to another household moves the resident to its grid."""

    model_config = ConfigDict(extra="forbid")

    household_id: int | None = Field(None, ge=1, le=2**63 - 1)
    name: str | None = None
    id_number: str | None = Field(None, description="a corrected GB 11643 number; gender and birth date follow it")
    phone: str | None = None
    relation: str | None = None
    tags: list[str] | None = None


def _guarded(request: Request, principal: PrincipalDep, action: str, object_ids: list[int], run,  # type: ignore[no-untyped-def]
             object_type: str = "resident"):  # fmt: skip
    return audit_refusals(request, principal, action, object_type, object_ids, run)


@router.post("/residents", status_code=201, summary="Register a resident in a household of your grids")
def create_resident(request: Request, response: Response, session: SessionDep, principal: PrincipalDep,
                    payload: ResidentIn) -> dict[str, Any]:  # fmt: skip
    scope = _scope(request, session, principal, "create")
    out = _guarded(request, principal, "create", [],
                   lambda: svc.create_resident(session, principal, scope, **payload.model_dump()))  # fmt: skip
    response.headers["Location"] = f"/v1/residents/{out['id']}"
    return out


@router.patch("/residents/{resident_id}", summary="Change a resident of your grids (name, phone, relation, tags, household)")
def update_resident(request: Request, session: SessionDep, principal: PrincipalDep, payload: ResidentPatch,
                    resident_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> dict[str, Any]:  # fmt: skip
    scope = _scope(request, session, principal, "update")
    changes = payload.model_dump(exclude_unset=True)
    return _guarded(request, principal, "update", [resident_id],
                    lambda: svc.update_resident(session, principal, scope, resident_id, changes))  # fmt: skip


@router.delete("/residents/{resident_id}", status_code=204, summary="Remove a resident of your grids")
def delete_resident(request: Request, session: SessionDep, principal: PrincipalDep,
                    resident_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:  # fmt: skip
    scope = _scope(request, session, principal, "delete")
    _guarded(request, principal, "delete", [resident_id], lambda: svc.delete_resident(session, principal, scope, resident_id))
    return Response(status_code=204)


class HouseholdIn(BaseModel):
    """A household (户): in a building of your grids, or in one of your grids."""

    model_config = ConfigDict(extra="forbid")

    building_id: int | None = Field(None, ge=1, le=2**63 - 1, description="the building; its grid is the household's")
    grid_code: str | None = Field(None, description="one of your grids, when there is no building")
    unit_no: str | None = Field(None, description="unit / room number, at most 32 characters")


@router.get("/households", summary="Households in your grids, with their member counts")
def list_households(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    grid: GridQuery = None,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = 100,
    after: AfterQuery = None,
) -> dict[str, Any]:
    scope = _scope(request, session, principal, "read")
    return svc.list_households(session, principal, scope, grid=grid, limit=limit, after=after)


@router.delete("/households/{household_id}", status_code=204, summary="Remove an empty household of your grids")
def delete_household(request: Request, session: SessionDep, principal: PrincipalDep,
                     household_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Response:  # fmt: skip
    scope = _scope(request, session, principal, "delete")
    _guarded(request, principal, "delete", [household_id],
             lambda: svc.delete_household(session, principal, scope, household_id), "household")  # fmt: skip
    return Response(status_code=204)


@router.post("/households", status_code=201, summary="Create a household in a building or grid of yours")
def create_household(request: Request, session: SessionDep, principal: PrincipalDep, payload: HouseholdIn) -> dict[str, Any]:
    scope = _scope(request, session, principal, "create")
    return _guarded(request, principal, "create", [],
                    lambda: svc.create_household(session, principal, scope, **payload.model_dump()), "household")  # fmt: skip
