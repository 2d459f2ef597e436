"""Who to send (派遣候选人) and GPS positions of staff (位置上报)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep
from gridmap.services import dispatch as svc

router = APIRouter(prefix="/v1", tags=["dispatch"])


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lon: float
    lat: float
    at: dt.datetime
    accuracy_m: float | None = Field(default=None, ge=0, le=10_000)


class Positions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    crs: str = "EPSG:4326"
    positions: list[Position]


@router.get("/incidents/{incident_id}/candidates", summary="Who to send: the grid's workers, then the nearest available staff")
def candidates(session: SessionDep, incident_id: int,
               limit: Annotated[int, Query(description="nearest staff to list (1-100)")] = 10) -> dict:  # fmt: skip
    return svc.candidates(session, incident_id=incident_id, limit=limit)


@router.post("/staff/{staff_id}/positions", summary="Ingest a batch of GPS pings (all or nothing)")
def positions(session: SessionDep, staff_id: int, body: Positions) -> dict:
    return svc.ingest_positions(session, staff_id=staff_id, positions=[p.model_dump() for p in body.positions], crs=body.crs)
