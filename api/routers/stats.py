"""Statistics for the command center (统计分析): per-grid cases and rates, hotspots, patrol
coverage and gaps, the three zeros. Thin: the analytics are gridmap.services.stats."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api.deps import SessionDep, allowed
from gridmap import access
from gridmap.auth import Principal
from gridmap.errors import InvalidInput
from gridmap.services import stats as svc

router = APIRouter(prefix="/v1/stats", tags=["stats"])
GEOJSON = "application/geo+json"
Reader = Annotated[Principal, allowed("stats.read")]
FromQuery = Annotated[dt.datetime | None, Query(alias="from", description="window start (ISO 8601 with zone); default: `days` before `to`")]
ToQuery = Annotated[dt.datetime | None, Query(alias="to", description="window end (ISO 8601 with zone); default now")]
CategoryQuery = Annotated[list[str] | None, Query(description="repeatable category code; a major class includes its subclasses")]
FormatQuery = Annotated[str, Query(description="geojson (with grid polygons) or json (rows only)")]
AreaQuery = Annotated[str | None, Query(description="only this district, street, community or grid code (within your reach)")]
MAX_COVERAGE_GRIDS = 5_000  # a district's worth: ~7 s on the city demo (docs/stats.md)
STATS_COLUMNS = ["code", "name", "kind", "community", "street", "area_km2", "residents", "cases", "weight", "per_1000",
                 "per_km2", "open", "overdue", "closed", "closed_on_time", "on_time_rate", "handling_h"]  # fmt: skip


def _answer(frame: Any, fmt: str, columns: list[str], geometry: str = "geom") -> JSONResponse:
    if fmt not in ("geojson", "json"):
        raise InvalidInput("Invalid value for parameter format: geojson or json")
    body = svc.to_geojson(frame, geometry=geometry if fmt == "geojson" else None, columns=columns + ([geometry] if fmt == "geojson" else []))
    return JSONResponse(body, media_type=GEOJSON if fmt == "geojson" else "application/json")


@router.get("/grids", summary="Cases per grid in a window: counts, per 1,000 residents, per km², open, overdue, KPIs")
def grid_stats(session: SessionDep, principal: Reader, area: AreaQuery = None, since: FromQuery = None, until: ToQuery = None,
               category: CategoryQuery = None, format: FormatQuery = "geojson") -> JSONResponse:  # fmt: skip
    scope = access.narrow(access.reach(session, principal, "stats.read"), area)
    frame = svc.grid_stats(session, scope, since=since, until=until, categories=category or ())
    return _answer(frame, format, STATS_COLUMNS)


@router.get("/hotspots", summary="Hotspots: Getis-Ord Gi* of a per-grid value (PySAL esda), with significance")
def hotspots(session: SessionDep, principal: Reader, area: AreaQuery = None, since: FromQuery = None, until: ToQuery = None,
             category: CategoryQuery = None,
             value: Annotated[str, Query(description="per_km2, per_1000, cases, weight, open or overdue")] = "per_km2",
             permutations: Annotated[int, Query(ge=0, le=9999, description="0: normal approximation; else pseudo p-values")] = 0,
             format: FormatQuery = "geojson") -> JSONResponse:  # fmt: skip
    scope = access.narrow(access.reach(session, principal, "stats.read"), area)
    frame = svc.hotspots(svc.grid_stats(session, scope, since=since, until=until, categories=category or ()),
                         value=value, permutations=permutations)  # fmt: skip
    return _answer(frame, format, ["code", "name", "community", "cases", value, "gi_z", "gi_p", "spot"] if value != "cases"
                   else ["code", "name", "community", "cases", "gi_z", "gi_p", "spot"])  # fmt: skip


@router.get("/coverage", summary="Patrol coverage per grid: share of the area (and road length) within a buffer of the tracks")
def coverage(session: SessionDep, principal: Reader, area: AreaQuery = None, since: FromQuery = None, until: ToQuery = None,
             buffer_m: Annotated[float, Query(description="metres around the tracks, 1 to 1000")] = 50.0,
             geometry: Annotated[str, Query(description="grid, uncovered (the parts no patrol came near) or none")] = "uncovered",
             ) -> JSONResponse:  # fmt: skip
    scope = access.narrow(access.reach(session, principal, "stats.read"), area)
    frame = svc.coverage(session, scope, since=since, until=until, buffer_m=buffer_m, with_uncovered=geometry == "uncovered",
                         max_grids=MAX_COVERAGE_GRIDS)  # fmt: skip
    columns = ["code", "name", "community", "area_km2", "tracks", "covered_share", "road_m", "road_covered_share"]
    if geometry not in ("grid", "uncovered", "none"):
        raise InvalidInput("Invalid value for parameter geometry: grid, uncovered or none")
    if geometry == "none":
        return _answer(frame, "json", columns)
    return _answer(frame, "geojson", columns, geometry="geom" if geometry == "grid" else "uncovered")


@router.get("/gaps", summary="The patrol gap ranking: grids where case density is high and patrol coverage low")
def gaps(session: SessionDep, principal: Reader, area: AreaQuery = None, since: FromQuery = None, until: ToQuery = None,
         buffer_m: Annotated[float, Query(description="metres around the tracks")] = 50.0,
         limit: Annotated[int, Query(ge=1, le=20000, description="the top grids")] = 50,
         format: FormatQuery = "json") -> JSONResponse:  # fmt: skip
    scope = access.narrow(access.reach(session, principal, "stats.read"), area)
    frame = svc.grids(session, scope)
    ranked = svc.patrol_gaps(svc.grid_stats(session, scope, since=since, until=until),
                             svc.coverage(session, scope, since=since, until=until, buffer_m=buffer_m, frame=frame,
                                          with_uncovered=False, max_grids=MAX_COVERAGE_GRIDS)).head(limit)  # fmt: skip
    return _answer(ranked, format, ["gap_rank", "code", "name", "community", "cases", "per_km2", "covered_share", "tracks", "gap_index"])


@router.get("/three-zeros", summary="The three zeros (三零): petitions, accidents and criminal cases per grid or community")
def three_zeros(session: SessionDep, principal: Reader, area: AreaQuery = None, since: FromQuery = None, until: ToQuery = None,
                level: Annotated[str, Query(description="grid or community")] = "grid") -> dict[str, Any]:  # fmt: skip
    scope = access.narrow(access.reach(session, principal, "stats.read"), area)
    frame = svc.three_zeros(session, scope, since=since, until=until, level=level)
    return svc.to_geojson(frame, geometry=None)
