"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from gridmap import __version__
from gridmap.db import check_connection
from gridmap.migrate import current_revision, head_revision

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Health: database and PostGIS versions, schema revision")
async def healthz(request: Request) -> dict:
    engine = request.app.state.engine

    def probe() -> dict:
        versions = check_connection(engine)
        return {**versions, "schema": current_revision(engine)}

    info = await run_in_threadpool(probe)
    # warm_up: the map's analytics loading in the background after start-up (running, done, skipped)
    return {"status": "ok", "gridmap": __version__, "database": info, "schema_expected": head_revision(),
            "warm_up": getattr(request.app.state, "warm_up", None)}
