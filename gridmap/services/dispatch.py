"""Who to send: the responsible grid's workers, then the nearest available staff; GPS positions."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import crs as crs_mod
from gridmap.access import Scope
from gridmap.errors import Conflict, InvalidInput, NotFound

SPEED_M_S = 4.2  # an e-bike in town, 15 km/h
DETOUR = 1.3  # street distance / straight-line distance in a street grid
SETUP_MIN = 2.0  # to leave what one is doing
STALE_MIN = 120  # a last position older than this is flagged
MAX_POSITIONS = 10_000
FUTURE_TOLERANCE = dt.timedelta(minutes=5)
MAX_AGE = dt.timedelta(days=7)

CANDIDATE_COLUMNS = """
    s.id, s.name, s.role, s.duty_status, s.phone, s.last_position_at,
    ST_X(s.last_position) AS lon, ST_Y(s.last_position) AS lat,
    ST_Distance(s.last_position::geography, i.geom::geography) AS distance_m,
    (SELECT array_agg(sc.code ORDER BY sc.code) FROM staff_scope sc WHERE sc.staff_id = s.id) AS scope
"""


def eta_minutes(distance_m: float | None) -> float | None:
    """Straight-line distance → minutes: detour factor, e-bike speed, a little time to set off."""
    if distance_m is None:
        return None
    return round(SETUP_MIN + distance_m * DETOUR / SPEED_M_S / 60.0, 1)


def candidates(session: Session, *, incident_id: int, limit: int = 10, now: dt.datetime | None = None,
               scope: Scope | None = None) -> dict[str, Any]:  # fmt: skip
    """The grid's own workers (on duty first), then the nearest N available staff by last position;
    an incident outside the caller's grids (`scope`) does not exist for him."""
    if not 1 <= limit <= 100:
        raise InvalidInput("Invalid value for parameter limit: must be between 1 and 100")
    inc = session.execute(
        text("SELECT id, code, status, grid_code, ST_X(geom), ST_Y(geom) FROM incident WHERE id = :id"), {"id": incident_id}
    ).first()
    if inc is None or (scope is not None and not scope.covers(inc.grid_code)):
        raise NotFound(f"No incident {incident_id}")
    if inc.status in ("closed", "rejected"):
        raise Conflict(f"Incident {inc.code} is {inc.status}: there is no one to send")
    now = now or dt.datetime.now(dt.UTC)
    own = session.execute(
        text(
            f"""SELECT {CANDIDATE_COLUMNS} FROM staff s JOIN incident i ON i.id = :id
            WHERE s.active AND s.role = 'grid_worker'
              AND EXISTS (SELECT 1 FROM staff_scope sc WHERE sc.staff_id = s.id AND sc.level = 'grid' AND sc.code = i.grid_code)
            ORDER BY (s.duty_status = 'on_duty') DESC, distance_m NULLS LAST, s.id"""
        ),
        {"id": incident_id},
    ).mappings().all()  # fmt: skip
    exclude = [r["id"] for r in own] or [0]
    # KNN on the GiST index of last_position (ordering by <-> on the geometry), then exact metres
    nearest = session.execute(
        text(
            f"""SELECT * FROM (
                SELECT {CANDIDATE_COLUMNS} FROM staff s JOIN incident i ON i.id = :id
                WHERE s.active AND s.duty_status = 'on_duty' AND s.last_position IS NOT NULL
                  AND s.role IN ('grid_worker', 'grid_leader') AND s.id <> ALL(:exclude)
                ORDER BY s.last_position <-> i.geom LIMIT :k) x
            ORDER BY distance_m, id LIMIT :n"""
        ),
        {"id": incident_id, "exclude": exclude, "k": limit * 3, "n": limit},
    ).mappings().all()  # fmt: skip
    return {
        "incident": {"id": inc.id, "code": inc.code, "status": inc.status, "grid_code": inc.grid_code},
        "grid_workers": [_person(r, now) for r in own],
        "nearest": [_person(r, now) for r in nearest],
        "eta_model": {"speed_m_s": SPEED_M_S, "detour_factor": DETOUR, "setup_min": SETUP_MIN},
    }


def _person(row: Any, now: dt.datetime) -> dict[str, Any]:
    seen = row["last_position_at"]
    age = (now - seen).total_seconds() / 60 if seen else None
    dist = float(row["distance_m"]) if row["distance_m"] is not None else None
    return {
        "id": row["id"], "name": row["name"], "role": row["role"], "duty_status": row["duty_status"],
        "phone": row["phone"], "scope": list(row["scope"] or []),
        "distance_m": round(dist, 1) if dist is not None else None, "eta_min": eta_minutes(dist),
        "last_seen_at": seen.isoformat() if seen else None,
        "position_stale": age is None or age > STALE_MIN,
        "position": {"lon": row["lon"], "lat": row["lat"]} if row["lon"] is not None else None,
    }  # fmt: skip


def ingest_positions(session: Session, *, staff_id: int, positions: list[dict[str, Any]], crs: str | None,
                     now: dt.datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Store a batch of GPS pings (all or nothing) and move the staff member's last position."""
    now = now or dt.datetime.now(dt.UTC)
    name = crs_mod.canonical_crs(crs)
    if not positions:
        raise InvalidInput("Invalid value for positions: send at least one position")
    if len(positions) > MAX_POSITIONS:
        raise InvalidInput(f"Invalid value for positions: at most {MAX_POSITIONS:,} per request, got {len(positions):,}")
    exists = session.execute(text("SELECT active FROM staff WHERE id = :id"), {"id": staff_id}).scalar()
    if exists is None:
        raise NotFound(f"No staff member {staff_id}")
    if not exists:
        raise Conflict(f"Staff member {staff_id} is disabled; positions are not accepted")
    lon = np.array([p["lon"] for p in positions], dtype=float)
    lat = np.array([p["lat"] for p in positions], dtype=float)
    at = [p["at"] for p in positions]
    problems = []
    in_range = crs_mod.lonlat_in_range(lon, lat)
    for k, t in enumerate(at):
        if not in_range[k]:
            problems.append(f"positions[{k}]: lon must lie in [-180, 180] and lat in [-90, 90]")
        elif t.tzinfo is None:
            problems.append(f"positions[{k}].at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
        elif t > now + FUTURE_TOLERANCE:
            problems.append(f"positions[{k}].at: {t.isoformat()} is in the future")
        elif t < now - MAX_AGE:
            problems.append(f"positions[{k}].at: {t.isoformat()} is more than 7 days old")
    if not problems and name in ("GCJ02", "BD09"):
        outside = np.flatnonzero(~crs_mod.in_china(lon, lat))
        problems += [f"positions[{k}]: outside China, where {name} is not defined" for k in outside[:20]]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidInput(f"{len(problems)} of {len(positions)} positions are invalid; nothing was stored: " + "; ".join(problems[:5]) + more)
    lon84, lat84 = crs_mod.to_wgs84(lon, lat, name)
    acc = [p.get("accuracy_m") for p in positions]
    session.execute(
        text(
            """INSERT INTO patrol_ping (staff_id, at, geom, accuracy_m)
               SELECT :sid, t, ST_SetSRID(ST_MakePoint(x, y), 4326), a
               FROM unnest(CAST(:at AS timestamptz[]), CAST(:x AS float8[]), CAST(:y AS float8[]), CAST(:acc AS numeric[])) AS u(t, x, y, a)"""
        ),
        {"sid": staff_id, "at": at, "x": np.asarray(lon84).tolist(), "y": np.asarray(lat84).tolist(), "acc": acc},
    )  # fmt: skip
    k = int(np.argmax([t.timestamp() for t in at]))
    moved = session.execute(
        text(
            """UPDATE staff SET last_position = ST_SetSRID(ST_MakePoint(:x, :y), 4326), last_position_at = :at
               WHERE id = :id AND (last_position_at IS NULL OR last_position_at < :at) RETURNING id"""
        ),
        {"x": float(np.asarray(lon84)[k]), "y": float(np.asarray(lat84)[k]), "at": at[k], "id": staff_id},
    ).first()  # fmt: skip
    return {"staff_id": staff_id, "accepted": len(positions), "last_position_updated": moved is not None,
            "last_position_at": at[k].isoformat()}  # fmt: skip
