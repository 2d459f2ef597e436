"""The layers of gridmap's vector tiles: one SQL statement per layer returning one MVT layer.

Every statement takes the tile (:z, :x, :y), the tile's pixel size in metres (:px, for
simplification and bins), a feature limit (:limit), a history window in days (:days) and the
caller's reach as a WHERE term on the layer's grid code ({scope}, from `gridmap.access`).
Geometries are stored in WGS84 and indexed there, so each statement selects with the tile's
envelope (plus the buffer) transformed to EPSG:4326 and draws in EPSG:3857 with ST_AsMVTGeom.

No layer carries residents' personal data: grids carry counts of cases, incidents their
category, status and place (never the reporter's words), buildings their use and floors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gridmap.services import casecounts

EXTENT = 4096  # MVT coordinate space of a tile
BUFFER = 64  # pixels drawn beyond the tile's edge, so lines and fills join up
WORLD_M = 40075016.685578488  # the width of EPSG:3857 in metres
MAX_ZOOM = 22
DENSITY_CELLS = 32  # bins across a tile at low zooms (128 px each)
DENSITY_POINTS_FROM = 13  # from this zoom the density layer is the cases themselves

# the tile, and the box (with the buffer) to select rows with, in the storage CRS
TILE = ("(SELECT ST_TileEnvelope(:z, :x, :y) AS env, "
        f"ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}), 4326) AS box, "
        f"ST_TileEnvelope(:z, :x, :y, margin => {BUFFER / EXTENT}) AS box_m) b")  # fmt: skip
KEPT = f"({casecounts.FRESH_SQL} AND :days = {casecounts.WINDOW_DAYS})"  # the kept counts (and shapes) serve this tile
OVERDUE = casecounts.overdue_sql("i")
OPEN = casecounts.open_sql("i")


def _geom(expr: str, buffer: int = BUFFER) -> str:
    return f"ST_AsMVTGeom({expr}, b.env, {EXTENT}, {buffer}, true)"


@dataclass(frozen=True)
class Layer:
    """One tile layer: what it shows, at which zooms, and how it is read."""

    name: str
    zh: str
    en: str
    minzoom: int
    geometry: str  # Polygon, LineString or Point (TileJSON / the map's styling)
    fields: dict[str, str]  # property → description (TileJSON vector_layers)
    sql: str  # the inner SELECT: fid, geom and the fields; {scope} for the caller's reach
    scope_alias: str | None  # the table alias whose grid_code bounds the caller's reach; None: city-wide roles only
    limit: int = 10_000  # features per tile at most (the most relevant first)
    ttl: float = 3600.0  # seconds a cached tile stays fresh without a change notice
    days: int | None = None  # default history window; None: the layer has none
    scope_column: str = "grid_code"  # the grid code column of scope_alias
    id_field: bool = True
    maxzoom: int = MAX_ZOOM
    labels: tuple[str, int] | None = None  # select-list items for {labels}, and the zoom they start at
    # planned without parallel workers: the incident tables are big enough for the planner to start
    # some, which costs ~10 ms on a tile of a few (the other layers' plans never do; they skip the SET)
    serial: bool = False
    notes: list[str] = field(default_factory=list)


GRIDS = Layer(
    "grids", "网格", "grids", 9, "Polygon",
    {"code": "15-digit grid code", "name": "grid name (from zoom 12)", "kind": "general, school, hospital, … (from zoom 12)",
     "community": "12-digit community code (from zoom 12)", "area_km2": "area in km²", "open": "open cases",
     "overdue": "cases past their deadline",
     "cases": "cases reported in the window (days)"},
    f"""(SELECT g.grid_id AS fid, g.code, {{labels}} round(g.area_km2::numeric, 4)::float AS area_km2, g.open, g.overdue,
               g.cases, {_geom("ST_Simplify(g.geom_m, :px, true)")} AS geom
             FROM {TILE}, (SELECT grid_code AS code, grid_id, name, kind, area_km2, open, overdue, cases, geom_m
                           FROM grid_case_count) g
             WHERE {KEPT} AND g.geom_m && b.box_m AND {{scope}})
       UNION ALL
       (SELECT g.id AS fid, g.code, {{labels}} round((g.area_m2 / 1e6)::numeric, 4)::float AS area_km2,
         (SELECT count(*) FROM incident i WHERE i.grid_code = g.code AND {OPEN}) AS open,
         (SELECT count(*) FROM incident i WHERE i.grid_code = g.code AND {OPEN} AND {OVERDUE}) AS overdue,
         (SELECT count(*) FROM incident i WHERE i.grid_code = g.code AND i.reported_at >= now() - make_interval(days => :days)) AS cases,
         {_geom("ST_Simplify(ST_Transform(g.geom, 3857), :px, true)")} AS geom
       FROM {TILE}, grid g
       WHERE NOT {KEPT} AND g.valid_to IS NULL AND g.geom && b.box AND {{scope}})
       ORDER BY code LIMIT :limit""",
    scope_alias="g", scope_column="code", limit=20_000, ttl=60.0, days=casecounts.WINDOW_DAYS,
    labels=("g.name, g.kind, left(g.code, 12) AS community,", 12),
    notes=["name, kind and community from zoom 12 (unreadable below, a third of the bytes)",
           "while the kept rows are current (and `days` is 30) the tile reads them alone: counts, name, kind, area and the "
           "boundary already in Web Mercator (grid_case_count, migrations 0016 and 0020)",
           "the counts are kept ahead by the API (gridmap.services.casecounts): a case change reaches them within a "
           "second, the clock (overdue, the window) within a minute; with another `days` they are counted as the tile renders"],
)  # fmt: skip

INCIDENTS = Layer(
    "incidents", "案件", "incidents", 12, "Point",
    {"code": "case number", "category": "category code", "category_zh": "category (中文)", "category_en": "category (English)",
     "status": "workflow status", "severity": "1 low … 4 critical", "level": "escalation level",
     "grid_code": "grid responsible", "overdue": "past its deadline", "age_h": "hours since reported",
     "assignee": "staff member handling it"},
    f"""SELECT i.id AS fid, i.code, i.category_code AS category, c.name_zh AS category_zh, c.name_en AS category_en, i.status, i.severity,
         i.level, i.grid_code, {OVERDUE} AS overdue,
         round(extract(epoch FROM now() - i.reported_at) / 3600.0)::int AS age_h, s.name AS assignee,
         {_geom("ST_Transform(i.geom, 3857)")} AS geom
       FROM {TILE}, incident i JOIN category c ON c.code = i.category_code LEFT JOIN staff s ON s.id = i.assignee_id
       WHERE i.geom && b.box AND ({OPEN} OR i.reported_at >= now() - make_interval(days => :days)) AND {{scope}}
       ORDER BY {OVERDUE} DESC, ({OPEN}) DESC, i.severity DESC, i.reported_at DESC LIMIT :limit""",
    scope_alias="i", limit=5_000, ttl=60.0, days=7, serial=True,
    notes=["open cases, and closed or rejected ones reported within `days`; overdue first"],
)  # fmt: skip

DENSITY = Layer(
    "density", "案件密度", "case density", 0, "Polygon",
    {"n": "cases in the bin", "w": "cases weighted by severity (heatmap weight)"},
    f"""SELECT count(*) AS n, sum(q.severity) AS w,
         ST_AsMVTGeom(ST_MakeEnvelope(q.gx * :cell, q.gy * :cell, (q.gx + 1) * :cell, (q.gy + 1) * :cell, 3857),
                      ST_TileEnvelope(:z, :x, :y), {EXTENT}, 0, true) AS geom
       FROM (SELECT ST_TileEnvelope(:z, :x, :y) AS env) b
       CROSS JOIN LATERAL (
         SELECT floor(ST_X(p.p) / :cell)::bigint AS gx, floor(ST_Y(p.p) / :cell)::bigint AS gy, p.severity
         FROM (SELECT ST_Transform(i.geom, 3857) AS p, i.severity FROM incident i
               WHERE i.geom && ST_Transform(b.env, 4326) AND i.reported_at >= now() - make_interval(days => :days)
                 AND {{scope}}) p
         WHERE ST_X(p.p) >= ST_XMin(b.env) AND ST_X(p.p) < ST_XMax(b.env)
           AND ST_Y(p.p) >= ST_YMin(b.env) AND ST_Y(p.p) < ST_YMax(b.env)) q
       GROUP BY q.gx, q.gy""",
    scope_alias="i", limit=0, ttl=60.0, days=30, id_field=False, maxzoom=DENSITY_POINTS_FROM - 1, serial=True,
    notes=[f"square bins, {DENSITY_CELLS} across a tile, on one grid across tiles (a case counts in one bin); "
           f"from zoom {DENSITY_POINTS_FROM} the `density_points` layer has the cases themselves"],
)  # fmt: skip

DENSITY_POINTS = Layer(
    "density_points", "案件点", "case points (density at high zooms)", DENSITY_POINTS_FROM, "Point",
    {"n": "1 (one case)", "w": "severity (heatmap weight)"},
    f"""SELECT i.id AS fid, 1 AS n, i.severity AS w, {_geom("ST_Transform(i.geom, 3857)")} AS geom
       FROM {TILE}, incident i
       WHERE i.geom && b.box AND i.reported_at >= now() - make_interval(days => :days) AND {{scope}}
       ORDER BY i.reported_at DESC LIMIT :limit""",
    scope_alias="i", limit=20_000, ttl=60.0, days=30, serial=True,
)  # fmt: skip

BUILDINGS = Layer(
    "buildings", "楼栋", "buildings", 14, "Polygon",
    {"use": "residential, commercial, …", "floors": "floors above ground", "grid_code": "grid it belongs to"},
    f"""SELECT bd.id AS fid, bd.use, bd.floors, bd.grid_code, {_geom("ST_Transform(bd.geom, 3857)")} AS geom
       FROM {TILE}, building bd WHERE bd.geom && b.box AND {{scope}} ORDER BY bd.id LIMIT :limit""",
    scope_alias="bd", limit=20_000,
)  # fmt: skip

PATROLS = Layer(
    "patrols", "巡查轨迹", "patrol tracks", 11, "LineString",
    {"started": "start, Unix seconds", "minutes": "duration", "length_m": "length in metres"},
    f"""SELECT p.id AS fid, extract(epoch FROM p.started_at)::bigint AS started,
         round(extract(epoch FROM p.ended_at - p.started_at) / 60.0)::int AS minutes, p.length_m::float AS length_m,
         {_geom("ST_Simplify(ST_Transform(p.geom, 3857), :px)")} AS geom
       FROM {TILE}, patrol_track p
       WHERE p.geom && b.box AND p.started_at >= now() - make_interval(days => :days)
       ORDER BY p.started_at DESC LIMIT :limit""",
    scope_alias=None, limit=10_000, ttl=300.0, days=7,
    notes=["for city-wide roles: tracks carry no grid, so they cannot be cut to a grid worker's reach"],
)  # fmt: skip

CAMERAS = Layer(
    "cameras", "监控", "cameras", 12, "Point",
    {"code": "camera code", "name": "name", "kind": "camera kind", "online": "online now", "grid_code": "grid"},
    f"""SELECT cm.id AS fid, cm.code, cm.name, cm.kind, cm.online, cm.grid_code, {_geom("ST_Transform(cm.geom, 3857)")} AS geom
       FROM {TILE}, camera cm WHERE cm.geom && b.box AND {{scope}} ORDER BY cm.id LIMIT :limit""",
    scope_alias="cm",
)  # fmt: skip

SERVICE_POINTS = Layer(
    "service_points", "服务点", "service points", 10, "Point",
    {"name": "name", "kind": "kind", "address": "address", "phone": "public phone", "grid_code": "grid"},
    f"""SELECT sp.id AS fid, sp.name, sp.kind, sp.address, sp.phone, sp.grid_code, {_geom("ST_Transform(sp.geom, 3857)")} AS geom
       FROM {TILE}, service_point sp WHERE sp.geom && b.box AND {{scope}} ORDER BY sp.id LIMIT :limit""",
    scope_alias="sp",
)  # fmt: skip

GAPS = Layer(
    "gaps", "巡查空白", "patrol gaps", 10, "Polygon",
    {"grid_code": "grid", "covered_share": "share of the grid's area patrolled", "tracks": "tracks that came near",
     "computed_at": "when the snapshot was computed, Unix seconds"},
    f"""SELECT c.grid_code, round(c.covered_share::numeric, 3)::float AS covered_share, c.tracks,
         extract(epoch FROM c.computed_at)::bigint AS computed_at,
         {_geom("ST_Simplify(ST_Transform(c.uncovered, 3857), :px, true)")} AS geom
       FROM {TILE}, coverage_snapshot c
       WHERE c.uncovered && b.box AND {{scope}} ORDER BY c.covered_share LIMIT :limit""",
    scope_alias="c", id_field=False, ttl=3600.0,
    notes=["the parts of each grid no patrol came near, from `gridmap stats refresh-coverage` (computed ahead: "
           "minutes for a city)"],
)  # fmt: skip

LAYERS: dict[str, Layer] = {layer.name: layer for layer in
                            (GRIDS, INCIDENTS, DENSITY, DENSITY_POINTS, BUILDINGS, PATROLS, CAMERAS, SERVICE_POINTS, GAPS)}  # fmt: skip
# which layers a change notice concerns
INCIDENT_LAYERS = ("incidents", "density", "density_points")  # the grids' counts: a grid_case_count notice
TABLE_LAYERS = {"building": "buildings", "camera": "cameras", "service_point": "service_points", "patrol_track": "patrols",
                "coverage_snapshot": "gaps"}


def statement(layer: Layer, scope_term: str, z: int = MAX_ZOOM) -> str:
    """The whole statement at zoom z: the layer's rows encoded as one MVT layer (bytea)."""
    fid = ", 'fid'" if layer.id_field else ""
    sql = layer.sql.replace("{scope}", scope_term)
    if layer.labels is not None:
        sql = sql.replace("{labels}", layer.labels[0] if z >= layer.labels[1] else "")
    return f"SELECT ST_AsMVT(t, '{layer.name}', {EXTENT}, 'geom'{fid}) FROM ({sql}) t WHERE t.geom IS NOT NULL"


def pixel_m(z: int) -> float:
    """The size of one tile pixel (of EXTENT) in metres at zoom z."""
    return WORLD_M / (1 << z) / EXTENT


def cell_m(z: int) -> float:
    """The width of a density bin at zoom z: bins of all tiles line up on one global grid."""
    return WORLD_M / (1 << z) / DENSITY_CELLS
