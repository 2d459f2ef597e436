"""Buildings (楼栋): grid staff read and correct the buildings of their grids; roles that work
city-wide read all of them (a building's footprint, address and use are not personal data).

A building's grid follows its location and cannot be set; a building outside the caller's
reach does not exist for them (404).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import audit, vocab
from gridmap.access import Scope, page_filter, reach, require
from gridmap.auth import Principal
from gridmap.errors import InvalidInput, NotFound

MAX_PAGE = 1000
FEATURE = """json_build_object('type', 'Feature', 'id', b.id, 'geometry', ST_AsGeoJSON(b.geom, 7)::json,
  'properties', json_build_object('id', b.id, 'code', b.code, 'name', b.name, 'address', b.address, 'use', b.use,
    'floors', b.floors, 'households', b.households, 'grid_code', b.grid_code))"""


def building_scope(session: Session, principal: Principal) -> Scope:
    return reach(session, principal, "buildings.read")


def list_buildings(session: Session, scope: Scope, *, grid: str | None = None, limit: int = 100,
                   after: int | None = None) -> dict[str, Any]:  # fmt: skip
    where, params = page_filter("b", scope, grid=grid, limit=limit, after=after, max_page=MAX_PAGE)
    params["limit"] = limit + 1
    rows = session.execute(text(f"SELECT b.id, {FEATURE} AS f FROM building b WHERE {' AND '.join(where)} "
                                "ORDER BY b.id LIMIT :limit"), params).all()  # fmt: skip
    page = rows[:limit]
    return {"type": "FeatureCollection", "features": [dict(r.f) for r in page],
            "next_after": page[-1].id if len(rows) > limit else None}  # fmt: skip


def get_building(session: Session, scope: Scope, building_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT b.grid_code, {FEATURE} AS f FROM building b WHERE b.id = :id"), {"id": building_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No building {building_id}")
    return dict(row.f)


def update_building(session: Session, principal: Principal, scope: Scope, building_id: int,
                    changes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Correct name, address, use or floors of a building of the caller's grids."""
    require(principal, "buildings.write")
    get_building(session, scope, building_id)  # 404 outside the caller's grids
    sets: dict[str, Any] = {}
    for name, limit in (("name", 100), ("address", 200)):
        if name in changes:
            value = (changes[name] or "").strip() or None
            if value is not None and (len(value) > limit or "\x00" in value):
                raise InvalidInput(f"Invalid value for parameter {name}: at most {limit} characters")
            sets[name] = value
    if "use" in changes:
        if changes["use"] not in vocab.BUILDING_USES:
            raise InvalidInput(f"Invalid value for parameter use: one of {', '.join(vocab.BUILDING_USES)}")
        sets["use"] = changes["use"]
    if "floors" in changes:
        floors = changes["floors"]
        if floors is not None and not 1 <= floors <= 200:
            raise InvalidInput("Invalid value for parameter floors: 1 to 200")
        sets["floors"] = floors
    if sets:
        assignments = ", ".join(f"{k} = :{k}" for k in sets)  # keys from the fixed names above
        session.execute(text(f"UPDATE building SET {assignments} WHERE id = :id"), {**sets, "id": building_id})
        audit.record(session, principal, "update", object_type="building", object_ids=[building_id],
                     detail={"fields": sorted(sets)})  # fmt: skip
    return get_building(session, scope, building_id)
