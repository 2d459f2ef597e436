"""Incidents (案件), their workflow (案件流程), the SLA tick (超期升级) and KPIs (考核指标).

Thin: parse HTTP (headers, query, body), call gridmap.services, shape the response. Every
error is a GridmapError or a validation error, turned into problem+json by api.problems.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.deps import PrincipalDep, SessionDep, allowed, authenticate, refuse_unless, require_audited
from gridmap import access, workflow
from gridmap.auth import Principal
from gridmap.batching import Batcher
from gridmap.errors import PreconditionFailed, PreconditionRequired
from gridmap.services import incidents as svc
from gridmap.services import kpis as kpi_svc
from gridmap.services import reports
from gridmap.services.grids import parse_bbox
from gridmap.settings import api_settings

router = APIRouter(prefix="/v1", tags=["incidents"])

GEOJSON = "application/geo+json"

CrsQuery = Annotated[str | None, Query(description="output coordinates: EPSG:4326 (default), EPSG:4490, GCJ02, BD09")]


class IncidentIn(BaseModel):
    """A report (上报). Coordinates are lon/lat in `crs` (default WGS84)."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field(description="category code from GET /v1/categories, e.g. 0102", examples=["0102"])
    source: str = Field(description="hotline, citizen_app, camera, patrol, department or open311", examples=["hotline"])
    lon: float = Field(description="longitude", examples=[117.2638])
    lat: float = Field(description="latitude", examples=[31.8566])
    crs: str | None = Field(None, description="crs of lon/lat: EPSG:4326 (default), EPSG:4490, GCJ02, BD09")
    severity: int = Field(2, description="1 一般 low · 2 较重 normal · 3 严重 high · 4 特别严重 critical")
    title: str | None = Field(None, description="short title, at most 200 characters")
    description: str | None = Field(None, description="what was reported, at most 4000 characters")
    address: str | None = Field(None, description="address as given, at most 500 characters")
    reported_at: dt.datetime | None = Field(None, description="when it was reported (ISO 8601 with zone); default now")


class TransitionIn(BaseModel):
    """A workflow action; `note` is the reason (reject, reopen) or the feedback (resolve)."""

    model_config = ConfigDict(extra="forbid")

    action: str = Field(description=", ".join(workflow.TRANSITION_ACTIONS), examples=["dispatch"])
    note: str | None = Field(None, description="reason or feedback; at most 4000 characters")
    assignee: int | None = Field(None, description="staff id: required to dispatch, optional to reopen")


def if_match_version(value: str | None) -> int:
    """The version an If-Match header names: "3", W/"3" or 3."""
    hint = 'send the incident\'s ETag from GET /v1/incidents/{id}, e.g. If-Match: "3"'
    if value is None or value.strip() == "":
        raise PreconditionRequired(f"If-Match is required to change an incident: {hint}")
    v = value.strip()
    if v == "*":
        raise PreconditionRequired(f"If-Match: * does not protect against lost updates: {hint}")
    v = v.removeprefix("W/")
    if len(v) >= 2 and v[0] == v[-1] == '"':
        v = v[1:-1]
    if not (v.isascii() and v.isdigit() and len(v) <= 9):
        raise PreconditionFailed(f"If-Match {value[:40]!r} does not name a version of this incident: {hint}")
    return int(v)


def etag(version: int) -> str:
    return f'"{version}"'


def report_batcher(app: FastAPI) -> Batcher[reports.ReportRequest, reports.Outcome]:
    """The app's report writer: concurrent reports share transactions (gridmap.batching)."""
    batcher = getattr(app.state, "reports", None)
    if batcher is None:
        settings = api_settings()
        batcher = app.state.reports = Batcher(
            reports.ReportWriter(app.state.engine),
            writers=settings.report_writers, max_batch=settings.report_batch, name="reports",
        )  # fmt: skip
    return batcher


REPORT_HEADERS = [
    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": reports.MAX_KEY_LENGTH},
     "description": "repeat a request safely: same key + same body → same response"},
]  # fmt: skip


def _report_body(raw: bytes) -> IncidentIn:
    """The request body as FastAPI would parse it, with the same errors (json, missing, fields)."""
    if not raw.strip():
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise RequestValidationError([{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error",
                                       "ctx": {"error": reason}}]) from None  # fmt: skip
    try:
        return IncidentIn.model_validate(data, from_attributes=True)  # the wording FastAPI gives
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


# The hot path reads its body and headers itself: FastAPI's per-parameter machinery cost about
# as much per report as the Python side of writing it. Documented through openapi_extra.
@router.post(
    "/incidents",
    status_code=201,
    response_model=None,
    summary="Report an incident (上报案件); honours Idempotency-Key",
    response_description="the incident as a GeoJSON Feature with `duplicates`: open cases of the same category within 50 m and 24 h",
    openapi_extra={"parameters": REPORT_HEADERS, "requestBody": {"required": True, "content": {
        "application/json": {"schema": IncidentIn.model_json_schema(ref_template="#/components/schemas/{model}")}}}},
)  # fmt: skip
async def create_incident(request: Request) -> Response:
    principal = await authenticate(request)
    await refuse_unless(request, principal, "incidents.report")
    payload = _report_body(await request.body())
    key = request.headers.get("idempotency-key")
    report = reports.ReportRequest(
        **payload.model_dump(), reporter_id=principal.id if principal.kind == "user" else None, key=key,
        caller=f"{principal.kind}:{principal.id}",  # idempotency keys are the caller's own
        body=payload.model_dump(mode="json", exclude_unset=True) if key is not None else None,
    )  # fmt: skip
    outcome = await report_batcher(request.app).submit(report)
    if isinstance(outcome, BaseException):
        raise outcome
    out = {"Location": f"/v1/incidents/{outcome.id}", "ETag": etag(outcome.version)}
    if outcome.replayed:
        out["Idempotent-Replayed"] = "true"
    return Response(outcome.text.encode(), status_code=outcome.status, headers=out, media_type=GEOJSON)


@router.get("/incidents", summary="Incidents as GeoJSON, newest first, with filters and stable pages (案件列表)")
def list_incidents(
    request: Request,
    session: SessionDep,
    principal: Annotated[Principal, allowed("incidents.read")],
    bbox: Annotated[str | None, Query(description="minlon,minlat,maxlon,maxlat (WGS84)")] = None,
    grid: Annotated[str | None, Query(description="15-digit grid code (the grid responsible at report time)")] = None,
    community: Annotated[str | None, Query(description="12-digit community code")] = None,
    street: Annotated[str | None, Query(description="9-digit street code")] = None,
    district: Annotated[str | None, Query(description="6-digit district code")] = None,
    status: Annotated[list[str] | None, Query(description="repeatable: reported, registered, …")] = None,
    category: Annotated[str | None, Query(description="category code; a major class includes its subclasses")] = None,
    severity: Annotated[list[int] | None, Query(description="repeatable: 1–4")] = None,
    source: Annotated[list[str] | None, Query(description="repeatable: hotline, citizen_app, …")] = None,
    level: Annotated[list[str] | None, Query(description="repeatable escalation level: grid, community, street, district")] = None,
    assignee: Annotated[int | None, Query(description="staff id of the assignee")] = None,
    reported_from: Annotated[dt.datetime | None, Query(description="reported at or after (ISO 8601 with zone)")] = None,
    reported_to: Annotated[dt.datetime | None, Query(description="reported before (ISO 8601 with zone)")] = None,
    overdue: Annotated[bool | None, Query(description="true: dispatched or in progress past the deadline")] = None,
    limit: Annotated[int, Query(description=f"page size, at most {svc.MAX_PAGE}")] = svc.DEFAULT_PAGE,
    cursor: Annotated[str | None, Query(description="from the `next` link of the previous page")] = None,
    crs: CrsQuery = None,
) -> JSONResponse:
    page = svc.list_incidents(
        session, bbox=parse_bbox(bbox), grid=grid, community=community, street=street, district=district,
        status=status or (), category=category, severity=severity or (), source=source or (), level=level or (),
        assignee=assignee, reported_from=reported_from, reported_to=reported_to, overdue=overdue, limit=limit,
        cursor=cursor, crs=crs, scope=access.reach(session, principal, "incidents.read"),
    )  # fmt: skip
    next_cursor = page.pop("next_cursor")
    links = [{"rel": "self", "type": GEOJSON, "href": str(request.url)}]
    if next_cursor:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"] + [("cursor", next_cursor)]
        links.append({"rel": "next", "type": GEOJSON, "href": str(request.url.replace(query=urlencode(query)))})
    page["links"] = links
    return JSONResponse(page, media_type=GEOJSON)


@router.get("/incidents/{ref}", summary="One incident with its full event history (案件详情); ETag = version")
def get_incident(session: SessionDep, principal: Annotated[Principal, allowed("incidents.read")], ref: str,
                 crs: CrsQuery = None) -> JSONResponse:  # fmt: skip
    feature = svc.get_incident(session, ref=ref, crs=crs, scope=access.reach(session, principal, "incidents.read"))
    return JSONResponse(feature, headers={"ETag": etag(feature["properties"]["version"])}, media_type=GEOJSON)


@router.post(
    "/incidents/{ref}/transitions",
    summary="Move an incident through the workflow (立案/派遣/处置/核查/结案/升级/返工); needs If-Match",
)
def transition(
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    ref: str,
    payload: TransitionIn,
    if_match: Annotated[str | None, Header(alias="If-Match", description='the ETag read, e.g. "3"')] = None,
    crs: CrsQuery = None,
) -> JSONResponse:
    if payload.action in access.ACTION_FUNCTION:
        require_audited(request, principal, access.ACTION_FUNCTION[payload.action])
    version = if_match_version(if_match)
    feature = svc.transition(
        session, ref=ref, action=payload.action, version=version, note=payload.note, assignee=payload.assignee,
        crs=crs, principal=principal, scope=access.reach(session, principal, "incidents.read"),
    )  # fmt: skip
    return JSONResponse(feature, headers={"ETag": etag(feature["properties"]["version"])}, media_type=GEOJSON)


@router.get("/workflow", summary="The case workflow: statuses, actions and transitions (案件流程)")
def describe_workflow(principal: PrincipalDep) -> dict[str, Any]:
    return workflow.describe()


@router.post("/sla/tick", summary="Escalate overdue cases one level (超期自动升级); safe to repeat")
def sla_tick(session: SessionDep, principal: Annotated[Principal, allowed("sla.tick")]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    escalated = svc.sla_tick(session, now=now)
    return {"at": now.isoformat(), "count": len(escalated), "escalated": escalated}


@router.get("/kpis", summary="KPIs per grid, community, street or staff member (考核指标)")
def kpis(
    session: SessionDep,
    principal: Annotated[Principal, allowed("kpis.read")],
    level: Annotated[str, Query(description="grid, community, street or staff")],
    reported_from: Annotated[
        dt.datetime | None, Query(alias="from", description="cases reported at or after (ISO 8601 with zone); default 30 days before `to`")
    ] = None,
    reported_to: Annotated[dt.datetime | None, Query(alias="to", description="cases reported before; default now")] = None,
    area: Annotated[str | None, Query(description="only within this district, street, community or grid code")] = None,
) -> dict[str, Any]:
    return kpi_svc.kpis(session, level=level, reported_from=reported_from, reported_to=reported_to, area=area,
                        scope=access.reach(session, principal, "kpis.read"))  # fmt: skip
