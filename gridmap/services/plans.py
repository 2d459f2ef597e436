"""Planning (网格调整): redraw the grids of a community or street safely.

A plan holds the complete set of grids its scope should have (`plan_grid`). It is made from
the grids in force or from a file, edited (split, merge, replace, move a boundary, add, remove,
rename), validated (`gridmap.planning.validate`), previewed (`impact`: what moves where) and
applied in one transaction: grid versions end and start at `effective_at` (history is never
rewritten), open cases are re-homed with an event, buildings, households and residents follow
their location, staff assignments are moved or flagged. Rolling back applies the boundaries the
plan replaced as a new plan.

Planners see no personal data: residents are only counted here, per building, inside the
plan's scope (row-level security opened for that scope alone, `gridmap.access.open_scope`).
Geometry work is done in the scope's Gauss–Krüger zone (metres) with shapely; the database is
the source of truth for what is in force, and an advisory lock per district serializes applies.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.errors
import shapely.ops
from shapely.geometry.base import BaseGeometry
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import access, audit
from gridmap.auth import Principal
from gridmap.crs import metric_epsg_for, transformer
from gridmap.errors import Conflict, Forbidden, InvalidInput, NotFound
from gridmap.planning import metrics
from gridmap.planning.validate import ERROR, Finding, PlanGrids, Rules, validate
from gridmap.services.casecounts import open_sql

SCOPE_LEVELS = {12: "community", 9: "street", 6: "district"}
LOCK_KEY = 0x706C_616E  # with the district code: pg_advisory_xact_lock(key, district) ("plan")
SKEW = dt.timedelta(minutes=1)  # an effective_at this close ahead applies now (clocks differ); later ones are scheduled
MAX_AHEAD = dt.timedelta(days=366)
MAX_BACKDATE = dt.timedelta(days=1)
LOAD_DAYS = 90
Progress = Callable[[str], None]


def _no_progress(_: str) -> None:
    pass


def finite(value: Any) -> Any:
    """The value with NaN and infinities as None (JSON has neither), through dicts and lists."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return finite(float(value))
    return value


# ---------------------------------------------------------------------------------------------
# who may plan where
# ---------------------------------------------------------------------------------------------
def check_scope_code(code: str) -> str:
    if not (isinstance(code, str) and code.isascii() and code.isdigit() and len(code) in SCOPE_LEVELS):
        raise InvalidInput("Invalid value for scope: a 12-digit community, 9-digit street or 6-digit district code")
    return SCOPE_LEVELS[len(code)]


def _may_plan(principal: Principal, code: str, function: str) -> None:
    access.require(principal, function)
    if principal.role == "admin" or any(level == "city" for level, _ in principal.scopes):
        return
    if not any(code.startswith(c) or c.startswith(code) for level, c in principal.scopes if c):
        raise Forbidden(f"Area {code} is outside your scope")


# ---------------------------------------------------------------------------------------------
# geometry helpers
# ---------------------------------------------------------------------------------------------
def project(geoms: Any, src: int, dst: int) -> np.ndarray:
    t = transformer(src, dst)
    arr = np.asarray(geoms, dtype=object)
    return shapely.transform(arr, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))) if len(arr) else arr


def _to_geojson(geom: BaseGeometry | None, epsg: int) -> dict[str, Any] | None:
    if geom is None or geom.is_empty:
        return None
    g = project([geom], epsg, 4326)[0]
    with contextlib.suppress(shapely.errors.GEOSException):  # an invalid shape (a finding itself) is drawn as it is
        g = shapely.set_precision(g, 1e-7)
    return json.loads(shapely.to_geojson(g))


def _read_geojson_polygon(value: Any, what: str) -> BaseGeometry:
    try:
        geom = shapely.from_geojson(json.dumps(value))
    except Exception:  # shapely raises GEOSException with a parser message
        raise InvalidInput(f"Invalid value for {what}: a GeoJSON Polygon or MultiPolygon in EPSG:4326") from None
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
        raise InvalidInput(f"Invalid value for {what}: a GeoJSON Polygon or MultiPolygon, got {geom.geom_type}")
    _check_rings(geom, f"Invalid value for {what}")
    _check_lonlat(geom, what)
    return geom


def _check_rings(geom: BaseGeometry, what: str) -> None:
    """A polygon the database can store: closed rings of at least four positions, some area.
    (Self-intersections and the like are kept: validation reports them, with the place.)"""
    for part in shapely.get_parts(geom):
        for ring in (part.exterior, *part.interiors):
            coords = ring.coords
            if len(coords) < 4 or coords[0] != coords[-1]:
                raise InvalidInput(f"{what}: every ring needs at least 4 positions, the last the same as the first")
    if not geom.area > 0:
        raise InvalidInput(f"{what}: the polygon has no area")


def _check_lonlat(geom: BaseGeometry, what: str) -> None:
    west, south, east, north = geom.bounds
    if not (np.isfinite([west, south, east, north]).all() and -180 <= west <= east <= 180 and -90 <= south <= north <= 90):
        raise InvalidInput(f"Invalid value for {what}: coordinates must be longitude and latitude in EPSG:4326")


def _assign(points: np.ndarray, polygons: np.ndarray) -> np.ndarray:
    """The index of the polygon containing each point (-1: none; the first where several do)."""
    out = np.full(len(points), -1, dtype=int)
    if len(points) == 0 or len(polygons) == 0:
        return out
    ok = shapely.is_valid(polygons)
    polys = np.array([p if v else shapely.make_valid(p) for p, v in zip(polygons, ok, strict=True)], dtype=object)
    pts, grids = shapely.STRtree(polys).query(points, predicate="intersects")
    first = np.unique(pts, return_index=True)[1]
    out[pts[first]] = grids[first]
    return out


# ---------------------------------------------------------------------------------------------
# reading a plan and its scope
# ---------------------------------------------------------------------------------------------
@dataclass
class Context:
    """A plan with everything around it, in the scope's metric CRS."""

    plan: dict[str, Any]
    epsg: int
    communities: dict[str, BaseGeometry]
    community_ids: dict[str, int]
    scope: BaseGeometry
    current: gpd.GeoDataFrame  # grids in force: id, code, name, kind, geom
    grids: gpd.GeoDataFrame  # the plan's grids: id, code, name, kind, community_code, source_grid_id, geom
    buildings: pd.DataFrame  # id, households, grid_code, residents, point (metric)
    staff: pd.DataFrame  # staff_id, name, role, code (grid assignments in the scope)

    @property
    def labels(self) -> list[str]:
        return [c if isinstance(c, str) and c else f"new #{i}" for c, i in zip(self.grids["code"], self.grids["id"], strict=True)]


PLAN_SQL = text("""SELECT id, name, scope_level, scope_code, status, description, created_by, created_at, validated_at,
                          applied_at, effective_at, rollback_of, base_grid_ids,
                          updated_at
                   FROM plan WHERE id = :id""")  # fmt: skip


def _plan_row(session: Session, plan_id: int, *, lock: bool = False) -> dict[str, Any]:
    sql = PLAN_SQL.text + (" FOR UPDATE" if lock else "")
    row = session.execute(text(sql), {"id": plan_id}).mappings().first()
    if row is None:
        raise NotFound(f"No plan {plan_id}")
    return dict(row)


def _communities(session: Session, scope_code: str) -> gpd.GeoDataFrame:
    frame = gpd.read_postgis(text("SELECT id, code, geom FROM admin_area WHERE level = 'community' AND code LIKE :p ORDER BY code"),
                             session.connection(), geom_col="geom", params={"p": scope_code + "%"}, crs=4326)  # fmt: skip
    if frame.empty:
        raise NotFound(f"No community with code {scope_code}" if len(scope_code) == 12 else
                       f"No communities in {SCOPE_LEVELS[len(scope_code)]} {scope_code}")  # fmt: skip
    return frame


def _current(session: Session, scope_code: str) -> gpd.GeoDataFrame:
    return gpd.read_postgis(text("SELECT id, code, name, kind, geom FROM grid WHERE valid_to IS NULL AND code LIKE :p ORDER BY code"),
                            session.connection(), geom_col="geom", params={"p": scope_code + "%"}, crs=4326)  # fmt: skip


def _plan_grids(session: Session, plan_id: int) -> gpd.GeoDataFrame:
    return gpd.read_postgis(text("SELECT id, code, name, kind, community_code, source_grid_id, geom FROM plan_grid "
                                 "WHERE plan_id = :id ORDER BY coalesce(code, 'z'), id"),
                            session.connection(), geom_col="geom", params={"id": plan_id}, crs=4326)  # fmt: skip


# the scope's area: the union of its communities (a street or district is its communities)
SCOPE_CTE = "WITH s AS (SELECT ST_Union(geom) AS g FROM admin_area WHERE level = 'community' AND code LIKE :p)"
BUILDINGS_SQL = text(f"""
    {SCOPE_CTE}
    SELECT b.id, b.households, b.grid_code, ST_X(p.pt) AS lon, ST_Y(p.pt) AS lat
    FROM s, building b CROSS JOIN LATERAL (SELECT ST_PointOnSurface(b.geom) AS pt) p
    WHERE b.geom && s.g AND ST_Intersects(s.g, p.pt)""")
RESIDENTS_SQL = text("SELECT building_id, count(*) FROM resident WHERE grid_code >= :lo AND grid_code <= :hi "
                     "AND building_id IS NOT NULL GROUP BY building_id")  # fmt: skip


def _buildings(session: Session, scope_code: str, epsg: int, *, residents: bool = True) -> pd.DataFrame:
    rows = pd.DataFrame(session.execute(BUILDINGS_SQL, {"p": scope_code + "%"}).all(),
                        columns=["id", "households", "grid_code", "lon", "lat"])  # fmt: skip
    rows["households"] = rows["households"].fillna(0).astype(int)
    x, y = transformer(4326, epsg).transform(rows["lon"].to_numpy(float), rows["lat"].to_numpy(float))
    rows["point"] = shapely.points(np.asarray(x), np.asarray(y)) if len(rows) else np.array([], dtype=object)
    rows["residents"] = 0
    if residents and len(rows):
        counts = dict(_count_residents(session, scope_code))
        rows["residents"] = rows["id"].map(counts).fillna(0).astype(int)
    return rows


def _count_residents(session: Session, scope_code: str) -> list[tuple[int, int]]:
    """Residents per building of the scope: counted under row-level security opened for the
    scope alone, in a savepoint so the role change ends with it (planners see no resident)."""
    scope = access.Scope(clear=False, all_grids=False, grids=(), area=scope_code)
    lo, hi = scope.code_range()
    with session.begin_nested() as nested:
        access.open_scope(session, scope)
        rows = [(int(b), int(n)) for b, n in session.execute(RESIDENTS_SQL, {"lo": lo, "hi": hi}).all()]
        nested.rollback()  # undoes SET LOCAL ROLE and the scope with the savepoint
    return rows


def _staff(session: Session, scope_code: str) -> pd.DataFrame:
    rows = session.execute(text("SELECT ss.staff_id, s.name, s.role, ss.code FROM staff_scope ss JOIN staff s ON s.id = ss.staff_id "
                                "WHERE ss.level = 'grid' AND ss.code LIKE :p AND s.active ORDER BY ss.code, ss.staff_id"),
                           {"p": scope_code + "%"}).all()  # fmt: skip
    return pd.DataFrame(rows, columns=["staff_id", "name", "role", "code"])


def load(session: Session, plan_id: int, *, lock: bool = False, residents: bool = True) -> Context:
    plan = _plan_row(session, plan_id, lock=lock)
    communities = _communities(session, plan["scope_code"])
    epsg = metric_epsg_for(float(communities.geometry.union_all().centroid.x))
    community_geoms = dict(zip(communities["code"], project(communities.geometry, 4326, epsg), strict=True))
    current, grids = _current(session, plan["scope_code"]), _plan_grids(session, plan_id)
    current = current.set_geometry(project(current.geometry, 4326, epsg), crs=epsg)
    grids = grids.set_geometry(project(grids.geometry, 4326, epsg), crs=epsg)
    return Context(plan, epsg, community_geoms, dict(zip(communities["code"], communities["id"], strict=True)),
                   shapely.union_all(list(community_geoms.values())), current, grids,
                   _buildings(session, plan["scope_code"], epsg, residents=residents), _staff(session, plan["scope_code"]))  # fmt: skip


# ---------------------------------------------------------------------------------------------
# making and editing plans
# ---------------------------------------------------------------------------------------------
INSERT_GRID_SQL = text("""INSERT INTO plan_grid (plan_id, code, name, kind, community_code, source_grid_id, geom)
                          VALUES (:plan, :code, :name, :kind, :community, :source, ST_Multi(ST_GeomFromText(:wkt, 4326)))
                          RETURNING id""")  # fmt: skip


def create(session: Session, principal: Principal, *, name: str, scope_code: str, description: str | None = None,
           frame: gpd.GeoDataFrame | None = None, rollback_of: int | None = None) -> dict[str, Any]:  # fmt: skip
    """A new draft plan for a community or street: a copy of the grids in force, or the
    polygons of `frame` (EPSG:4326; optional columns code, name, kind, community_code)."""
    level = check_scope_code(scope_code)
    _may_plan(principal, scope_code, "plans.write")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidInput("Invalid value for name: 1 to 200 characters")
    communities = _communities(session, scope_code)
    current = _current(session, scope_code)
    plan_id = session.execute(text("""INSERT INTO plan (name, scope_level, scope_code, description, created_by, base_grid_ids, rollback_of)
                                      VALUES (:n, :l, :c, :d, :by, :base, :rb) RETURNING id"""),
                              {"n": name.strip(), "l": level, "c": scope_code, "d": description, "rb": rollback_of,
                               "by": principal.id if principal.kind == "user" else None,
                               "base": [int(i) for i in current["id"]]}).scalar_one()  # fmt: skip
    if frame is None:
        session.execute(text("""INSERT INTO plan_grid (plan_id, code, name, kind, community_code, source_grid_id, geom)
                                SELECT :plan, code, name, kind, left(code, 12), id, geom FROM grid
                                WHERE valid_to IS NULL AND code LIKE :p"""), {"plan": plan_id, "p": scope_code + "%"})  # fmt: skip
    else:
        _insert_frame(session, plan_id, frame, communities, current)
    audit.record(session, principal, "plan.create", object_type="plan", object_ids=[plan_id], detail={"scope": scope_code})
    return summary(session, plan_id)


def _column(frame: pd.DataFrame, *names: str) -> pd.Series:
    for col in frame.columns:
        if str(col).lower() in names:
            return frame[col].astype(object).where(frame[col].notna(), None)
    return pd.Series([None] * len(frame), index=frame.index, dtype=object)


def _insert_frame(session: Session, plan_id: int, frame: gpd.GeoDataFrame, communities: gpd.GeoDataFrame,
                  current: gpd.GeoDataFrame) -> None:  # fmt: skip
    if frame.empty:
        raise InvalidInput("The file has no features: a plan needs at least one grid polygon")
    if len(frame) > 5000:
        raise InvalidInput(f"The file has {len(frame):,} features; a plan covers one district at most (5,000 grids)")
    geoms = shapely.force_2d(np.asarray(frame.geometry.array, dtype=object))
    kinds = shapely.get_type_id(geoms)
    bad = [i + 1 for i, (g, k) in enumerate(zip(geoms, kinds, strict=True)) if g is None or g.is_empty or k not in (3, 6)]
    if bad:
        raise InvalidInput(f"Feature {bad[0]} is not a polygon: every feature of a plan is a grid polygon "
                           f"({len(bad)} feature{'s' if len(bad) > 1 else ''} not)")  # fmt: skip
    for i, g in enumerate(geoms):
        _check_rings(g, f"Feature {i + 1}")
        _check_lonlat(g, "the plan's polygons")
    codes, names, kinds_ = _column(frame, "code", "grid_code", "编码"), _column(frame, "name", "名称"), _column(frame, "kind", "类型")
    given = _column(frame, "community_code", "community", "社区编码")
    points = shapely.point_on_surface(np.array([shapely.make_valid(g) for g in geoms], dtype=object))
    located = _assign(points, communities.geometry.to_numpy())
    by_code = dict(zip(current["code"], current["id"], strict=True))

    def cell(column: pd.Series, i: int) -> str | None:
        value = column.iloc[i]
        return (str(value).strip() or None) if value is not None else None

    for i, geom in enumerate(geoms):
        values = {"code": cell(codes, i), "kind": cell(kinds_, i) or "general", "community": cell(given, i),
                  "name": (cell(names, i) or "")[:200] or None}  # fmt: skip
        try:
            values = _grid_fields(values, ("code", "kind", "community", "name"))
        except InvalidInput as exc:
            raise InvalidInput(f"Feature {i + 1}: {exc.detail}") from None
        code = values["code"]
        if values["community"] is None:
            values["community"] = communities["code"].iloc[located[i]] if located[i] >= 0 else (code[:12] if code else None)
        session.execute(INSERT_GRID_SQL, {"plan": plan_id, **values,
                                          "source": by_code.get(code), "wkt": shapely.to_wkt(geom)})  # fmt: skip


def _editable(session: Session, principal: Principal, plan_id: int) -> dict[str, Any]:
    plan = _plan_row(session, plan_id, lock=True)
    _may_plan(principal, plan["scope_code"], "plans.write")
    if plan["status"] not in ("draft", "validated"):
        raise Conflict(f"Plan {plan_id} is {plan['status']}: only draft and validated plans can change")
    return plan


def edit(session: Session, principal: Principal, plan_id: int, op: Mapping[str, Any]) -> dict[str, Any]:
    """One edit of a draft: split, merge, replace, move, add, remove or set (docs/plans.md)."""
    _editable(session, principal, plan_id)
    kind = op.get("op") if isinstance(op, Mapping) else None
    handler = EDITS.get(kind)  # type: ignore[arg-type]
    if handler is None:
        raise InvalidInput(f"Invalid value for op: one of {', '.join(EDITS)}")
    rows = {int(r["id"]): dict(r) for r in session.execute(
        text("SELECT id, code, name, kind, community_code, source_grid_id, ST_AsBinary(geom) AS wkb FROM plan_grid WHERE plan_id = :p"),
        {"p": plan_id}).mappings()}  # fmt: skip
    for r in rows.values():
        r["geom"] = shapely.from_wkb(bytes(r.pop("wkb")))
    epsg = metric_epsg_for(float(np.mean([r["geom"].centroid.x for r in rows.values()]))) if rows else 4326
    changed = handler(session, plan_id, rows, op, epsg)
    session.execute(text("UPDATE plan SET status = 'draft', findings = NULL, impact = NULL, validated_at = NULL, updated_at = now() "
                         "WHERE id = :p"), {"p": plan_id})  # fmt: skip
    audit.record(session, principal, f"plan.{kind}", object_type="plan", object_ids=[plan_id], detail={"grids": changed})
    return summary(session, plan_id)


def _row(rows: Mapping[int, dict[str, Any]], value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, int) or isinstance(value, bool) or value not in rows:
        raise InvalidInput(f"Invalid value for {what}: the id of one of this plan's grids ({', '.join(map(str, sorted(rows))) or 'none'})")
    return rows[value]


def _write(session: Session, grid_id: int, geom: BaseGeometry) -> None:
    session.execute(text("UPDATE plan_grid SET geom = ST_Multi(ST_GeomFromText(:wkt, 4326)) WHERE id = :id"),
                    {"wkt": shapely.to_wkt(geom), "id": grid_id})  # fmt: skip


def _polygonal(geom: BaseGeometry) -> BaseGeometry:
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon") and not p.is_empty]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _metric(geom: BaseGeometry, epsg: int) -> BaseGeometry:
    return project([geom], 4326, epsg)[0]


def _lonlat(geom: BaseGeometry, epsg: int) -> BaseGeometry:
    return project([geom], epsg, 4326)[0]


def _split(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    grid = _row(rows, op.get("grid"), "grid")
    try:
        line = shapely.from_geojson(json.dumps(op.get("line")))
    except Exception:
        line = None
    if line is None or line.geom_type not in ("LineString", "MultiLineString"):
        raise InvalidInput("Invalid value for line: a GeoJSON LineString in EPSG:4326 that crosses the grid")
    _check_lonlat(line, "line")
    polygon = shapely.make_valid(_metric(grid["geom"], epsg))
    cut = _metric(line, epsg)
    pieces = [p for p in shapely.get_parts(shapely.ops.split(_polygonal(polygon), cut)) if p.area > 1.0]
    if len(pieces) < 2:
        raise InvalidInput(f"The line does not split grid {grid['id']}: it must cross the grid from edge to edge")
    pieces.sort(key=lambda p: -p.area)
    _write(session, grid["id"], _lonlat(pieces[0], epsg))  # the largest piece keeps the grid's code
    new = [session.execute(INSERT_GRID_SQL, {"plan": plan_id, "code": None, "name": None, "kind": grid["kind"],
                                             "community": grid["community_code"], "source": None,
                                             "wkt": shapely.to_wkt(_lonlat(p, epsg))}).scalar_one() for p in pieces[1:]]  # fmt: skip
    return [grid["id"], *new]


def _merge(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    ids = op.get("grids")
    if not isinstance(ids, list) or len(ids) < 2 or len(set(map(str, ids))) != len(ids):
        raise InvalidInput("Invalid value for grids: the ids of two or more different grids of this plan")
    grids = [_row(rows, i, "grids") for i in ids]
    metric = [shapely.make_valid(_metric(g["geom"], epsg)) for g in grids]
    merged = shapely.union_all([shapely.buffer(m, 0.01) for m in metric]).buffer(-0.01)
    if len([p for p in shapely.get_parts(_polygonal(merged)) if p.area > 1.0]) > 1:
        raise InvalidInput("These grids do not touch: a merged grid must be one piece")
    keep = max(range(len(grids)), key=lambda k: metric[k].area)  # the largest keeps its code, name and kind
    _write(session, grids[keep]["id"], _lonlat(shapely.union_all(metric), epsg))
    session.execute(text("DELETE FROM plan_grid WHERE id = ANY(:ids)"), {"ids": [g["id"] for k, g in enumerate(grids) if k != keep]})
    return [g["id"] for g in grids]


def _replace(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    grid = _row(rows, op.get("grid"), "grid")
    _write(session, grid["id"], _read_geojson_polygon(op.get("geometry"), "geometry"))
    return [grid["id"]]


def _move(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    """Move a shared boundary: the part of grid `from` inside `region` goes to grid `to`."""
    source, target = _row(rows, op.get("from"), "from"), _row(rows, op.get("to"), "to")
    if source["id"] == target["id"]:
        raise InvalidInput("Invalid value for to: a grid other than from")
    region = _metric(_read_geojson_polygon(op.get("region"), "region"), epsg)
    src, dst = shapely.make_valid(_metric(source["geom"], epsg)), shapely.make_valid(_metric(target["geom"], epsg))
    moved = _polygonal(shapely.intersection(src, region))
    if moved.area < 1.0:
        raise InvalidInput(f"The region does not cover any of grid {source['id']}")
    rest = _polygonal(shapely.difference(src, region))
    if rest.area < 1.0:
        raise InvalidInput(f"The region covers all of grid {source['id']}: merge the grids instead")
    if shapely.distance(moved, dst) > 1.0:
        raise InvalidInput(f"The region is not next to grid {target['id']}: only a shared boundary can move")
    _write(session, source["id"], _lonlat(rest, epsg))
    _write(session, target["id"], _lonlat(shapely.union_all([dst, moved]), epsg))
    return [source["id"], target["id"]]


FIELD_LIMITS = {"code": 15, "name": 200}  # a code that breaks the coding rule is a validation finding, not a refusal


def _grid_fields(op: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The grid fields an edit sets, checked (422 with the reason otherwise)."""
    from gridmap import vocab

    values = {k: op[k] for k in keys if k in op}
    if "kind" in values and values["kind"] not in vocab.GRID_KINDS:
        raise InvalidInput(f"Invalid value for kind: one of {', '.join(vocab.GRID_KINDS)}")
    for key, limit in FIELD_LIMITS.items():
        if values.get(key) is not None and (not isinstance(values[key], str) or not 0 < len(values[key]) <= limit):
            raise InvalidInput(f"Invalid value for {key}: text of 1 to {limit} characters, or null")
    community = values.get("community")
    if community is not None and not (isinstance(community, str) and community.isascii() and community.isdigit() and len(community) == 12):
        raise InvalidInput("Invalid value for community: a 12-digit community code, or null (the one the grid lies in)")
    return values


def _add(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    geom = _read_geojson_polygon(op.get("geometry"), "geometry")
    values = {"kind": "general", "code": None, "name": None, "community": None} | _grid_fields(op, ("kind", "code", "name", "community"))
    if values["community"] is None:  # the community the new grid lies in
        values["community"] = session.execute(text(
            "SELECT code FROM admin_area WHERE level = 'community' AND ST_Intersects(geom, ST_PointOnSurface(ST_GeomFromText(:wkt, 4326))) "
            "LIMIT 1"), {"wkt": shapely.to_wkt(shapely.make_valid(geom))}).scalar()  # fmt: skip
    new = session.execute(INSERT_GRID_SQL, {"plan": plan_id, **values, "source": None, "wkt": shapely.to_wkt(geom)}).scalar_one()
    return [new]


def _remove(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    grid = _row(rows, op.get("grid"), "grid")
    session.execute(text("DELETE FROM plan_grid WHERE id = :id"), {"id": grid["id"]})
    return [grid["id"]]


def _set(session: Session, plan_id: int, rows: dict[int, dict[str, Any]], op: Mapping[str, Any], epsg: int) -> list[int]:
    grid = _row(rows, op.get("grid"), "grid")
    values = _grid_fields(op, ("code", "name", "kind"))
    if not values:
        raise InvalidInput("Nothing to set: give code, name or kind")
    session.execute(text(f"UPDATE plan_grid SET {', '.join(f'{k} = :{k}' for k in values)} WHERE id = :id"), {**values, "id": grid["id"]})
    return [grid["id"]]


EDITS = {"split": _split, "merge": _merge, "replace": _replace, "move": _move, "add": _add, "remove": _remove, "set": _set}


def discard(session: Session, principal: Principal, plan_id: int) -> dict[str, Any]:
    """Discard a draft, validated or scheduled plan (a scheduled one is thereby cancelled)."""
    plan = _plan_row(session, plan_id, lock=True)
    _may_plan(principal, plan["scope_code"], "plans.write")
    if plan["status"] not in ("draft", "validated", "scheduled", "failed"):
        raise Conflict(f"Plan {plan_id} is {plan['status']}: only a draft, validated, scheduled or failed plan can be discarded")
    session.execute(text("UPDATE plan SET status = 'discarded', updated_at = now() WHERE id = :p"), {"p": plan_id})
    audit.record(session, principal, "plan.discard", object_type="plan", object_ids=[plan_id])
    return summary(session, plan_id)


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def rules_from(households_min: int | None = None, households_max: int | None = None, residents_max: int | None = None,
               tolerance_m: float | None = None, sliver_m: float | None = None, min_polsby_popper: float | None = None,
               min_reock: float | None = None, kind_ranges: str | None = None) -> Rules:  # fmt: skip
    """Rules with the caller's overrides, checked. `kind_ranges` sets household ranges of other
    grid kinds ("school:100-800,industrial_park:0-300"; "kind:-" lifts a kind's range)."""
    from gridmap import vocab

    base = Rules()
    lo, hi = base.households["general"]
    lo, hi = (households_min if households_min is not None else lo), (households_max if households_max is not None else hi)
    if not (0 <= lo <= hi <= 100_000):
        raise InvalidInput("Invalid values for households_min and households_max: 0 ≤ min ≤ max ≤ 100,000")
    ranges: dict[str, tuple[int, int]] = {**base.households, "general": (lo, hi)}
    for item in (kind_ranges or "").split(","):
        if not item.strip():
            continue
        kind, _, span = item.strip().partition(":")
        a, _, b = span.partition("-")
        if kind not in vocab.GRID_KINDS:
            raise InvalidInput(f"Invalid value for kind_ranges: {kind[:30]!r} is not a grid kind ({', '.join(vocab.GRID_KINDS)})")
        if span.strip() == "-":
            ranges.pop(kind, None)
            continue
        if not (a.isdigit() and b.isdigit() and int(a) <= int(b) <= 100_000):
            raise InvalidInput(f"Invalid value for kind_ranges: {item.strip()[:40]!r}; write kind:min-max, e.g. school:100-800")
        ranges[kind] = (int(a), int(b))
    checks = {"residents_max": (residents_max, 1, 1_000_000), "tolerance_m": (tolerance_m, 0.01, 100),
              "sliver_m": (sliver_m, 0.1, 500), "min_polsby_popper": (min_polsby_popper, 0, 1), "min_reock": (min_reock, 0, 1)}  # fmt: skip
    for name, (value, a_, b_) in checks.items():
        if value is not None and not (a_ <= value <= b_):
            raise InvalidInput(f"Invalid value for {name}: from {a_:g} to {b_:g}")
    return Rules(households=ranges, **{k: v for k, (v, _, _) in checks.items() if v is not None})  # type: ignore[arg-type]


def _code_checks(session: Session, ctx: Context) -> tuple[list[bool], dict[int, str]]:
    codes = [c if isinstance(c, str) and c else None for c in ctx.grids["code"]]
    communities = list(ctx.grids["community_code"])
    rule = [c is None or (len(c) == 15 and c.isascii() and c.isdigit() and c[:12] == (communities[i] or c[:12])
                          and (communities[i] or c[:12]) in ctx.communities) for i, c in enumerate(codes)]  # fmt: skip
    collisions: dict[int, str] = {}
    seen: dict[str, int] = {}
    for i, c in enumerate(codes):
        if c is None:
            continue
        if c in seen:
            collisions[i] = f"another grid of this plan (#{int(ctx.grids['id'].iloc[seen[c]])})"
        seen.setdefault(c, i)
    outside = session.execute(text("SELECT code FROM grid WHERE valid_to IS NULL AND code = ANY(:c) AND code NOT LIKE :p"),
                              {"c": list(seen), "p": ctx.plan["scope_code"] + "%"}).scalars().all()  # fmt: skip
    for c in outside:
        collisions.setdefault(seen[c], "a grid in force outside the plan's scope")
    return rule, collisions


def per_grid(ctx: Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Households and residents per plan grid, and each building's plan grid (index, -1: none)."""
    where = _assign(ctx.buildings["point"].to_numpy(), ctx.grids.geometry.to_numpy())
    n = len(ctx.grids)
    inside = where >= 0
    households = np.bincount(where[inside], weights=ctx.buildings["households"].to_numpy()[inside], minlength=n)
    residents = np.bincount(where[inside], weights=ctx.buildings["residents"].to_numpy()[inside], minlength=n)
    return households, residents, where


def findings(session: Session, ctx: Context, rules: Rules) -> list[Finding]:
    if ctx.grids.empty:
        return [Finding("gap", "The plan has no grids: the whole scope belongs to no grid", "方案没有网格", [],
                        round(ctx.scope.area, 1), ctx.scope)]  # fmt: skip
    households, residents, _ = per_grid(ctx)
    rule, collisions = _code_checks(session, ctx)
    grids = PlanGrids(ctx.labels, [c if isinstance(c, str) else None for c in ctx.grids["code"]], list(ctx.grids["kind"]),
                      list(ctx.grids["community_code"]), ctx.grids.geometry.to_numpy())  # fmt: skip
    return validate(grids, ctx.communities, ctx.scope, households=households, residents=residents, code_rule_ok=rule,
                    collisions=collisions, rules=rules)  # fmt: skip


def finding_json(f: Finding, epsg: int) -> dict[str, Any]:
    return {"type": f.type, "severity": f.severity, "message": f.message, "message_zh": f.message_zh, "grids": f.grids,
            "value": f.value, "geometry": _to_geojson(f.geometry, epsg)}  # fmt: skip


def validation(session: Session, principal: Principal, plan_id: int, rules: Rules | None = None) -> dict[str, Any]:
    """The plan's findings; stored with the plan, which becomes `validated` when none is an error."""
    plan = _plan_row(session, plan_id)
    _may_plan(principal, plan["scope_code"], "plans.read")
    started = time.perf_counter()
    rules = rules or Rules()
    ctx = load(session, plan_id)
    found = [finding_json(f, ctx.epsg) for f in findings(session, ctx, rules)]
    errors = sum(f["severity"] == ERROR for f in found)
    counts: dict[str, int] = {}
    for f in found:
        counts[f["type"]] = counts.get(f["type"], 0) + 1
    result = {"plan_id": plan_id, "status": plan["status"], "valid": errors == 0, "errors": errors, "warnings": len(found) - errors,
              "counts": counts, "rules": rules.as_dict(), "findings": found, "seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    if plan["status"] in ("draft", "validated"):
        status = "validated" if errors == 0 else "draft"
        session.execute(text("UPDATE plan SET findings = CAST(:f AS jsonb), status = :s, validated_at = CASE WHEN :ok "
                             "THEN now() END WHERE id = :p"),
                        {"f": json.dumps({k: v for k, v in result.items() if k != "findings"} | {"findings": found}, ensure_ascii=False),
                         "s": status, "ok": errors == 0, "p": plan_id})  # fmt: skip
        result["status"] = status
    return result


# ---------------------------------------------------------------------------------------------
# impact
# ---------------------------------------------------------------------------------------------
def _open_cases(session: Session, ctx: Context) -> pd.DataFrame:
    rows = session.execute(text(f"""
        {SCOPE_CTE}
        SELECT i.id, i.code, i.status, i.grid_code, i.version, ST_X(i.geom), ST_Y(i.geom) FROM incident i, s
        WHERE {open_sql()} AND (i.grid_code LIKE :p OR (i.geom && s.g AND ST_Intersects(s.g, i.geom)))
        ORDER BY i.id"""), {"p": ctx.plan["scope_code"] + "%"}).all()  # fmt: skip
    frame = pd.DataFrame(rows, columns=["id", "code", "status", "grid_code", "version", "lon", "lat"])
    x, y = transformer(4326, ctx.epsg).transform(frame["lon"].to_numpy(float), frame["lat"].to_numpy(float))
    frame["point"] = shapely.points(np.asarray(x), np.asarray(y)) if len(frame) else np.array([], dtype=object)
    return frame


def _recent_cases(session: Session, scope_code: str, epsg: int) -> np.ndarray:
    """The places (metric points) of the cases reported in the scope in the last LOAD_DAYS."""
    rows = session.execute(text(f"""{SCOPE_CTE}
        SELECT ST_X(i.geom), ST_Y(i.geom) FROM incident i, s
        WHERE i.reported_at >= now() - make_interval(days => :d) AND i.geom && s.g AND ST_Intersects(s.g, i.geom)"""),
                           {"p": scope_code + "%", "d": LOAD_DAYS}).all()  # fmt: skip
    if not rows:
        return np.array([], dtype=object)
    lonlat = np.asarray(rows, dtype=float)
    x, y = transformer(4326, epsg).transform(lonlat[:, 0], lonlat[:, 1])
    return shapely.points(np.asarray(x), np.asarray(y))


def _case_load(session: Session, ctx: Context, polygons: np.ndarray) -> np.ndarray:
    where = _assign(_recent_cases(session, ctx.plan["scope_code"], ctx.epsg), polygons)
    return np.bincount(where[where >= 0], minlength=len(polygons)).astype(float)


def new_codes(ctx: Context) -> list[str]:
    """Each plan grid's code as it will be: its own, or a placeholder for a new one."""
    return [c if isinstance(c, str) and c else f"new #{int(i)}" for c, i in zip(ctx.grids["code"], ctx.grids["id"], strict=True)]


def moved_buildings(ctx: Context, codes: list[str]) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Households and residents per plan grid, and the buildings whose grid changes (column `new`)."""
    households, residents, where = per_grid(ctx)
    b = ctx.buildings.assign(new=np.array([codes[w] if w >= 0 else None for w in where], dtype=object))
    return households, residents, b[b["new"].notna() & (b["grid_code"].astype(object) != b["new"])]


def _staff_moves(ctx: Context, codes: list[str]) -> list[dict[str, Any]]:
    """Where each grid assignment of the scope goes: its code stays (kept), or the new grid that
    took most of the old grid's area (updated); flagged when that grid already has a worker."""
    old_geom = dict(zip(ctx.current["code"], ctx.current.geometry, strict=True))
    polys = np.array([shapely.make_valid(g) for g in ctx.grids.geometry], dtype=object)  # a draft may hold invalid ones
    tree = shapely.STRtree(polys) if len(polys) else None
    kept = set(codes)
    workers = ctx.staff[ctx.staff["role"] == "grid_worker"].groupby("code")["staff_id"].count()
    taken: dict[str, int] = {c: int(n) for c, n in workers.items() if c in kept}
    out = []
    for staff_id, name, role, code in ctx.staff.itertuples(index=False):
        if code in kept:
            continue  # the grid keeps its code: the assignment stands
        target = None
        if tree is not None and code in old_geom:
            candidates = tree.query(old_geom[code], predicate="intersects")
            areas = [shapely.intersection(old_geom[code], polys[j]).area for j in candidates]
            if areas and max(areas) > 0:
                target = codes[int(candidates[int(np.argmax(areas))])]
        move = {"staff_id": int(staff_id), "name": name, "role": role, "from": code, "to": target, "action": "updated"}
        if target is None:
            move |= {"action": "flagged", "reason": "the grid is retired and no new grid covers it"}
        elif role == "grid_worker" and taken.get(target, 0) > 0:
            move |= {"action": "flagged", "reason": f"{target} already has a grid worker"}
        if role == "grid_worker" and target is not None:
            taken[target] = taken.get(target, 0) + 1
        out.append(move)
    for code in codes:
        if taken.get(code, 0) == 0:
            out.append({"staff_id": None, "name": None, "role": "grid_worker", "from": None, "to": code, "action": "flagged",
                        "reason": f"{code} has no grid worker"})  # fmt: skip
    return out


def impact(session: Session, principal: Principal, plan_id: int, *, coverage_days: int = 7) -> dict[str, Any]:
    """What applying the plan would move, and the grids before and after (docs/plans.md)."""
    plan = _plan_row(session, plan_id)
    _may_plan(principal, plan["scope_code"], "plans.read")
    started = time.perf_counter()
    ctx = load(session, plan_id)
    codes = new_codes(ctx)
    households, residents, moved_b = moved_buildings(ctx, codes)
    cases = _open_cases(session, ctx)
    case_where = _assign(cases["point"].to_numpy(), ctx.grids.geometry.to_numpy()) if len(cases) else np.array([], dtype=int)
    cases["new"] = [codes[w] if w >= 0 else None for w in case_where]
    moved_c = cases[cases["new"].notna() & (cases["grid_code"].astype(object) != cases["new"])]
    matrix: dict[tuple[str | None, str], dict[str, int]] = {}
    for row in moved_b.itertuples(index=False):
        cell = matrix.setdefault((row.grid_code, row.new), {"buildings": 0, "households": 0, "residents": 0, "open_incidents": 0})
        cell["buildings"] += 1
        cell["households"] += int(row.households)
        cell["residents"] += int(row.residents)
    for row in moved_c.itertuples(index=False):
        cell = matrix.setdefault((row.grid_code, row.new), {"buildings": 0, "households": 0, "residents": 0, "open_incidents": 0})
        cell["open_incidents"] += 1
    staff = _staff_moves(ctx, codes)
    polys = ctx.grids.geometry.to_numpy()
    load90 = _case_load(session, ctx, polys)
    pp, rk = metrics.polsby_popper(polys), metrics.reock(polys)
    coverage, coverage_window = _coverage(session, ctx, codes, coverage_days)
    per_grid = [{"id": int(ctx.grids["id"].iloc[i]), "code": codes[i], "name": ctx.grids["name"].iloc[i], "kind": ctx.grids["kind"].iloc[i],
                 "households": int(households[i]), "residents": int(residents[i]), "area_km2": round(float(polys[i].area) / 1e6, 4),
                 "cases_90d": int(load90[i]), "patrol_covered_share": coverage.get(codes[i]),
                 "polsby_popper": round(float(pp[i]), 3), "reock": round(float(rk[i]), 3)} for i in range(len(codes))]  # fmt: skip
    before = _before(ctx)
    general_new = [g["households"] for g in per_grid if g["kind"] == "general"]
    lo, hi = Rules().households["general"]
    result = {
        "plan_id": plan_id, "scope": plan["scope_code"], "status": plan["status"],
        "moves": [{"from": k[0], "to": k[1], **v} for k, v in sorted(matrix.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))],
        "totals": {"buildings": int(len(moved_b)), "households": int(moved_b["households"].sum()),
                   "residents": int(moved_b["residents"].sum()), "open_incidents": int(len(moved_c)),
                   "staff_updated": sum(s["action"] == "updated" for s in staff), "staff_flagged": sum(s["action"] == "flagged" for s in staff)},
        "incidents": [{"id": int(r.id), "code": r.code, "from": r.grid_code, "to": r.new} for r in moved_c.itertuples(index=False)][:1000],
        "staff": staff,
        "grids": per_grid,
        "retired": sorted(set(ctx.current["code"]) - set(codes)),
        "created": [c for c in codes if c not in set(ctx.current["code"])],
        "balance": {"before": metrics.balance(before["households"], lo=lo, hi=hi), "after": metrics.balance(general_new, lo=lo, hi=hi)},
        "before": before["grids"],
        "coverage": coverage_window,
        "seconds": 0.0,
    }  # fmt: skip
    result = finite(result)
    result["seconds"] = round(time.perf_counter() - started, 3)
    if plan["status"] in ("draft", "validated"):
        session.execute(text("UPDATE plan SET impact = CAST(:i AS jsonb) WHERE id = :p"),
                        {"i": json.dumps({k: v for k, v in result.items() if k not in ("incidents", "before")}, ensure_ascii=False, default=str),
                         "p": plan_id})  # fmt: skip
    return result


def _before(ctx: Context) -> dict[str, Any]:
    cur = ctx.current
    counts = ctx.buildings.groupby("grid_code")[["households", "residents"]].sum()
    grids = [{"code": c, "kind": k, "households": int(counts["households"].get(c, 0)), "residents": int(counts["residents"].get(c, 0))}
             for c, k in zip(cur["code"], cur["kind"], strict=True)]  # fmt: skip
    return {"grids": grids, "households": [g["households"] for g in grids if g["kind"] == "general"]}


def _coverage(session: Session, ctx: Context, codes: list[str], days: int) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Patrol coverage of each new grid. From the snapshot computed ahead when it covers every
    grid of the scope (`gridmap stats refresh-coverage`: the patrolled part of the scope is its
    grids minus their uncovered parts, whatever the new boundaries); otherwise computed from the
    last `days` of tracks (`stats.coverage`, seconds for a street)."""
    from gridmap.services import stats

    if ctx.grids.empty:
        return {}, {"source": None}
    polys = np.array([shapely.make_valid(g) for g in ctx.grids.geometry], dtype=object)
    snap = session.execute(text("SELECT grid_code, ST_AsBinary(uncovered), since, until FROM coverage_snapshot WHERE grid_code LIKE :p"),
                           {"p": ctx.plan["scope_code"] + "%"}).all()  # fmt: skip
    if snap and set(ctx.current["code"]) <= {r[0] for r in snap}:
        gaps = [shapely.from_wkb(bytes(r[1])) for r in snap if r[1] is not None]
        uncovered = shapely.union_all(project(gaps, 4326, ctx.epsg)) if gaps else shapely.Polygon()
        covered = shapely.difference(shapely.union_all(ctx.current.geometry.to_numpy()), uncovered)
        shares = shapely.area(shapely.intersection(polys, covered)) / np.maximum(shapely.area(polys), 1e-9)
        window = {"source": "snapshot", "since": min(r[2] for r in snap).isoformat(), "until": max(r[3] for r in snap).isoformat()}
        return {c: round(float(v), 3) for c, v in zip(codes, shares, strict=True)}, window
    frame = gpd.GeoDataFrame({"code": codes, "name": list(ctx.grids["name"]), "community": list(ctx.grids["community_code"]),
                              "area_km2": shapely.area(polys) / 1e6}, geometry=project(polys, ctx.epsg, 4326), crs=4326)  # fmt: skip
    frame = frame.rename_geometry("geom")
    now = dt.datetime.now(dt.UTC)
    out = stats.coverage(session, access.Scope(clear=False, all_grids=True, grids=()), since=now - dt.timedelta(days=days),
                         until=now, frame=frame, with_uncovered=False)  # fmt: skip
    window = {"source": "tracks", "since": out.attrs["since"], "until": out.attrs["until"]}
    return {c: round(float(v), 3) for c, v in zip(out["code"], out["covered_share"], strict=True)}, window


# ---------------------------------------------------------------------------------------------
# apply and roll back
# ---------------------------------------------------------------------------------------------
def _effective(session: Session, value: dt.datetime | None) -> tuple[dt.datetime, bool]:
    """When the plan takes effect, and whether that is ahead (then it is scheduled)."""
    now = session.execute(text("SELECT now()")).scalar_one()
    if value is None:
        return now, False
    if value.tzinfo is None:
        raise InvalidInput("Invalid value for effective_at: give a time zone (e.g. 2026-12-01T00:00:00+08:00)")
    if value > now + MAX_AHEAD:
        raise InvalidInput(f"Invalid value for effective_at: at most {MAX_AHEAD.days} days ahead")
    if value < now - MAX_BACKDATE:
        raise InvalidInput(f"Invalid value for effective_at: at most {MAX_BACKDATE.days} day in the past")
    return value, value > now + SKEW


def apply(session: Session, principal: Principal, plan_id: int, *, effective_at: dt.datetime | None = None,
          rules: Rules | None = None, progress: Progress = _no_progress) -> dict[str, Any]:  # fmt: skip
    """Apply the plan in the caller's transaction (all or nothing), or schedule it when
    `effective_at` lies ahead (checked now, applied by `apply_due` then). 409 when the scope's
    grids changed since the plan was made; 422 on error findings."""
    plan = _plan_row(session, plan_id)
    _may_plan(principal, plan["scope_code"], "plans.apply")
    # one apply at a time per district: plans of a district, its streets and communities overlap
    session.execute(text("SELECT pg_advisory_xact_lock(:k, :s)"), {"k": LOCK_KEY, "s": int(plan["scope_code"][:6])})
    plan = _plan_row(session, plan_id, lock=True)
    due = plan["status"] == "scheduled" and effective_at is None
    if plan["status"] not in ("draft", "validated") and not due:
        raise Conflict(f"Plan {plan_id} is {plan['status']}: only a draft or validated plan can be applied")
    current_ids = sorted(int(i) for i in session.execute(text("SELECT id FROM grid WHERE valid_to IS NULL AND code LIKE :p"),
                                                         {"p": plan["scope_code"] + "%"}).scalars())  # fmt: skip
    if current_ids != sorted(plan["base_grid_ids"]):
        raise Conflict(f"The grids of {plan['scope_code']} changed since plan {plan_id} was made (another plan was applied or a "
                       "grid was edited); make the plan again from the grids in force")  # fmt: skip
    if due:
        when, ahead = plan["effective_at"], False
        if when > session.execute(text("SELECT now()")).scalar_one():
            raise Conflict(f"Plan {plan_id} is scheduled for {when.isoformat()}: not yet due")
    else:
        when, ahead = _effective(session, effective_at)
    last = session.execute(text("SELECT max(valid_from) FROM grid WHERE code LIKE :p"), {"p": plan["scope_code"] + "%"}).scalar()
    if last is not None and when <= last:
        raise InvalidInput(f"Invalid value for effective_at: the grids of {plan['scope_code']} last changed at {last.isoformat()}; "
                           "a plan takes effect after that")  # fmt: skip
    progress("validating")
    ctx = load(session, plan_id)
    errors = [f for f in findings(session, ctx, rules or Rules()) if f.severity == ERROR]
    if errors:
        raise InvalidInput(f"Plan {plan_id} has {len(errors)} error finding{'s' if len(errors) > 1 else ''} (first: {errors[0].message}); "
                           f"see GET /v1/plans/{plan_id}/validation")  # fmt: skip
    if ahead:
        session.execute(text("UPDATE plan SET status = 'scheduled', effective_at = :w, updated_at = now() WHERE id = :p"),
                        {"w": when, "p": plan_id})  # fmt: skip
        audit.record(session, principal, "plan.schedule", object_type="plan", object_ids=[plan_id],
                     detail={"scope": plan["scope_code"], "effective_at": when.isoformat()})  # fmt: skip
        return {"plan_id": plan_id, "status": "scheduled", "effective_at": when.isoformat()}
    progress("writing grid versions")
    codes = _assign_codes(session, ctx)
    report = _write_grids(session, ctx, codes, when, plan_id)
    progress("re-homing cases, buildings and staff")
    report |= _follow(session, principal, ctx, codes, when, plan_id)
    session.execute(text("UPDATE plan SET status = 'applied', applied_at = now(), effective_at = :w, report = CAST(:r AS jsonb), "
                         "updated_at = now() WHERE id = :p"), {"w": when, "r": json.dumps(report, ensure_ascii=False, default=str), "p": plan_id})  # fmt: skip
    if plan["rollback_of"] is not None:
        session.execute(text("UPDATE plan SET status = 'rolled_back', updated_at = now() WHERE id = :p"), {"p": plan["rollback_of"]})
    audit.record(session, principal, "plan.apply", object_type="plan", object_ids=[plan_id], grid_code=None,
                 detail={"scope": plan["scope_code"], "effective_at": when.isoformat(), **report["totals"]})  # fmt: skip
    return {"plan_id": plan_id, "status": "applied", "effective_at": when.isoformat(), **report}


SCHEDULER = Principal("system", 0, "plan scheduler", "admin", (("city", ""),))
DUE_SQL = text("SELECT id FROM plan WHERE status = 'scheduled' AND effective_at <= now() ORDER BY effective_at, id "
               "LIMIT 1 FOR UPDATE SKIP LOCKED")  # fmt: skip


def apply_due(engine: Any, *, limit: int = 100) -> list[dict[str, Any]]:
    """Apply the scheduled plans whose time has come, each in a transaction of its own; one
    that no longer applies (the grids changed since, an error finding) becomes `failed` with
    the reason. Safe to run in several processes at once (the due plan's row is locked)."""
    done: list[dict[str, Any]] = []
    for _ in range(limit):
        with Session(engine) as session, session.begin():
            plan_id = session.execute(DUE_SQL).scalar()
            if plan_id is None:
                return done
            try:
                with session.begin_nested():  # a failure undoes the apply, not the row lock
                    result = apply(session, SCHEDULER, plan_id)
                done.append({"plan_id": plan_id, "status": "applied", "effective_at": result["effective_at"]})
            except (Conflict, InvalidInput) as exc:
                session.execute(text("UPDATE plan SET status = 'failed', report = CAST(:r AS jsonb), updated_at = now() WHERE id = :p"),
                                {"r": json.dumps({"error": exc.detail}, ensure_ascii=False), "p": plan_id})  # fmt: skip
                audit.record(session, SCHEDULER, "plan.failed", object_type="plan", object_ids=[plan_id], detail={"reason": exc.detail})
                done.append({"plan_id": plan_id, "status": "failed", "reason": exc.detail})
    return done


class PlanScheduler:
    """A thread of each API process that applies the plans whose time has come (`apply_due`)."""

    def __init__(self, engine: Any, *, every: float = 30.0) -> None:
        import threading

        self.engine, self.every = engine, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gridmap-plan-scheduler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import logging

        while not self._stop.wait(self.every):
            try:
                for done in apply_due(self.engine):
                    logging.getLogger("gridmap.plans").info("scheduled plan %s %s", done["plan_id"], done["status"])
            except Exception as exc:  # the database went away: try again next round
                logging.getLogger("gridmap.plans").warning("scheduled plans not applied: %s", str(exc).splitlines()[0] if str(exc) else exc)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _assign_codes(session: Session, ctx: Context) -> list[str]:
    """Codes as applied: a grid's own code, or the next serial of its community (never one used
    before, in any version)."""
    codes = [c if isinstance(c, str) and c else None for c in ctx.grids["code"]]
    used = dict(session.execute(text("SELECT left(code, 12), max(right(code, 3)::int) FROM grid WHERE code LIKE :p GROUP BY 1"),
                                {"p": ctx.plan["scope_code"] + "%"}).all())  # fmt: skip
    for c in codes:
        if c:
            used[c[:12]] = max(used.get(c[:12], 0), int(c[12:]))
    out = []
    for i, c in enumerate(codes):
        if c is None:
            community = ctx.grids["community_code"].iloc[i]
            serial = used.get(community, 0) + 1
            if serial > 999:
                raise InvalidInput(f"Community {community} has used all 999 grid serials")
            used[community] = serial
            c = f"{community}{serial:03d}"
        out.append(c)
    return out


def _write_grids(session: Session, ctx: Context, codes: list[str], when: dt.datetime, plan_id: int) -> dict[str, Any]:
    geoms = project([shapely.make_valid(g) for g in ctx.grids.geometry], ctx.epsg, 4326)
    current = {c: (i, n, k, g) for c, i, n, k, g in zip(ctx.current["code"], ctx.current["id"], ctx.current["name"], ctx.current["kind"],
                                                       project(ctx.current.geometry, ctx.epsg, 4326), strict=True)}  # fmt: skip
    same: set[str] = set()
    for i, code in enumerate(codes):
        old = current.get(code)
        name = ctx.grids["name"].iloc[i]
        if old is not None and (name is None or name == old[1]) and ctx.grids["kind"].iloc[i] == old[2] and \
                shapely.equals_exact(shapely.normalize(old[3]), shapely.normalize(geoms[i]), 1e-9):  # fmt: skip
            same.add(code)
    ended = [current[c][0] for c in current if c not in same]
    if ended:
        session.execute(text("UPDATE grid SET valid_to = :w WHERE id = ANY(:ids)"), {"w": when, "ids": ended})
    created = []
    for i, code in enumerate(codes):
        if code in same:
            continue
        name = ctx.grids["name"].iloc[i] or (current[code][1] if code in current else f"第{code[-3:]}网格")
        community = code[:12]
        session.execute(text("""INSERT INTO grid (code, name, kind, community_id, geom, valid_from, plan_id)
                                VALUES (:c, :n, :k, :cid, ST_Multi(ST_GeomFromText(:wkt, 4326)), :w, :p)"""),
                        {"c": code, "n": name, "k": ctx.grids["kind"].iloc[i], "cid": ctx.community_ids[community],
                         "wkt": shapely.to_wkt(geoms[i]), "w": when, "p": plan_id})  # fmt: skip
        created.append(code)
    return {"grids": {"unchanged": sorted(same), "new_versions": sorted(set(created) & set(current)),
                      "created": sorted(set(created) - set(current)), "retired": sorted(set(current) - set(codes))}}  # fmt: skip


FOLLOW_BUILDINGS_SQL = text("""
    UPDATE building b SET grid_code = g.code
    FROM grid g WHERE b.id = ANY(:ids) AND g.valid_to IS NULL AND g.code LIKE :p
      AND ST_Intersects(g.geom, ST_PointOnSurface(b.geom)) AND b.grid_code IS DISTINCT FROM g.code
    RETURNING b.id""")
REHOME_SQL = text("""
    UPDATE incident i SET grid_id = g.id, grid_code = g.code, version = i.version + 1
    FROM grid g WHERE i.id = ANY(:ids) AND g.valid_to IS NULL AND g.code LIKE :p AND ST_Intersects(g.geom, i.geom)
      AND i.grid_code IS DISTINCT FROM g.code
    RETURNING i.id, i.code, i.status, i.level, g.code AS grid_code, ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
              (SELECT max(seq) FROM incident_event e WHERE e.incident_id = i.id) AS seq""")
LATE_CASES_SQL = text("""
    UPDATE incident i SET grid_id = g.id, grid_code = g.code, version = i.version + 1
    FROM grid g WHERE i.reported_at >= :w AND i.status IN ('closed', 'rejected') AND g.valid_to IS NULL AND g.code LIKE :p
      AND i.geom && g.geom AND ST_Intersects(g.geom, i.geom) AND i.grid_code IS DISTINCT FROM g.code""")


def _follow(session: Session, principal: Principal, ctx: Context, codes: list[str], when: dt.datetime, plan_id: int) -> dict[str, Any]:
    """Buildings, open cases, staff, households and residents follow the new grids."""
    from gridmap.services.incidents import INSERT_EVENT_SQL, NOTIFY_CHANNEL

    p = ctx.plan["scope_code"] + "%"
    moved = session.execute(FOLLOW_BUILDINGS_SQL, {"ids": [int(i) for i in ctx.buildings["id"]], "p": p}).scalars().all()
    cases = _open_cases(session, ctx)
    rehomed = session.execute(REHOME_SQL, {"ids": [int(i) for i in cases["id"]], "p": p}).mappings().all()
    old = dict(zip(cases["id"], cases["grid_code"], strict=True))
    actor = principal.id if principal.kind == "user" else None
    for r in rehomed:
        data = {"plan_id": plan_id, "from_grid": old.get(r["id"]), "to_grid": r["grid_code"]}
        session.execute(INSERT_EVENT_SQL, {"incident_id": r["id"], "seq": (r["seq"] or 0) + 1, "action": "rehome", "from_status": r["status"],
                                           "to_status": r["status"], "actor_id": actor, "at": when,
                                           "note": f"网格调整 plan {plan_id}: {old.get(r['id'])} → {r['grid_code']}",
                                           "data": json.dumps(data, ensure_ascii=False)})  # fmt: skip
        session.execute(text("SELECT pg_notify(:ch, :p)"), {"ch": NOTIFY_CHANNEL, "p": json.dumps(
            {"id": r["id"], "code": r["code"], "action": "rehome", "status": r["status"], "level": r["level"],
             "grid_code": r["grid_code"], "lon": r["lon"], "lat": r["lat"]}, ensure_ascii=False)})  # fmt: skip
    late = session.execute(LATE_CASES_SQL, {"w": when, "p": p}).rowcount  # type: ignore[attr-defined]
    staff = _staff_moves(ctx, codes)
    for move in staff:
        if move["staff_id"] is None or move["to"] is None:
            continue
        session.execute(text("DELETE FROM staff_scope WHERE staff_id = :s AND level = 'grid' AND code = :f"), {"s": move["staff_id"], "f": move["from"]})
        session.execute(text("INSERT INTO staff_scope (staff_id, level, code) VALUES (:s, 'grid', :t) ON CONFLICT DO NOTHING"),
                        {"s": move["staff_id"], "t": move["to"]})  # fmt: skip
    # last: households and residents, under row-level security opened for the scope (the role
    # change lasts to the end of the transaction)
    scope = access.Scope(clear=False, all_grids=False, grids=(), area=ctx.plan["scope_code"])
    access.open_scope(session, scope)
    households = session.execute(text("UPDATE household h SET grid_code = b.grid_code FROM building b WHERE h.building_id = b.id "
                                      "AND b.id = ANY(:ids) AND h.grid_code IS DISTINCT FROM b.grid_code"), {"ids": list(moved)}).rowcount  # type: ignore[attr-defined]  # fmt: skip
    residents = session.execute(text("UPDATE resident r SET grid_code = b.grid_code FROM building b WHERE r.building_id = b.id "
                                     "AND b.id = ANY(:ids) AND r.grid_code IS DISTINCT FROM b.grid_code"), {"ids": list(moved)}).rowcount  # type: ignore[attr-defined]  # fmt: skip
    return {"totals": {"buildings": len(moved), "households": households, "residents": residents, "open_incidents": len(rehomed),
                       "closed_incidents_since_effective": late, "staff_updated": sum(s["action"] == "updated" for s in staff),
                       "staff_flagged": sum(s["action"] == "flagged" for s in staff)},
            "staff": staff, "incidents": [{"id": r["id"], "code": r["code"], "to": r["grid_code"]} for r in rehomed][:1000]}  # fmt: skip


def rollback(session: Session, principal: Principal, plan_id: int, *, effective_at: dt.datetime | None = None) -> dict[str, Any]:
    """Apply the boundaries plan `plan_id` replaced, as a new plan (its history stays)."""
    plan = _plan_row(session, plan_id)
    _may_plan(principal, plan["scope_code"], "plans.apply")
    if plan["status"] != "applied":
        raise Conflict(f"Plan {plan_id} is {plan['status']}: only an applied plan can be rolled back")
    previous = gpd.read_postgis(text("""SELECT code, name, kind, left(code, 12) AS community_code, geom FROM grid
                                        WHERE code LIKE :p AND valid_to = :w ORDER BY code"""),
                                session.connection(), geom_col="geom", params={"p": plan["scope_code"] + "%", "w": plan["effective_at"]},
                                crs=4326)  # fmt: skip
    unchanged = gpd.read_postgis(text("""SELECT code, name, kind, left(code, 12) AS community_code, geom FROM grid
                                         WHERE code LIKE :p AND valid_to IS NULL AND valid_from < :w ORDER BY code"""),
                                 session.connection(), geom_col="geom", params={"p": plan["scope_code"] + "%", "w": plan["effective_at"]},
                                 crs=4326)  # fmt: skip
    frame = pd.concat([previous, unchanged], ignore_index=True)
    back = create(session, principal, name=f"撤销 rollback of plan {plan_id}: {plan['name']}"[:200], scope_code=plan["scope_code"],
                  description=f"Restores the grids of {plan['scope_code']} as they were before plan {plan_id}",
                  frame=gpd.GeoDataFrame(frame, geometry="geom", crs=4326), rollback_of=plan_id)  # fmt: skip
    expected = sorted(int(i) for i in session.execute(text("SELECT id FROM grid WHERE valid_to IS NULL AND code LIKE :p"),
                                                      {"p": plan["scope_code"] + "%"}).scalars())  # fmt: skip
    session.execute(text("UPDATE plan SET base_grid_ids = :b WHERE id = :p"), {"b": expected, "p": back["id"]})
    if sorted(int(g) for g in session.execute(text("SELECT id FROM grid WHERE plan_id = :p AND valid_to IS NULL"), {"p": plan_id}).scalars()) != \
            sorted(int(g) for g in session.execute(text("SELECT id FROM grid WHERE plan_id = :p"), {"p": plan_id}).scalars()):  # fmt: skip
        raise Conflict(f"The grids plan {plan_id} made have changed since (another plan was applied over them); "
                       "roll back the later plan first")  # fmt: skip
    return apply(session, principal, back["id"], effective_at=effective_at)


# ---------------------------------------------------------------------------------------------
# reading plans
# ---------------------------------------------------------------------------------------------
def summary(session: Session, plan_id: int) -> dict[str, Any]:
    plan = _plan_row(session, plan_id)
    grids = session.execute(text("SELECT count(*) FROM plan_grid WHERE plan_id = :p"), {"p": plan_id}).scalar_one()
    out = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in plan.items() if k != "base_grid_ids"}
    return out | {"grids": int(grids), "base_grids": len(plan["base_grid_ids"])}


def get(session: Session, principal: Principal, plan_id: int) -> dict[str, Any]:
    """The plan and its grids as a GeoJSON FeatureCollection (EPSG:4326)."""
    plan = _plan_row(session, plan_id)
    _may_plan(principal, plan["scope_code"], "plans.read")
    rows = session.execute(text("""SELECT id, code, name, kind, community_code, source_grid_id, ST_AsGeoJSON(geom, 7) AS g,
                                          ST_Area(geom::geography) / 1e6 AS area_km2 FROM plan_grid WHERE plan_id = :p ORDER BY coalesce(code, 'z'), id"""),
                           {"p": plan_id}).mappings().all()  # fmt: skip
    features = [{"type": "Feature", "id": r["id"], "geometry": json.loads(r["g"]),
                 "properties": {k: r[k] for k in ("id", "code", "name", "kind", "community_code", "source_grid_id")}
                 | {"area_km2": round(float(r["area_km2"]), 4)}} for r in rows]  # fmt: skip
    return {"type": "FeatureCollection", "plan": summary(session, plan_id), "features": features}


def listing(session: Session, principal: Principal, *, scope_code: str | None = None, status: str | None = None,
            limit: int = 100) -> list[dict[str, Any]]:  # fmt: skip
    access.require(principal, "plans.read")
    where, params = ["true"], {"limit": max(1, min(limit, 1000))}
    if scope_code:
        where.append("(scope_code LIKE :p OR :c LIKE scope_code || '%')")
        params |= {"p": scope_code + "%", "c": scope_code}
    if status:
        where.append("status = :s")
        params["s"] = status
    ids = session.execute(text(f"SELECT id, scope_code FROM plan WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT :limit"), params).all()
    out = []
    for plan_id, code in ids:
        try:
            _may_plan(principal, code, "plans.read")
        except Forbidden:
            continue
        out.append(summary(session, plan_id))
    return out


# ---------------------------------------------------------------------------------------------
# suggestions
# ---------------------------------------------------------------------------------------------
def suggest(session: Session, principal: Principal, *, scope_code: str, name: str | None = None, households_min: int = 300,
            households_max: int = 500, balance_load: bool = False, follow_roads: bool = True, seed: int = 0,
            progress: Progress = _no_progress) -> dict[str, Any]:  # fmt: skip
    """A balanced plan from the scope's buildings, saved as a draft, with its balance and
    compactness beside the grids in force and a k-means baseline computed in the same call.
    A street is suggested community by community (grids never cross a community)."""
    from gridmap.planning import suggest as algo

    check_scope_code(scope_code)
    _may_plan(principal, scope_code, "plans.write")
    if not households_min <= households_max:
        raise InvalidInput("Invalid values for households_min and households_max: min ≤ max")
    started = time.perf_counter()
    communities = _communities(session, scope_code)
    epsg = metric_epsg_for(float(communities.geometry.union_all().centroid.x))
    areas = dict(zip(communities["code"], project(communities.geometry, 4326, epsg), strict=True))
    buildings = _buildings(session, scope_code, epsg, residents=False)
    if buildings.empty or buildings["households"].sum() == 0:
        raise InvalidInput(f"Area {scope_code} has no households in its buildings: nothing to balance")
    current = _current(session, scope_code)
    current = current.set_geometry(project(current.geometry, 4326, epsg), crs=epsg)
    frame = gpd.GeoDataFrame(buildings[["id", "households"]], geometry=list(buildings["point"]), crs=epsg)
    frame["community"] = [communities["code"].iloc[w] if w >= 0 else None for w in _assign(frame.geometry.to_numpy(), np.array(list(areas.values()), dtype=object))]
    if balance_load:
        frame["load"] = _building_load(session, scope_code, frame, epsg)
    roads = _roads(session, scope_code, epsg) if follow_roads else None
    rows, base_rows = [], []
    for code, area in areas.items():
        part = frame[frame["community"] == code].reset_index(drop=True)
        if part.empty:
            continue
        progress(f"suggesting {code} ({len(part):,} buildings)")
        found = algo.suggest(part, area, households_min=households_min, households_max=households_max,
                             load="load" if balance_load else None, roads=roads, seed=seed)  # fmt: skip
        base = algo.kmeans_baseline(part, area, found.k, seed=seed)
        rows += [(code, p) for p in found.polygons]
        base_rows += [(code, p, h) for p, h in zip(base.polygons, base.households, strict=True)]
    if not rows:
        raise InvalidInput(f"Area {scope_code} has no buildings inside its communities")
    suggested = np.array([p for _, p in rows], dtype=object)
    households = _households_in(frame, suggested)
    baseline = np.array([p for _, p, _ in base_rows], dtype=object)
    report = {
        "suggested": metrics.summary(suggested, households, households_min, households_max),
        "kmeans": metrics.summary(baseline, _households_in(frame, baseline), households_min, households_max),
        "current": metrics.summary(current.geometry.to_numpy(), _households_in(frame, current.geometry.to_numpy()),
                                   households_min, households_max) if len(current) else None,
    }  # fmt: skip
    lonlat = project(suggested, epsg, 4326)
    out = gpd.GeoDataFrame({"community_code": [c for c, _ in rows], "kind": "general"}, geometry=list(lonlat), crs=4326)
    out = _keep_codes(out, current, epsg)
    plan = create(session, principal, name=name or f"建议方案 suggested plan for {scope_code}", scope_code=scope_code, frame=out,
                  description=f"Suggested by gridmap ({households_min}–{households_max} households per grid, seed {seed})")  # fmt: skip
    rules = rules_from(households_min=households_min, households_max=households_max)
    session.execute(text("UPDATE plan SET description = :d WHERE id = :p"),
                    {"d": json.dumps(finite({"suggestion": report, "rules": rules.as_dict()}), ensure_ascii=False), "p": plan["id"]})  # fmt: skip
    return finite({"plan": summary(session, plan["id"]), "grids": len(rows), "households": [int(h) for h in households],
                   "comparison": report, "seconds": round(time.perf_counter() - started, 3)})  # fmt: skip


def _households_in(frame: gpd.GeoDataFrame, polygons: np.ndarray) -> np.ndarray:
    where = _assign(frame.geometry.to_numpy(), polygons)
    inside = where >= 0
    return np.bincount(where[inside], weights=frame["households"].to_numpy(float)[inside], minlength=len(polygons))


def _keep_codes(out: gpd.GeoDataFrame, current: gpd.GeoDataFrame, epsg: int) -> gpd.GeoDataFrame:
    """Each current grid's code goes to the suggested grid that overlaps it most (each code once),
    so workers and history follow the grid most like theirs; the others get new codes on apply."""
    codes: list[str | None] = [None] * len(out)
    if len(current):
        new = project(out.geometry.to_numpy(), 4326, epsg)
        pairs = []
        for j, (code, geom) in enumerate(zip(current["code"], current.geometry, strict=True)):
            for i, g in enumerate(new):
                if g.intersects(geom):
                    pairs.append((shapely.intersection(g, geom).area, i, j, code))
        used_i, used_j = set(), set()
        for _, i, j, code in sorted(pairs, reverse=True):
            if i not in used_i and j not in used_j and code[:12] == out["community_code"].iloc[i]:
                codes[i] = code
                used_i.add(i)
                used_j.add(j)
    return out.assign(code=codes)


def _building_load(session: Session, scope_code: str, frame: gpd.GeoDataFrame, epsg: int) -> np.ndarray:
    """90-day cases per building: each case counts for the nearest building of the scope."""
    cases = _recent_cases(session, scope_code, epsg)
    if not len(cases) or not len(frame):
        return np.zeros(len(frame))
    nearest = shapely.STRtree(frame.geometry.to_numpy()).query_nearest(cases)[1]
    return np.bincount(nearest, minlength=len(frame)).astype(float)


def _roads(session: Session, scope_code: str, epsg: int) -> gpd.GeoSeries | None:
    rows = gpd.read_postgis(text(f"""{SCOPE_CTE}
                                    SELECT r.geom FROM road r, s WHERE r.geom && s.g AND ST_Intersects(r.geom, s.g)"""),
                            session.connection(), geom_col="geom", params={"p": scope_code + "%"}, crs=4326)  # fmt: skip
    if rows.empty:
        return None
    return gpd.GeoSeries(project(rows.geometry, 4326, epsg), crs=epsg)
