"""Locate: which grid and who is responsible for a point (单点定位 / 批量定位)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from collections.abc import Iterator
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Query, Request, Response
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


@router.get("/locate", summary="The grid, hierarchy and staff responsible for a point (定位责任网格)")
async def locate(request: Request, response: Response, lon: float, lat: float, crs: CrsQuery = "EPSG:4326",
                 at: AtQuery = None, near: NearQuery = svc.NEAR_M) -> dict:  # fmt: skip
    holder: svc.GridIndexHolder = request.app.state.grid_index
    response.headers["X-Gridmap-Pid"] = str(os.getpid())  # which API process answered, from which index
    response.headers["X-Grid-Index-Version"] = str(holder.version)
    lon84, lat84 = prepare_point(lon, lat, crs, holder.table.lonlat_extent())
    if at is None:
        return holder.locate(lon84, lat84, near)
    if at.tzinfo is None:
        raise InvalidInput("Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    from fastapi.concurrency import run_in_threadpool
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
    ids, lon, lat, bad = parse_points(body, request.headers.get("content-type", ""), crs)
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
    idx[ok], dist[ok] = table.locate_many(lon[ok], lat[ok])
    return StreamingResponse(_csv(ids, lon, lat, bad, idx, dist, table), media_type="text/csv; charset=utf-8")


def _csv(ids: np.ndarray, lon: np.ndarray, lat: np.ndarray, bad: np.ndarray, idx: np.ndarray, dist: np.ndarray,
         table: svc.GridTable, chunk: int = 20_000) -> Iterator[bytes]:  # fmt: skip
    header = ["id", "lon", "lat", "status", "grid_code", "grid_version", "grid_name", "community", "street",
              "district", "distance_to_boundary_m"]  # fmt: skip
    hier = table.hierarchy
    for start in range(0, len(ids), chunk):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if start == 0:
            writer.writerow(header)
        rows = []
        for i in range(start, min(start + chunk, len(ids))):
            k = int(idx[i])
            if bad[i]:
                rows.append((ids[i], "", "", f"invalid: {bad[i]}", "", "", "", "", "", "", ""))
            elif k < 0:
                rows.append((ids[i], f"{lon[i]:.7f}", f"{lat[i]:.7f}", "outside", "", "", "", "", "", "", ""))
            else:
                h = hier[k]
                rows.append((ids[i], f"{lon[i]:.7f}", f"{lat[i]:.7f}", "ok", table.codes[k], table.ids[k],
                             table.names[k], h[0], h[2], h[4], f"{dist[i]:.1f}"))  # fmt: skip
        writer.writerows(rows)
        yield buf.getvalue().encode()
    if len(ids) == 0:
        yield (",".join(header) + "\n").encode()
