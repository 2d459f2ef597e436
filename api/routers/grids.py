"""Grids in force (or at a moment), and the category taxonomy."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import SessionDep, allowed
from gridmap.services import grids as svc

router = APIRouter(prefix="/v1", tags=["grids"], dependencies=[allowed("grids.read")])


AtQuery = Annotated[dt.datetime | None, Query(description="ISO 8601 time with zone; default now")]


@router.get("/grids", summary="Grids in force as GeoJSON (网格)")
def list_grids(
    session: SessionDep,
    at: AtQuery = None,
    area: Annotated[str | None, Query(description="district, street or community code")] = None,
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat")] = None,
    limit: Annotated[int, Query(description=f"at most {svc.MAX_FEATURES}")] = 1000,
) -> dict:
    return svc.list_grids(session, at=at, area=area, bbox=svc.parse_bbox(bbox), limit=limit)


@router.get("/grids/{code}", summary="One grid version in force at a moment")
def get_grid(session: SessionDep, code: str, at: AtQuery = None) -> dict:
    return svc.get_grid(session, code=code, at=at)


@router.get("/categories", summary="Incident category taxonomy with default time limits (案件分类)")
def categories(session: SessionDep) -> list[dict]:
    return svc.categories(session)
