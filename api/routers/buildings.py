"""Buildings (楼栋): those of your grids, or all of them for city-wide roles; corrections by grid staff."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from api.deps import AfterQuery, GridQuery, PrincipalDep, SessionDep, audit_refusals
from gridmap.services import buildings as svc

router = APIRouter(prefix="/v1", tags=["buildings"])
GEOJSON = "application/geo+json"
BuildingId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class BuildingPatch(BaseModel):
    """What grid staff may correct; the footprint and the grid are not changed here."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    address: str | None = None
    use: str | None = None
    floors: int | None = None


def _run(request: Request, principal: PrincipalDep, action: str, object_ids: list[int], work):  # type: ignore[no-untyped-def]
    return audit_refusals(request, principal, action, "building", object_ids, work)


@router.get("/buildings", summary="Buildings of your grids (all of them for city-wide roles), GeoJSON by id")
def list_buildings(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    grid: GridQuery = None,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = 100,
    after: AfterQuery = None,
) -> JSONResponse:
    def work() -> dict[str, Any]:
        return svc.list_buildings(session, svc.building_scope(session, principal), grid=grid, limit=limit, after=after)

    return JSONResponse(_run(request, principal, "read", [], work), media_type=GEOJSON)


@router.get("/buildings/{building_id}", summary="One building, if in your reach")
def get_building(request: Request, session: SessionDep, principal: PrincipalDep, building_id: BuildingId) -> JSONResponse:
    def work() -> dict[str, Any]:
        return svc.get_building(session, svc.building_scope(session, principal), building_id)

    return JSONResponse(_run(request, principal, "read", [building_id], work), media_type=GEOJSON)


@router.patch("/buildings/{building_id}", summary="Correct a building of your grids (name, address, use, floors)")
def update_building(request: Request, session: SessionDep, principal: PrincipalDep, payload: BuildingPatch,
                    building_id: BuildingId) -> JSONResponse:  # fmt: skip
    changes = payload.model_dump(exclude_unset=True)

    def work() -> dict[str, Any]:
        return svc.update_building(session, principal, svc.building_scope(session, principal), building_id, changes)

    return JSONResponse(_run(request, principal, "update", [building_id], work), media_type=GEOJSON)
