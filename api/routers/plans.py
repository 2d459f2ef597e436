"""Grid plans (网格调整方案): make, edit, validate, preview, apply, roll back, suggest; thin over
gridmap.services.plans (docs/plans.md)."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path as FilePath
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, allowed
from gridmap import io
from gridmap.auth import Principal
from gridmap.errors import InvalidInput
from gridmap.services import plans as svc

router = APIRouter(tags=["plans"])
GEOJSON = "application/geo+json"
PlanId = Annotated[int, Path(ge=1, le=2**31 - 1)]
Reader = Annotated[Principal, allowed("plans.read")]
Writer = Annotated[Principal, allowed("plans.write")]
Applier = Annotated[Principal, allowed("plans.apply")]
MAX_UPLOAD = 50 << 20
UPLOAD_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")


class PlanIn(BaseModel):
    """A plan made from the grids in force in its scope, or from GeoJSON polygons."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1 to 200 characters")
    scope: str = Field(description="the 12-digit community, 9-digit street or 6-digit district the plan redraws")
    description: str | None = Field(None, max_length=2000)
    geojson: dict[str, Any] | None = Field(None, description="a FeatureCollection of grid polygons (code, name, kind, "
                                           "community_code optional); none: a copy of the grids in force")  # fmt: skip
    crs: str | None = Field(None, description="the CRS of geojson: EPSG:4326 (default), EPSG:4490, GCJ02, BD09, or EPSG:n")


class Edit(BaseModel):
    """One edit: split {grid, line}, merge {grids}, replace {grid, geometry}, move {from, to, region},
    add {geometry, name?, kind?, code?}, remove {grid}, set {grid, code?, name?, kind?}. Geometries are
    GeoJSON in EPSG:4326; grids are plan grid ids."""

    model_config = ConfigDict(extra="allow")
    op: Literal["split", "merge", "replace", "move", "add", "remove", "set"]


class ApplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective_at: dt.datetime | None = Field(None, description="when the new grids take effect, with a time zone (default now; at most a "
                                             "day back; a later time is checked now and scheduled, up to 366 days ahead)")


class SuggestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scope: str = Field(description="the 12-digit community (or 9-digit street: each community on its own)")
    name: str | None = Field(None, max_length=200)
    households_min: int = Field(300, ge=1, le=100_000)
    households_max: int = Field(500, ge=1, le=100_000)
    balance_load: bool = Field(False, description="also balance the 90-day case load")
    follow_roads: bool = Field(True, description="keep grids from straddling roads where possible")
    seed: int = Field(0, ge=0, le=2**31 - 1)




@router.get("/v1/plans", summary="Plans you may read, newest first")
def list_plans(session: SessionDep, principal: Reader, scope: Annotated[str | None, Query(max_length=15)] = None,
               status: Annotated[str | None, Query(max_length=16)] = None,
               limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:  # fmt: skip
    return svc.listing(session, principal, scope_code=scope, status=status, limit=limit)


@router.post("/v1/plans", status_code=201, summary="Make a plan from the grids in force, or from GeoJSON polygons")
def create_plan(session: SessionDep, principal: Writer, payload: PlanIn) -> dict[str, Any]:
    frame = None
    if payload.geojson is not None:
        frame = io.frame_from_geojson(payload.geojson, crs=payload.crs)
    return svc.create(session, principal, name=payload.name, scope_code=payload.scope, description=payload.description, frame=frame)


@router.post("/v1/plans/upload", status_code=201, summary="Make a plan from a file: GeoJSON, GeoPackage or zipped Shapefile")
def upload_plan(session: SessionDep, principal: Writer, file: Annotated[UploadFile, File()], name: Annotated[str, Form()],
                scope: Annotated[str, Form()], crs: Annotated[str | None, Form()] = None,
                layer: Annotated[str | None, Form()] = None) -> dict[str, Any]:  # fmt: skip
    suffix = FilePath(file.filename or "").suffix.lower()
    if suffix not in UPLOAD_SUFFIXES:
        raise InvalidInput(f"Invalid file: {file.filename!r}; send a .geojson, .gpkg or zipped Shapefile (.zip)")
    svc.check_scope_code(scope)
    with tempfile.TemporaryDirectory(prefix="gridmap-plan-") as tmp:
        path = FilePath(tmp) / f"plan{suffix}"
        size = 0
        with path.open("wb") as out:
            while chunk := file.file.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    raise InvalidInput(f"The file is larger than {MAX_UPLOAD >> 20} MB")
                out.write(chunk)
        try:
            frame = io.read_layer(path, layer=layer, crs=crs)
        except InvalidInput as exc:  # name the file as the caller sent it, not our temporary copy
            shown, detail = repr(file.filename), exc.detail
            raise InvalidInput(detail.replace(str(path), shown) if str(path) in detail else detail.replace(path.name, shown)) from None
    return svc.create(session, principal, name=name, scope_code=scope, frame=frame)


@router.get("/v1/plans/{plan_id}", summary="A plan and its grids (GeoJSON)")
def get_plan(session: SessionDep, principal: Reader, plan_id: PlanId) -> JSONResponse:
    return JSONResponse(svc.get(session, principal, plan_id), media_type=GEOJSON)


@router.post("/v1/plans/{plan_id}/edits", summary="Edit a draft: split, merge, replace, move a boundary, add, remove, set")
def edit_plan(session: SessionDep, principal: Writer, plan_id: PlanId, payload: Edit) -> dict[str, Any]:
    return svc.edit(session, principal, plan_id, payload.model_dump())


@router.delete("/v1/plans/{plan_id}", summary="Discard a draft or validated plan")
def discard_plan(session: SessionDep, principal: Writer, plan_id: PlanId) -> dict[str, Any]:
    return svc.discard(session, principal, plan_id)


@router.get("/v1/plans/{plan_id}/validation", summary="Findings: invalid, overlap, gap, sliver, balance, compactness, codes …")
def validate_plan(session: SessionDep, principal: Reader, plan_id: PlanId,
                  households_min: Annotated[int | None, Query()] = None, households_max: Annotated[int | None, Query()] = None,
                  residents_max: Annotated[int | None, Query()] = None, tolerance_m: Annotated[float | None, Query()] = None,
                  sliver_m: Annotated[float | None, Query()] = None,
                  kind_ranges: Annotated[str | None, Query(max_length=400, description="household ranges of other grid kinds: "
                                                           "school:100-800,industrial_park:0-300 (kind:- lifts one)")] = None,
                  ) -> dict[str, Any]:  # fmt: skip
    rules = svc.rules_from(households_min=households_min, households_max=households_max, residents_max=residents_max,
                           tolerance_m=tolerance_m, sliver_m=sliver_m, kind_ranges=kind_ranges)  # fmt: skip
    return svc.validation(session, principal, plan_id, rules)


@router.get("/v1/plans/{plan_id}/impact", summary="What applying would move: buildings, households, residents, cases, staff")
def plan_impact(session: SessionDep, principal: Reader, plan_id: PlanId,
                coverage_days: Annotated[int, Query(ge=1, le=366, description="patrol coverage of the last this many days")] = 7) -> dict[str, Any]:  # fmt: skip
    return svc.impact(session, principal, plan_id, coverage_days=coverage_days)


@router.post("/v1/plans/{plan_id}/apply", summary="Apply the plan (atomic), or schedule it for a later effective_at; 409 if the grids changed since it was made")
def apply_plan(session: SessionDep, principal: Applier, plan_id: PlanId, payload: ApplyIn | None = None) -> dict[str, Any]:
    return svc.apply(session, principal, plan_id, effective_at=payload.effective_at if payload else None)


@router.post("/v1/plans/{plan_id}/rollback", summary="Roll an applied plan back: its previous grids applied as a new plan")
def rollback_plan(session: SessionDep, principal: Applier, plan_id: PlanId, payload: ApplyIn | None = None) -> dict[str, Any]:
    return svc.rollback(session, principal, plan_id, effective_at=payload.effective_at if payload else None)


@router.post("/v1/plans/suggest", status_code=201, summary="Suggest a balanced plan from the buildings (beside the current grids and k-means)")
def suggest_plan(session: SessionDep, principal: Writer, payload: SuggestIn) -> dict[str, Any]:
    return svc.suggest(session, principal, scope_code=payload.scope, name=payload.name, households_min=payload.households_min,
                       households_max=payload.households_max, balance_load=payload.balance_load,
                       follow_roads=payload.follow_roads, seed=payload.seed)  # fmt: skip


@router.get("/plans/{plan_id}/map", response_class=HTMLResponse, summary="The plan's diff map: old and new boundaries, moves, findings")
def plan_map(request: Request, session: SessionDep, principal: Reader, plan_id: PlanId) -> HTMLResponse:
    from gridmap import maps

    return HTMLResponse(maps.plan_map(session, principal, plan_id))
