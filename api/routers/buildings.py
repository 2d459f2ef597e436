"""Buildings (楼栋): those of your grids, or all of them for city-wide roles; corrections by grid staff."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import AfterQuery, GridQuery, PrincipalDep, SessionDep, audit_refusals
from gridmap import access
from gridmap.services import buildings as svc

router = APIRouter(prefix="/v1", tags=["buildings"])
GEOJSON = "application/geo+json"
BuildingId = Annotated[int, Path(ge=1, le=2**63 - 1)]


class BuildingPatch(BaseModel):
    """What grid staff may correct; a new footprint moves the building (and its households) to
    the grid it lies in, which must be one of yours. The grid itself cannot be sent."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="at most 100 characters")
    address: str | None = Field(None, description="at most 200 characters")
    use: str | None = Field(None, description="residential, commercial, mixed, office, industrial, public, village_house, other")
    floors: int | None = Field(None, description="1 to 200")
    geometry: dict[str, Any] | None = Field(None, description="GeoJSON Polygon or MultiPolygon: the new footprint")
    crs: str | None = Field(None, description="crs of geometry: EPSG:4326 (default), EPSG:4490, GCJ02, BD09")


class BuildingIn(BuildingPatch):
    """A new building in one of your grids; its grid follows from its footprint."""

    geometry: dict[str, Any] = Field(description="GeoJSON Polygon or MultiPolygon: the footprint")  # type: ignore[assignment]
    code: str | None = Field(None, description="the city's building code, unique; at most 64 characters")


def _run(request: Request, principal: PrincipalDep, action: str, object_ids: list[int], work):  # type: ignore[no-untyped-def]
    return audit_refusals(request, principal, action, "building", object_ids, work)


@router.get("/buildings", summary="Buildings of your grids (all of them for city-wide roles), GeoJSON by id")
def list_buildings(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    grid: GridQuery = None,
    q: Annotated[str | None, Query(description="part of the name or address")] = None,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = 100,
    after: AfterQuery = None,
) -> JSONResponse:
    def work() -> dict[str, Any]:
        return svc.list_buildings(session, svc.building_scope(session, principal), grid=grid, q=q, limit=limit, after=after)

    return JSONResponse(_run(request, principal, "read", [], work), media_type=GEOJSON)


@router.get("/buildings/{building_id}", summary="One building, if in your reach")
def get_building(request: Request, session: SessionDep, principal: PrincipalDep, building_id: BuildingId) -> JSONResponse:
    def work() -> dict[str, Any]:
        return svc.get_building(session, svc.building_scope(session, principal), building_id)

    return JSONResponse(_run(request, principal, "read", [building_id], work), media_type=GEOJSON)


def _writing(session: SessionDep, principal: PrincipalDep) -> access.Scope:
    """The caller's reach, stated to the database too: a building's households and residents move with it."""
    scope = svc.building_scope(session, principal)
    access.open_scope(session, scope)
    return scope


@router.post("/buildings", status_code=201, summary="Register a building in one of your grids (the grid follows its footprint)")
def create_building(request: Request, session: SessionDep, principal: PrincipalDep, payload: BuildingIn) -> JSONResponse:
    def work() -> dict[str, Any]:
        return svc.create_building(session, principal, _writing(session, principal), **payload.model_dump())

    feature = _run(request, principal, "create", [], work)
    return JSONResponse(feature, status_code=201, media_type=GEOJSON, headers={"Location": f"/v1/buildings/{feature['id']}"})


@router.delete("/buildings/{building_id}", status_code=204, summary="Remove a building of your grids that has no households")
def delete_building(request: Request, session: SessionDep, principal: PrincipalDep, building_id: BuildingId) -> Response:
    _run(request, principal, "delete", [building_id],
         lambda: svc.delete_building(session, principal, _writing(session, principal), building_id))  # fmt: skip
    return Response(status_code=204)


@router.patch("/buildings/{building_id}", summary="Correct a building of your grids (name, address, use, floors) or redraw its footprint")
def update_building(request: Request, session: SessionDep, principal: PrincipalDep, payload: BuildingPatch,
                    building_id: BuildingId) -> JSONResponse:  # fmt: skip
    changes = payload.model_dump(exclude_unset=True)

    def work() -> dict[str, Any]:
        return svc.update_building(session, principal, _writing(session, principal), building_id, changes)

    return JSONResponse(_run(request, principal, "update", [building_id], work), media_type=GEOJSON)
