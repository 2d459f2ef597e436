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
from gridmap.access import Scope, cursor, page_filter, page_order, reach, require
from gridmap.auth import Principal
from gridmap.errors import Conflict, Forbidden, InvalidInput, NotFound

MAX_PAGE = 1000
FEATURE = """json_build_object('type', 'Feature', 'id', b.id, 'geometry', ST_AsGeoJSON(b.geom, 7)::json,
  'properties', json_build_object('id', b.id, 'code', b.code, 'name', b.name, 'address', b.address, 'use', b.use,
    'floors', b.floors, 'households', b.households, 'grid_code', b.grid_code))"""


def building_scope(session: Session, principal: Principal) -> Scope:
    return reach(session, principal, "buildings.read")


def list_buildings(session: Session, scope: Scope, *, grid: str | None = None, q: str | None = None, limit: int = 100,
                   after: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Buildings in reach by grid and id, a page at a time; `q` searches part of the name or
    address. Buildings outside every grid (reported by the import) are not in these pages."""
    where, params = page_filter("b", scope, grid=grid, limit=limit, after=after, max_page=MAX_PAGE)
    if q is not None and q.strip():
        if len(q) > 64 or "\x00" in q:
            raise InvalidInput("Invalid value for parameter q: 1 to 64 characters")
        where.append("(strpos(b.name, :q) > 0 OR strpos(b.address, :q) > 0)")
        params["q"] = q.strip()
    params["limit"] = limit + 1
    rows = session.execute(text(f"SELECT b.id, b.grid_code, {FEATURE} AS f FROM building b WHERE {' AND '.join(where)} "
                                f"AND b.grid_code IS NOT NULL ORDER BY {page_order('b')} LIMIT :limit"), params).all()  # fmt: skip
    page = rows[:limit]
    return {"type": "FeatureCollection", "features": [dict(r.f) for r in page],
            "next_after": cursor(page[-1]) if len(rows) > limit else None}  # fmt: skip


def get_building(session: Session, scope: Scope, building_id: int) -> dict[str, Any]:
    row = session.execute(text(f"SELECT b.grid_code, {FEATURE} AS f FROM building b WHERE b.id = :id"), {"id": building_id}).first()
    if row is None or not scope.covers(row.grid_code):
        raise NotFound(f"No building {building_id}")
    return dict(row.f)


MAX_FOOTPRINT_M2 = 500_000  # a footprint larger than this is a mistake (a district drawn as a building)
MAX_VERTICES = 5_000


def footprint(geometry: Any, crs: str | None = None) -> str:
    """A footprint as WKT (WGS84 MultiPolygon) from a GeoJSON Polygon or MultiPolygon in `crs`;
    InvalidInput saying what is wrong (type, coordinates, self-intersection, size)."""
    import numpy as np
    import shapely
    from shapely.geometry import MultiPolygon, shape

    from gridmap import crs as crs_mod

    name = crs_mod.canonical_crs(crs)
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidInput("Invalid value for parameter geometry: a GeoJSON Polygon or MultiPolygon")
    try:
        geom = shape(geometry)
    except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.GEOSException):
        raise InvalidInput("Invalid value for parameter geometry: its coordinates do not form polygons") from None
    coords = shapely.get_coordinates(geom)
    if geom.is_empty or len(coords) > MAX_VERTICES or not np.isfinite(coords).all():
        raise InvalidInput(f"Invalid value for parameter geometry: 4 to {MAX_VERTICES:,} finite coordinates")
    if name != "EPSG:4326":
        if crs_mod.outside_china(coords[:, 0], coords[:, 1]).any() and name in crs_mod.SHIFTED_CRS:
            raise InvalidInput(f"Invalid value for parameter geometry: lies outside China, where {name} is not defined")
        geom = shapely.transform(geom, lambda xy: np.column_stack(crs_mod.to_wgs84(xy[:, 0], xy[:, 1], name)))
    if not crs_mod.lonlat_in_range(*shapely.get_coordinates(geom).T).all():
        raise InvalidInput("Invalid value for parameter geometry: lon must lie in [-180, 180] and lat in [-90, 90]")
    if not geom.is_valid:
        raise InvalidInput(f"Invalid value for parameter geometry: {shapely.is_valid_reason(geom)}")
    to_metres = crs_mod.transformer(4326, crs_mod.metric_epsg_for(geom.centroid.x))
    metric = shapely.transform(geom, lambda xy: np.column_stack(to_metres.transform(xy[:, 0], xy[:, 1])))
    if metric.area > MAX_FOOTPRINT_M2:
        raise InvalidInput(f"Invalid value for parameter geometry: {metric.area:,.0f} m² is larger than a building "
                           f"({MAX_FOOTPRINT_M2:,} m² at most); check the coordinates and crs")  # fmt: skip
    return (geom if geom.geom_type == "MultiPolygon" else MultiPolygon([geom])).wkt


def _grid_of(session: Session, wkt: str) -> str:
    """The grid in force containing a point inside the footprint (as imports assign it)."""
    code = session.execute(text("SELECT g.code FROM grid g WHERE g.valid_to IS NULL "
                                "AND ST_Contains(g.geom, ST_PointOnSurface(ST_GeomFromText(:w, 4326))) ORDER BY g.code LIMIT 1"),
                           {"w": wkt}).scalar()  # fmt: skip
    if code is None:
        raise InvalidInput("Invalid value for parameter geometry: the building lies outside every grid in force")
    return str(code)


def _placed(session: Session, principal: Principal, scope: Scope, wkt: str) -> str:
    """The grid of a footprint, which must be one of the caller's (no moving buildings out of reach)."""
    grid = _grid_of(session, wkt)
    if not scope.covers(grid):
        raise Forbidden(f"The role {principal.role} may not place a building outside the grids in its scope")
    return grid


def _fields(changes: dict[str, Any]) -> dict[str, Any]:
    """Checked descriptive fields (name, address, use, floors) among `changes`."""
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
    return sets


def create_building(session: Session, principal: Principal, scope: Scope, *, geometry: Any, crs: str | None = None,
                    **fields: Any) -> dict[str, Any]:  # fmt: skip
    """Register a building in one of the caller's grids; its grid follows from its footprint."""
    require(principal, "buildings.write")
    wkt = footprint(geometry, crs)
    grid = _placed(session, principal, scope, wkt)
    sets = _fields({k: v for k, v in fields.items() if v is not None})
    code = (fields.get("code") or "").strip() or None
    if code is not None:
        if len(code) > 64 or not code.isprintable():
            raise InvalidInput("Invalid value for parameter code: at most 64 printable characters")
        if session.execute(text("SELECT 1 FROM building WHERE code = :c"), {"c": code}).first():
            raise Conflict(f"A building with code {code!r} exists already")
    columns = ["code", "grid_code", *sets]
    building_id = session.execute(
        text(f"INSERT INTO building ({', '.join(columns)}, geom) VALUES ({', '.join(':' + c for c in columns)}, "
             "ST_GeomFromText(:wkt, 4326)) RETURNING id"),  # column names from the fixed lists above
        {**sets, "code": code, "grid_code": grid, "wkt": wkt},
    ).scalar_one()  # fmt: skip
    audit.record(session, principal, "create", object_type="building", object_ids=[building_id], grid_code=grid)
    return get_building(session, scope, building_id)


def delete_building(session: Session, principal: Principal, scope: Scope, building_id: int) -> None:
    """Remove a building of the caller's grids that no household lives in any more."""
    require(principal, "buildings.write")
    grid = get_building(session, scope, building_id)["properties"]["grid_code"]
    living = session.execute(text("SELECT count(*) FROM household WHERE building_id = :id"), {"id": building_id}).scalar_one()
    if living:
        raise Conflict(f"Building {building_id} still has {living} household(s): move or remove them first")
    session.execute(text("UPDATE resident SET building_id = NULL WHERE building_id = :id"), {"id": building_id})
    session.execute(text("DELETE FROM building WHERE id = :id"), {"id": building_id})
    audit.record(session, principal, "delete", object_type="building", object_ids=[building_id], grid_code=grid)


def update_building(session: Session, principal: Principal, scope: Scope, building_id: int,
                    changes: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Correct name, address, use or floors of a building of the caller's grids, or redraw its
    footprint (`geometry`, in `crs`): the building, its households and their residents then
    belong to the grid the new footprint lies in, which must be one of the caller's."""
    require(principal, "buildings.write")
    before = get_building(session, scope, building_id)["properties"]["grid_code"]  # 404 outside the caller's grids
    sets = _fields(changes)
    moved, redrawn = None, changes.get("geometry") is not None
    if redrawn:
        wkt = footprint(changes["geometry"], changes.get("crs"))
        grid = _placed(session, principal, scope, wkt)
        session.execute(text("UPDATE building SET geom = ST_GeomFromText(:w, 4326), grid_code = :g WHERE id = :id"),
                        {"w": wkt, "g": grid, "id": building_id})  # fmt: skip
        if grid != before:
            moved = grid
            # its people follow it (row-level security checks the new grid is the caller's too)
            session.execute(text("UPDATE household SET grid_code = :g WHERE building_id = :id"), {"g": grid, "id": building_id})
            session.execute(text("UPDATE resident SET grid_code = :g WHERE building_id = :id OR household_id IN "
                                 "(SELECT id FROM household WHERE building_id = :id)"), {"g": grid, "id": building_id})  # fmt: skip
    if sets:
        assignments = ", ".join(f"{k} = :{k}" for k in sets)  # keys from the fixed names above
        session.execute(text(f"UPDATE building SET {assignments} WHERE id = :id"), {**sets, "id": building_id})
    if sets or redrawn:
        audit.record(session, principal, "update", object_type="building", object_ids=[building_id], grid_code=before,
                     detail={"fields": sorted(sets) + (["geometry"] if redrawn else []),
                             **({"moved_to": moved} if moved else {})})  # fmt: skip
    return get_building(session, scope, building_id)
