"""Grids and the administrative hierarchy, as GeoJSON built by PostGIS."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.errors import InvalidInput, NotFound

MAX_FEATURES = 5000

# the grid version in force at :at — valid_from inclusive, valid_to exclusive
IN_FORCE = "g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)"

GRID_FEATURE = """
SELECT json_build_object(
  'type', 'Feature', 'id', g.code,
  'geometry', ST_AsGeoJSON(g.geom, 7)::json,
  'properties', json_build_object(
     'code', g.code, 'name', g.name, 'kind', g.kind, 'version', g.id,
     'valid_from', g.valid_from, 'valid_to', g.valid_to,
     'community', c.code, 'community_name', c.name,
     'street', s.code, 'street_name', s.name, 'district', d.code, 'district_name', d.name))
FROM grid g
JOIN admin_area c ON c.id = g.community_id
JOIN admin_area s ON s.id = c.parent_id
JOIN admin_area d ON d.id = s.parent_id
"""


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """minlon,minlat,maxlon,maxlat from a query string, or a clear error."""
    if bbox is None:
        return None
    try:
        minx, miny, maxx, maxy = (float(v) for v in bbox.split(","))
    except ValueError:
        raise InvalidInput("Invalid value for parameter bbox: expected minlon,minlat,maxlon,maxlat") from None
    if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
        raise InvalidInput("Invalid value for parameter bbox: longitudes must lie in [-180, 180], latitudes in [-90, 90]")
    if minx >= maxx:
        raise InvalidInput("Invalid value for parameter bbox: minlon must be less than maxlon")
    if miny >= maxy:
        raise InvalidInput("Invalid value for parameter bbox: minlat must be less than maxlat")
    return minx, miny, maxx, maxy


def _at(at: dt.datetime | None) -> dt.datetime:
    if at is None:
        return dt.datetime.now(dt.UTC)
    if at.tzinfo is None:
        raise InvalidInput("Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    return at


def list_grids(session: Session, *, at: dt.datetime | None = None, area: str | None = None,
               bbox: tuple[float, float, float, float] | None = None, limit: int = 1000) -> dict[str, Any]:  # fmt: skip
    """Grids in force at `at`, optionally within an admin area (code prefix) or a lon/lat bbox."""
    if not 1 <= limit <= MAX_FEATURES:
        raise InvalidInput(f"Invalid value for parameter limit: must be between 1 and {MAX_FEATURES}")
    where, params = [IN_FORCE], {"at": _at(at), "limit": limit}
    if area:
        if not area.isdigit() or len(area) not in (6, 9, 12):
            raise InvalidInput("Invalid value for parameter area: a 6-, 9- or 12-digit district, street or community code")
        where.append("g.code LIKE :prefix")
        params["prefix"] = area + "%"
    if bbox:
        minx, miny, maxx, maxy = bbox
        where.append("g.geom && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)")
        params |= {"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}
    sql = f"{GRID_FEATURE} WHERE {' AND '.join(where)} ORDER BY g.code LIMIT :limit"
    features = session.execute(text(sql), params).scalars().all()
    return {"type": "FeatureCollection", "features": features, "numberReturned": len(features)}


def get_grid(session: Session, *, code: str, at: dt.datetime | None = None) -> dict[str, Any]:
    if not (len(code) == 15 and code.isdigit()):
        raise InvalidInput(f"Invalid grid code {code!r}: a grid code has 15 digits")
    row = session.execute(text(f"{GRID_FEATURE} WHERE g.code = :code AND {IN_FORCE}"), {"code": code, "at": _at(at)}).scalar()
    if row is None:
        raise NotFound(f"No grid {code} in force at that time")
    return row


def categories(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        text("SELECT code, parent_code, name_zh, name_en, level, time_limit::float AS time_limit, time_unit, tags "
             "FROM category WHERE active ORDER BY code")  # fmt: skip
    ).mappings()
    return [dict(r) for r in rows]
