"""Incidents (案件): report (idempotently), list and read as GeoJSON, move through the workflow.

Every state change goes through `gridmap.workflow.apply`, then one guarded UPDATE
(``WHERE id = :id AND version = :version``) and one appended event in the same transaction, so
two writers holding the same version cannot both win and the log always replays to the row.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import access, vocab, workflow
from gridmap import crs as crs_mod
from gridmap.access import Scope
from gridmap.auth import Principal
from gridmap.errors import InvalidInput, NotFound, PreconditionFailed
from gridmap.workcal import calendar

MAX_PAGE = 1000
DEFAULT_PAGE = 100
TEXT_LIMITS = {"title": 200, "description": 4000, "address": 500, "note": 4000}
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
NOTIFY_CHANNEL = "gridmap_incidents"
CODE_LENGTHS = {"district": 6, "street": 9, "community": 12, "grid": 15}

# an incident as a GeoJSON Feature, from a row `i` with the columns of `incident` and its
# category `c`; reporting builds its answers with the same expression over rows not yet read
# back, adding members of its own at /*members*/
FEATURE_JSON = """json_build_object(
  'type', 'Feature', 'id', i.id,
  'geometry', ST_AsGeoJSON(i.geom, 7)::json,
  'properties', json_build_object(
    'id', i.id, 'code', i.code,
    'category', i.category_code, 'category_name', c.name_zh, 'category_name_en', c.name_en,
    'severity', i.severity, 'source', i.source, 'status', i.status, 'level', i.level,
    'title', i.title, 'description', i.description, 'address', i.address,
    'grid_code', i.grid_code, 'grid_version', i.grid_id, 'community', left(i.grid_code, 12),
    'street', left(i.grid_code, 9), 'district', left(i.grid_code, 6),
    'assignee_id', i.assignee_id, 'reporter_id', i.reporter_id,
    'reported_at', i.reported_at, 'registered_at', i.registered_at,
    'dispatched_at', i.dispatched_at, 'deadline_at', i.deadline_at,
    'resolved_at', i.resolved_at, 'closed_at', i.closed_at,
    'overdue', coalesce(i.status IN ('dispatched', 'in_progress') AND i.deadline_at < :now, false),
    'rework_count', i.rework_count, 'escalation_count', i.escalation_count,
    'version', i.version, 'is_synthetic', i.is_synthetic)/*members*/)"""

FEATURE_SQL = f"""
SELECT i.id, {FEATURE_JSON} AS feature, i.reported_at
FROM incident i JOIN category c ON c.code = i.category_code
"""

# the columns the workflow owns (CaseState) plus what deadlines need
STATE_SQL = """
SELECT i.id, i.code, i.status, i.reported_at, i.level, i.assignee_id, i.registered_at,
       i.dispatched_at, i.deadline_at, i.resolved_at, i.closed_at, i.rework_count,
       i.escalation_count, i.version, i.severity, i.grid_code, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
       c.time_limit::float AS time_limit, c.time_unit
FROM incident i JOIN category c ON c.code = i.category_code
"""

WRITE_STATE_SQL = text(
    """
    UPDATE incident SET status = :status, level = :level, assignee_id = :assignee_id,
      registered_at = :registered_at, dispatched_at = :dispatched_at, deadline_at = :deadline_at,
      resolved_at = :resolved_at, closed_at = :closed_at, rework_count = :rework_count,
      escalation_count = :escalation_count, version = :version, updated_at = now()
    WHERE id = :id AND version = :expected
    RETURNING id
    """
)

INSERT_EVENT_SQL = text(
    """
    INSERT INTO incident_event (incident_id, seq, action, from_status, to_status, actor_id, at, note, data)
    VALUES (:incident_id, :seq, :action, :from_status, :to_status, :actor_id, :at, :note, CAST(:data AS jsonb))
    """
)

EVENTS_SQL = text(
    """
    SELECT json_build_object('seq', e.seq, 'action', e.action, 'from_status', e.from_status,
      'to_status', e.to_status, 'actor_id', e.actor_id, 'actor_name', s.name, 'at', e.at,
      'note', e.note, 'data', e.data)
    FROM incident_event e LEFT JOIN staff s ON s.id = e.actor_id
    WHERE e.incident_id = :id ORDER BY e.seq
    """
)

def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ---------------------------------------------------------------------------------------------
# input checks: every message names the parameter and what is wrong with it
# ---------------------------------------------------------------------------------------------


def _text(name: str, value: str | None) -> str | None:
    """A free-text field: stripped, within its length limit, free of NUL (PostgreSQL refuses it)."""
    if value is None:
        return None
    value = value.strip()
    if "\x00" in value:
        raise InvalidInput(f"Invalid value for parameter {name}: must not contain NUL characters")
    limit = TEXT_LIMITS[name]
    if len(value) > limit:
        raise InvalidInput(f"Invalid value for parameter {name}: at most {limit} characters")
    return value or None


def _token(name: str, value: str, *, limit: int = 64) -> str:
    if "\x00" in value or len(value) > limit:
        raise InvalidInput(f"Invalid value for parameter {name}: {value[:limit]!r} is not valid")
    return value


def _aware(name: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        raise InvalidInput(f"Invalid value for parameter {name}: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    return value


def _id(name: str, value: int | None, *, limit: int = INT_MAX) -> int | None:
    if value is not None and not 1 <= value <= limit:
        raise InvalidInput(f"Invalid value for parameter {name}: {value} is not a valid id")
    return value


_CATEGORIES: dict[str, tuple[float, dict[str, Mapping[Any, Any]]]] = {}
CATEGORY_TTL_S = 60.0  # the taxonomy is small and changes rarely: re-read it once a minute
CATEGORY_MISS_S = 1.0  # an unknown code re-reads it at most once a second (a new category is seen soon)


def _category(session: Session, code: str) -> Mapping[Any, Any]:
    code = _token("category", code, limit=16)
    key = str(session.get_bind().engine.url)  # one cache per database
    loaded_at, table = _CATEGORIES.get(key, (0.0, {}))
    age = time.monotonic() - loaded_at
    if age > CATEGORY_TTL_S or (code not in table and age > CATEGORY_MISS_S):
        rows = session.execute(
            text("SELECT code, name_zh, time_limit::float AS time_limit, time_unit, active FROM category")
        ).mappings().all()  # fmt: skip
        table = {r["code"]: dict(r) for r in rows}
        _CATEGORIES[key] = (time.monotonic(), table)
    row = table.get(code)
    if row is None:
        raise InvalidInput(f"Unknown category {code!r}")
    return row


def _severity(value: int) -> int:
    if value not in vocab.SEVERITIES:
        choices = ", ".join(f"{k} ({zh} {en})" for k, (zh, en) in vocab.SEVERITIES.items())
        raise InvalidInput(f"Invalid value for parameter severity: {value} is not a severity; use {choices}")
    return value


def _choice(name: str, value: str, allowed: Mapping[str, Any] | Sequence[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"Invalid value for parameter {name}: {value[:64]!r} is not one of {', '.join(allowed)}")
    return value


def _code(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    n = CODE_LENGTHS[name]
    if not (len(value) == n and value.isascii() and value.isdigit()):
        raise InvalidInput(f"Invalid value for parameter {name}: a {name} code has {n} digits")
    return value


def point_to_wgs84(lon: float, lat: float, crs: str | None) -> tuple[float, float]:
    """Check an input point and convert it to WGS84 lon/lat (crs as users write it)."""
    name = crs_mod.canonical_crs(_token("crs", crs, limit=32) if crs else None)
    x, y = crs_mod.check_lonlat(lon, lat)
    wx, wy = crs_mod.to_wgs84(x, y, name)
    wx, wy = float(wx), float(wy)
    if not (math.isfinite(wx) and math.isfinite(wy) and -180 <= wx <= 180 and -90 <= wy <= 90):
        raise InvalidInput(f"Invalid value for parameters lon, lat: the point cannot be converted from {name} to WGS84")
    return wx, wy


def _staff(session: Session, staff_id: int, *, active: bool) -> bool:
    sql = "SELECT 1 FROM staff WHERE id = :id" + (" AND active" if active else "")
    return session.execute(text(sql), {"id": staff_id}).first() is not None


def _check_actor(session: Session, actor_id: int | None) -> None:
    if actor_id is not None and (not 1 <= actor_id <= INT_MAX or not _staff(session, actor_id, active=False)):
        raise InvalidInput(f"Unknown actor: no staff member with id {actor_id}")


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------


def _resolve(session: Session, ref: str | int, scope: Scope | None = None) -> int:
    """An incident's id from its numeric id or its code (AJyyyymmddnnnnnn); an incident outside
    the caller's grids (`scope`) does not exist for him."""
    s = str(ref).strip()
    if s.isascii() and s.isdigit():
        if len(s) > 19 or int(s) > BIGINT_MAX or int(s) < 1:
            raise NotFound(f"No incident {s}")
        found = session.execute(text("SELECT id, grid_code FROM incident WHERE id = :id"), {"id": int(s)}).first()
    elif s.upper().startswith("AJ") and s[2:].isascii() and s[2:].isdigit() and len(s) <= 24:
        found = session.execute(text("SELECT id, grid_code FROM incident WHERE code = :c"), {"c": s.upper()}).first()
    else:
        raise InvalidInput(f"Invalid incident reference {s[:40]!r}: give its numeric id or its code (AJ…)")
    if found is None or (scope is not None and not scope.covers(found.grid_code)):
        raise NotFound(f"No incident {s}")
    return int(found.id)


def _convert(features: list[dict[str, Any]], crs: str) -> None:
    """Convert Point coordinates in place from WGS84 to the output crs."""
    located = [f for f in features if f.get("geometry")]
    if crs == "EPSG:4326" or not located:
        return
    lon = [f["geometry"]["coordinates"][0] for f in located]
    lat = [f["geometry"]["coordinates"][1] for f in located]
    xs, ys = crs_mod.from_wgs84(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float), crs)
    for f, x, y in zip(located, np.atleast_1d(xs), np.atleast_1d(ys), strict=True):
        if math.isfinite(x) and math.isfinite(y):
            f["geometry"]["coordinates"] = [round(float(x), 7), round(float(y), 7)]
        else:  # outside the area where the offset system (GCJ-02, BD-09) is defined
            f["geometry"] = None


def _feature(session: Session, incident_id: int, now: dt.datetime) -> dict[str, Any]:
    row = session.execute(text(FEATURE_SQL + " WHERE i.id = :id"), {"id": incident_id, "now": now}).first()
    if row is None:
        raise NotFound(f"No incident {incident_id}")
    return dict(row.feature)


def _load_state(session: Session, incident_id: int) -> Mapping[Any, Any]:
    row = session.execute(text(STATE_SQL + " WHERE i.id = :id"), {"id": incident_id}).mappings().first()
    if row is None:
        raise NotFound(f"No incident {incident_id}")
    return row


def get_incident(session: Session, *, ref: str | int, crs: str | None = None, now: dt.datetime | None = None,
                 scope: Scope | None = None) -> dict[str, Any]:  # fmt: skip
    """One incident as a GeoJSON Feature with its full event history and the actions it accepts now."""
    now = now or _now()
    out_crs = crs_mod.canonical_crs(_token("crs", crs, limit=32) if crs else None)
    incident_id = _resolve(session, ref, scope)
    feature = _feature(session, incident_id, now)
    state = workflow.CaseState.from_row(_load_state(session, incident_id))
    feature["events"] = list(session.execute(EVENTS_SQL, {"id": incident_id}).scalars())
    feature["allowed_actions"] = workflow.allowed_actions(state, at=now, rules=workflow.default_rules())
    _convert([feature], out_crs)
    return feature


def _encode_cursor(reported_at: dt.datetime, incident_id: int) -> str:
    raw = json.dumps([reported_at.isoformat(), incident_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    bad = InvalidInput("Invalid value for parameter cursor: not a cursor from this API; start again without it")
    if len(cursor) > 200:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at_s, incident_id = json.loads(raw)
        at = dt.datetime.fromisoformat(at_s)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise bad from None
    if at.tzinfo is None or type(incident_id) is not int or not 1 <= incident_id <= BIGINT_MAX:
        raise bad
    return at, incident_id


def list_incidents(
    session: Session,
    *,
    bbox: tuple[float, float, float, float] | None = None,
    grid: str | None = None,
    community: str | None = None,
    street: str | None = None,
    district: str | None = None,
    status: Sequence[str] = (),
    category: str | None = None,
    severity: Sequence[int] = (),
    source: Sequence[str] = (),
    level: Sequence[str] = (),
    assignee: int | None = None,
    reported_from: dt.datetime | None = None,
    reported_to: dt.datetime | None = None,
    overdue: bool | None = None,
    limit: int = DEFAULT_PAGE,
    cursor: str | None = None,
    crs: str | None = None,
    now: dt.datetime | None = None,
    scope: Scope | None = None,
) -> dict[str, Any]:
    """Incidents newest first as a GeoJSON FeatureCollection, a page at a time; only those of
    the caller's grids when a `scope` is given.

    Pages are keyset pages on (reported_at, id) descending: stable while cases are added, and
    as fast on the last page as on the first. `next_cursor` is None on the last page.
    """
    now = now or _now()
    if limit < 1:
        raise InvalidInput("Invalid value for parameter limit: at least 1")
    if limit > MAX_PAGE:
        raise InvalidInput(f"Invalid value for parameter limit: at most {MAX_PAGE} per page")
    out_crs = crs_mod.canonical_crs(_token("crs", crs, limit=32) if crs else None)
    where: list[str] = []
    params: dict[str, Any] = {"now": now, "limit": limit + 1}
    if scope is not None:
        term, scope_params = access.scope_filter("i", scope)
        where.append(term)
        params |= scope_params
    if bbox is not None:
        where.append("i.geom && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)")
        params |= dict(zip(("minx", "miny", "maxx", "maxy"), bbox, strict=True))
    if _code("grid", grid):
        where.append("i.grid_code = :grid")
        params["grid"] = grid
    for name, value in (("community", community), ("street", street), ("district", district)):
        if _code(name, value):
            where.append(f"i.grid_code LIKE :{name}")  # name from the fixed tuple above
            params[name] = f"{value}%"
    if status:
        params["status"] = [_choice("status", s, vocab.INCIDENT_STATUSES) for s in status]
        where.append("i.status = ANY(:status)")
    if category is not None:
        params["category"] = _category(session, category)["code"] + "%"  # a major class includes its subclasses
        where.append("i.category_code LIKE :category")
    if severity:
        params["severity"] = [_severity(s) for s in severity]
        where.append("i.severity = ANY(:severity)")
    if source:
        params["source"] = [_choice("source", s, vocab.INCIDENT_SOURCES) for s in source]
        where.append("i.source = ANY(:source)")
    if level:
        params["level"] = [_choice("level", s, vocab.ESCALATION_LEVELS) for s in level]
        where.append("i.level = ANY(:level)")
    if _id("assignee", assignee) is not None:
        where.append("i.assignee_id = :assignee")
        params["assignee"] = assignee
    if _aware("reported_from", reported_from):
        where.append("i.reported_at >= :reported_from")
        params["reported_from"] = reported_from
    if _aware("reported_to", reported_to):
        where.append("i.reported_at < :reported_to")
        params["reported_to"] = reported_to
    if reported_from and reported_to and reported_from >= reported_to:
        raise InvalidInput("Invalid value for parameter reported_to: must be later than reported_from")
    if overdue is not None:
        cond = "coalesce(i.status IN ('dispatched', 'in_progress') AND i.deadline_at < :now, false)"
        where.append(cond if overdue else f"NOT {cond}")
    if cursor:
        at, last_id = _decode_cursor(cursor)
        # the first term lets the reported_at index bound the scan
        where.append("i.reported_at <= :c_at AND (i.reported_at < :c_at OR i.id < :c_id)")
        params |= {"c_at": at, "c_id": last_id}
    sql = FEATURE_SQL + (" WHERE " + " AND ".join(where) if where else "")
    sql += " ORDER BY i.reported_at DESC, i.id DESC LIMIT :limit"
    rows = session.execute(text(sql), params).all()
    page = rows[:limit]
    features = [dict(r.feature) for r in page]
    _convert(features, out_crs)
    next_cursor = _encode_cursor(page[-1].reported_at, page[-1].id) if len(rows) > limit else None
    return {
        "type": "FeatureCollection",
        "features": features,
        "numberReturned": len(features),
        "timeStamp": now.isoformat(),
        "coordinateSystem": out_crs,
        "next_cursor": next_cursor,
    }


# ---------------------------------------------------------------------------------------------
# case numbers and notifications (reporting itself is in gridmap.services.reports)
# ---------------------------------------------------------------------------------------------


def ensure_case_sequences(session: Session, *, around: dt.datetime | None = None) -> None:
    """Create yesterday's, today's and the next days' case sequences ahead of the first report."""
    day = (around or _now()).astimezone(calendar().tz).date() - dt.timedelta(days=1)
    session.execute(text("SELECT gridmap_ensure_case_sequences(:day, 4)"), {"day": day})


def _notify(session: Session, payload: Mapping[str, Any]) -> None:
    """Tell listeners (the command center map, the escalation level's staff) at commit."""
    session.execute(text("SELECT pg_notify(:ch, :p)"), {"ch": NOTIFY_CHANNEL, "p": json.dumps(payload, ensure_ascii=False)})


def _append_event(session: Session, incident_id: int, event: workflow.Event) -> None:
    session.execute(INSERT_EVENT_SQL, {
        "incident_id": incident_id, "seq": event.seq, "action": event.action,
        "from_status": event.from_status, "to_status": event.to_status, "actor_id": event.actor_id,
        "at": event.at, "note": event.note,
        "data": json.dumps(event.data, ensure_ascii=False) if event.data else None,
    })  # fmt: skip


# ---------------------------------------------------------------------------------------------
# the workflow
# ---------------------------------------------------------------------------------------------


def _write(session: Session, incident_id: int, row: Mapping[Any, Any], step: workflow.Step) -> bool:
    """Write the new state if the row still has the version it was read at; append the event."""
    values = {f: getattr(step.state, f) for f in workflow.CaseState.__dataclass_fields__}
    values.pop("reported_at")
    done = session.execute(WRITE_STATE_SQL, {**values, "id": incident_id, "expected": row["version"]}).first()
    if done is None:
        return False
    _append_event(session, incident_id, step.event)
    _notify(session, {"id": incident_id, "code": row["code"], "action": step.event.action,
                      "status": step.state.status, "level": step.state.level, "grid_code": row["grid_code"],
                      "lon": row["lon"], "lat": row["lat"]})  # fmt: skip
    return True


def _stale(version: int, current: int) -> PreconditionFailed:
    return PreconditionFailed(
        f"The incident has changed since you read it: you sent version {version}, it is now at version {current}; "
        "GET it again and retry",
        current_version=current,
    )  # fmt: skip


def transition(
    session: Session,
    *,
    ref: str | int,
    action: str,
    version: int,
    note: str | None = None,
    assignee: int | None = None,
    actor_id: int | None = None,
    crs: str | None = None,
    now: dt.datetime | None = None,
    principal: Principal | None = None,
    scope: Scope | None = None,
) -> dict[str, Any]:
    """Apply a workflow action to the incident at `version` (the ETag the client read); with a
    `principal`, he is the actor and his role must allow the action (gridmap.access).

    404 unknown incident · 412 `version` is not current (also when a concurrent writer wins)
    · 409 the action is not allowed in the current state · 422 missing or bad inputs.
    Returns the incident as `get_incident` does.
    """
    now = now or _now()
    crs_mod.canonical_crs(_token("crs", crs, limit=32) if crs else None)  # refuse a bad crs before writing
    incident_id = _resolve(session, ref, scope)
    row = _load_state(session, incident_id)
    if principal is not None:
        access.check_action(principal, action, row["assignee_id"])
        actor_id = principal.id if principal.kind == "user" else None
    if version != row["version"]:
        raise _stale(version, row["version"])
    state = workflow.CaseState.from_row(row)
    limit = workflow.time_limit(row["time_limit"], row["time_unit"], row["severity"])
    step = workflow.apply(state, action, at=now, actor_id=actor_id, note=_text("note", note), assignee=assignee,
                          limit=limit, rules=workflow.default_rules())  # fmt: skip
    if assignee is not None and (not 1 <= assignee <= INT_MAX or not _staff(session, assignee, active=True)):
        raise InvalidInput(f"Invalid value for parameter assignee: no active staff member with id {assignee}")
    _check_actor(session, actor_id)
    if not _write(session, incident_id, row, step):
        current = session.execute(text("SELECT version FROM incident WHERE id = :id"), {"id": incident_id}).scalar_one()
        raise _stale(version, int(current))
    return get_incident(session, ref=incident_id, crs=crs, now=now)


def sla_tick(session: Session, *, now: dt.datetime | None = None) -> list[int]:
    """Escalate every overdue case one level (grid → community → street → district).

    Overdue = dispatched or in progress with the deadline passed. Escalation clears the
    deadline, so a second tick does not escalate the same case again; cases already at the
    district level stay overdue (flagged in lists and KPIs). Rows locked by a concurrent
    transition are skipped and caught by the next tick.
    """
    now = _aware("now", now) or _now()
    ensure_case_sequences(session, around=now)  # keep the next days' case numbers ready
    rows = session.execute(
        text(STATE_SQL + " WHERE i.status = ANY(:running) AND i.deadline_at < :now AND i.level <> :top "
             "ORDER BY i.deadline_at, i.id FOR UPDATE OF i SKIP LOCKED"),
        {"running": list(workflow.CLOCK_RUNNING), "now": now, "top": workflow.TOP_LEVEL},
    ).mappings().all()  # fmt: skip
    escalated = []
    for row in rows:
        state = workflow.CaseState.from_row(row)
        up = workflow.next_level(state.level)
        step = workflow.apply(state, "escalate", at=now, note=f"超期自动升级 overdue: escalated to {up}",
                              data={"reason": "overdue", "deadline_at": row["deadline_at"].isoformat()})  # fmt: skip
        if _write(session, row["id"], row, step):
            escalated.append(int(row["id"]))
    return escalated
