"""Locate: which grid and who is responsible for a point (单点定位 / 批量定位)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import TypeAdapter, ValidationError

from api.deps import PrincipalDep, SessionDep, allowed, authenticate, refuse_unless
from gridmap.errors import InvalidInput, PayloadTooLarge
from gridmap.services import locate as svc
from gridmap.services.points import MAX_BATCH, parse_points, prepare_point

router = APIRouter(prefix="/v1", tags=["locate"])

CrsQuery = Annotated[str, Query(description="EPSG:4326 (default), EPSG:4490, GCJ02 or BD09")]
AtQuery = Annotated[dt.datetime | None, Query(description="answer with the grids in force at this ISO time (with zone)")]


@router.get("/ping", summary="Trivial endpoint for any signed-in caller (the framework's ceiling in benchmarks)")
async def ping(principal: PrincipalDep) -> dict:
    return {"pong": True}


_FLOAT = TypeAdapter(float)
_DATETIME = TypeAdapter(dt.datetime)
LOCATE_PARAMETERS = [
    {"name": "lon", "in": "query", "required": True, "schema": {"type": "number"}, "description": "longitude"},
    {"name": "lat", "in": "query", "required": True, "schema": {"type": "number"}, "description": "latitude"},
    {"name": "crs", "in": "query", "schema": {"type": "string", "default": "EPSG:4326"},
     "description": "EPSG:4326 (default), EPSG:4490, GCJ02 or BD09"},
    {"name": "at", "in": "query", "schema": {"type": "string", "format": "date-time"},
     "description": "answer with the grids in force at this ISO time (with zone)"},
    {"name": "near", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 500, "default": svc.NEAR_M},
     "description": "report neighbouring grids within this distance (m)"},
]  # fmt: skip


def _param(query: Any, name: str, adapter: TypeAdapter, default: Any = ..., ge: float | None = None,
           le: float | None = None) -> Any:  # fmt: skip
    """One query parameter validated by pydantic, with the same problem wording as the other routes."""
    raw = query.get(name)
    if raw is None:
        if default is ...:
            raise InvalidInput(f"Missing required parameter {name}")
        return default
    try:
        value = adapter.validate_python(raw)
    except ValidationError as exc:
        raise InvalidInput(f"Invalid value for parameter {name}: {exc.errors()[0]['msg']}") from None
    if ge is not None and value < ge:
        raise InvalidInput(f"Invalid value for parameter {name}: Input should be greater than or equal to {ge:g}")
    if le is not None and value > le:
        raise InvalidInput(f"Invalid value for parameter {name}: Input should be less than or equal to {le:g}")
    return value


# The hot path parses its five query parameters itself (with pydantic's adapters, so the
# messages are the same as elsewhere): FastAPI's per-parameter machinery cost more per request
# than the lookup. The parameters are documented through openapi_extra.
@router.get("/locate", response_model=None, openapi_extra={"parameters": LOCATE_PARAMETERS},
            summary="The grid, hierarchy and staff responsible for a point (定位责任网格)")  # fmt: skip
async def locate(request: Request) -> Response | dict:
    await refuse_unless(request, await authenticate(request), "locate")
    q = request.query_params
    lon = _param(q, "lon", _FLOAT)
    lat = _param(q, "lat", _FLOAT)
    crs = q.get("crs", "EPSG:4326")
    at = _param(q, "at", _DATETIME, None)
    near = _param(q, "near", _FLOAT, svc.NEAR_M, ge=0, le=500)
    holder: svc.GridIndexHolder = request.app.state.grid_index
    lon84, lat84 = prepare_point(lon, lat, crs, holder.table.lonlat_extent())
    headers = {"X-Gridmap-Pid": str(os.getpid()), "X-Grid-Index-Version": str(holder.version)}
    if at is None:  # no database, encoded straight to bytes
        return Response(orjson.dumps(holder.locate(lon84, lat84, near)), media_type="application/json", headers=headers)
    if at.tzinfo is None:
        raise InvalidInput("Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    from sqlalchemy.orm import Session

    def exact() -> dict:
        with Session(bind=request.app.state.engine) as session:
            return svc.locate_at(session, lon=lon84, lat=lat84, at=at, frame=holder.table.frame, near_m=near)

    return Response(orjson.dumps(await run_in_threadpool(exact)), media_type="application/json", headers=headers)


@router.get("/locate/index", summary="This process's in-memory grid index: version and size", dependencies=[allowed("locate")])
async def index_status(request: Request) -> dict:
    holder: svc.GridIndexHolder = request.app.state.grid_index
    return {"version": holder.version, "loaded_at": dt.datetime.fromtimestamp(holder.loaded_at, dt.UTC).isoformat(),
            "grids": len(holder.table.codes), "pid": os.getpid()}  # fmt: skip


@router.post(
    "/locate/batch",
    summary=f"Locate up to {MAX_BATCH:,} points: CSV (id,lon,lat) or a GeoJSON FeatureCollection; streamed CSV out",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}},
                                               "application/geo+json": {"schema": {"type": "object"}}}}},
    dependencies=[allowed("locate")],
)  # fmt: skip
async def locate_batch(request: Request, session: SessionDep, crs: CrsQuery = "EPSG:4326", at: AtQuery = None) -> StreamingResponse:
    holder: svc.GridIndexHolder = request.app.state.grid_index
    body = await request.body()
    ids, lon, lat, bad = await run_in_threadpool(parse_points, body, request.headers.get("content-type", ""), crs)
    if len(ids) > MAX_BATCH:
        raise PayloadTooLarge(f"Too many points: {len(ids):,}; at most {MAX_BATCH:,} per request")
    table = holder.table
    if at is not None:
        if at.tzinfo is None:
            raise InvalidInput("Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
        table = svc.grids_in_force_at(session, at=at, frame=table.frame)
    return StreamingResponse(_located_csv(ids, bad, lon, lat, table), media_type="text/csv; charset=utf-8")


HEADER = ["id", "status", "grid_code", "grid_version", "grid_name", "community", "street", "district",
          "distance_to_boundary_m"]  # fmt: skip


def _csv_field(value: Any) -> str:
    """One CSV field as the csv module writes it (quoted only when it must be)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([value])  # "\n": fields with line breaks get quoted
    return buf.getvalue()[:-1]


_ROW_PARTS: tuple[svc.GridTable, list[str]] | None = None


def _row_parts(table: svc.GridTable) -> list[str]:
    """Per grid, the middle of its CSV rows: ",ok,code,version,name,community,street,district,".

    Everything but the id and the distance is the same for every point of a grid, so it is
    formatted once per index version (cached for the table in force), not once per point.
    """
    global _ROW_PARTS
    if _ROW_PARTS is None or _ROW_PARTS[0] is not table:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")  # "\n": fields with line breaks get quoted
        parts = []
        hier = table.hierarchy
        for k, (code, gid, name) in enumerate(zip(table.codes.tolist(), table.ids.tolist(), table.names.tolist(), strict=True)):
            buf.seek(0)
            buf.truncate()
            writer.writerow((code, gid, name, hier[k, 0], hier[k, 2], hier[k, 4]))
            parts.append(",ok," + buf.getvalue()[:-1] + ",")
        _ROW_PARTS = (table, parts)
    return _ROW_PARTS[1]


def _locate_chunk(table: svc.GridTable, lon: np.ndarray, lat: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    idx = np.full(len(lon), -1, dtype=np.int64)
    dist = np.full(len(lon), np.nan)
    if ok.any():
        idx[ok], dist[ok] = table.locate_many(lon[ok], lat[ok], threads=1)
    return idx, dist


def _located_csv(ids: np.ndarray, bad: np.ndarray, lon: np.ndarray, lat: np.ndarray, table: svc.GridTable,
                 chunk: int = 20_000) -> Iterator[bytes]:  # fmt: skip
    """The CSV answer, chunk by chunk: two threads locate the chunks (GEOS releases the GIL) while
    the chunks before them are formatted and sent, in order."""
    parts = _row_parts(table) if len(table.codes) else []
    id_list = [str(i) for i in ids.tolist()]
    if any(c in "".join(id_list) for c in ',"\r\n'):  # rare: quote every id that needs it
        id_list = [_csv_field(i) for i in id_list]
    yield (",".join(HEADER) + "\n").encode()
    ok = bad == ""
    starts = range(0, len(id_list), chunk)
    pool = ThreadPoolExecutor(2, thread_name_prefix="locate")
    try:
        futures = [pool.submit(_locate_chunk, table, lon[s : s + chunk], lat[s : s + chunk], ok[s : s + chunk]) for s in starts]
        for s, future in zip(starts, futures, strict=True):
            idx, dist = future.result()
            yield _csv_rows(id_list[s : s + chunk], bad[s : s + chunk].tolist(), idx.tolist(), dist.tolist(), parts)
    finally:  # also when the client goes away: drop the chunks not started
        pool.shutdown(wait=False, cancel_futures=True)


def _csv_rows(ids: list[str], bad: list[Any], idx: list[int], dist: list[float], parts: list[str]) -> bytes:
    """CSV rows: id + the grid's preformatted part + distance; outside and invalid rows spelled out."""
    rows = []
    for i, k, d, why in zip(ids, idx, dist, bad, strict=True):
        if k >= 0:
            rows.append(f"{i}{parts[k]}{d:.1f}\n")
        elif why:
            rows.append(f"{i},{_csv_field('invalid: ' + str(why))},,,,,,,\n")
        else:
            rows.append(f"{i},outside,,,,,,,\n")
    return "".join(rows).encode()
