"""Who to send (派遣候选人) and GPS positions of staff (位置上报)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.deps import PrincipalDep, SessionDep, allowed, audit_refusals
from gridmap import access
from gridmap.auth import Principal
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
def candidates(session: SessionDep, incident_id: int, principal: Annotated[Principal, allowed("dispatch.candidates")],
               limit: Annotated[int, Query(description="nearest staff to list (1-100)")] = 10) -> dict:  # fmt: skip
    scope = access.reach(session, principal, "dispatch.candidates")
    return svc.candidates(session, incident_id=incident_id, limit=limit, scope=scope)


@router.post("/staff/{staff_id}/positions", summary="Ingest a batch of GPS pings (all or nothing)")
def positions(request: Request, session: SessionDep, principal: PrincipalDep, staff_id: int, body: Positions) -> dict:
    audit_refusals(request, principal, "send_positions", "staff", [staff_id], lambda: access.check_positions(principal, staff_id))
    return svc.ingest_positions(session, staff_id=staff_id, positions=[p.model_dump() for p in body.positions], crs=body.crs)
