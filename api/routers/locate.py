"""Locate: which grid and who is responsible for a point (单点定位 / 批量定位)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Iterator
from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from api.deps import SessionDep
from gridmap.errors import InvalidInput, PayloadTooLarge
from gridmap.services import locate as svc
from gridmap.services.points import MAX_BATCH, parse_points, prepare_point

router = APIRouter(prefix="/v1", tags=["locate"])

CrsQuery = Annotated[str, Query(description="EPSG:4326 (default), EPSG:4490, GCJ02 or BD09")]
AtQuery = Annotated[dt.datetime | None, Query(description="answer with the grids in force at this ISO time (with zone)")]
NearQuery = Annotated[float, Query(ge=0, le=500, description="report neighbouring grids within this distance (m)")]


@router.get("/ping", summary="Trivial endpoint (the framework's ceiling in benchmarks)")
async def ping() -> dict:
    return {"pong": True}


@router.get("/locate", response_model=None, summary="The grid, hierarchy and staff responsible for a point (定位责任网格)")
async def locate(request: Request, response: Response, lon: float, lat: float, crs: CrsQuery = "EPSG:4326",
                 at: AtQuery = None, near: NearQuery = svc.NEAR_M) -> Response | dict:  # fmt: skip
    holder: svc.GridIndexHolder = request.app.state.grid_index
    response.headers["X-Gridmap-Pid"] = str(os.getpid())  # which API process answered, from which index
    lon84, lat84 = prepare_point(lon, lat, crs, holder.table.lonlat_extent())
    if at is None:  # the hot path: no database, encoded straight to bytes
        return Response(orjson.dumps(holder.locate(lon84, lat84, near)), media_type="application/json",
                        headers={"X-Gridmap-Pid": str(os.getpid()), "X-Grid-Index-Version": str(holder.version)})  # fmt: skip
    if at.tzinfo is None:
        raise InvalidInput("Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    from sqlalchemy.orm import Session

    def exact() -> dict:
        with Session(bind=request.app.state.engine) as session:
            return svc.locate_at(session, lon=lon84, lat=lat84, at=at, frame=holder.table.frame, near_m=near)

    return await run_in_threadpool(exact)


@router.get("/locate/index", summary="This process's in-memory grid index: version and size")
async def index_status(request: Request) -> dict:
    holder: svc.GridIndexHolder = request.app.state.grid_index
    return {"version": holder.version, "loaded_at": dt.datetime.fromtimestamp(holder.loaded_at, dt.UTC).isoformat(),
            "grids": len(holder.table.codes), "pid": os.getpid()}  # fmt: skip


@router.post(
    "/locate/batch",
    summary=f"Locate up to {MAX_BATCH:,} points: CSV (id,lon,lat) or a GeoJSON FeatureCollection; streamed CSV out",
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}},
                                               "application/geo+json": {"schema": {"type": "object"}}}}},
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
    ok = bad == ""
    idx = np.full(len(ids), -1, dtype=np.int64)
    dist = np.full(len(ids), np.nan)
    idx[ok], dist[ok] = await run_in_threadpool(table.locate_many, lon[ok], lat[ok])
    return StreamingResponse(_csv(ids, bad, idx, dist, table), media_type="text/csv; charset=utf-8")


HEADER = ["id", "status", "grid_code", "grid_version", "grid_name", "community", "street", "district",
          "distance_to_boundary_m"]  # fmt: skip


def _csv(ids: np.ndarray, bad: np.ndarray, idx: np.ndarray, dist: np.ndarray, table: svc.GridTable,
         chunk: int = 25_000) -> Iterator[bytes]:  # fmt: skip
    """CSV rows in chunks; columns become Python lists first (element access on numpy is slow)."""
    hier = table.hierarchy if len(table.codes) else np.full((1, 6), "", dtype=object)
    columns = [table.codes, table.ids.astype(object), table.names, hier[:, 0], hier[:, 2], hier[:, 4]]
    if not len(table.codes):
        columns = [np.array([""], dtype=object)] * 6
    for start in range(0, max(len(ids), 1), chunk):
        sl = slice(start, start + chunk)
        found = idx[sl] >= 0
        kk = np.where(found, idx[sl], 0)
        status = np.where(bad[sl] != "", "invalid: " + bad[sl].astype(str), np.where(found, "ok", "outside")).tolist()
        dist_s = ["" if v != v else f"{v:.1f}" for v in dist[sl].tolist()]
        picked = [np.where(found, c[kk], "").tolist() for c in columns]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if start == 0:
            writer.writerow(HEADER)
        writer.writerows(zip(ids[sl].tolist(), status, *picked, dist_s, strict=True))
        yield buf.getvalue().encode()
