"""Command-center analytics (指挥中心分析) per grid, one code path for the map, the API and notebooks.

* `grid_stats`: cases in a window (optionally of some categories) per grid, per 1,000 residents
  and per km²; open and overdue now; on-time closure rate and average handling time; a heatmap
  weight (severity-weighted cases).
* `hotspots`: Getis-Ord Gi* (PySAL esda) of a per-grid value over the grids' queen contiguity,
  with z-scores, p-values and the usual hot / cold classes at 90, 95 and 99 % confidence.
* `coverage`: the share of each grid's area (and of its road length, where roads exist) within
  `buffer_m` of the patrol tracks of the window, and the uncovered part as geometry.
* `patrol_gaps`: grids ranked where case density is high and coverage low.
* `three_zeros`: zero petitions, accidents and criminal cases (三零) per grid or community,
  from the categories' tags.

All of it runs within the caller's reach (`gridmap.access.Scope`); only counts leave, never a
resident.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.access import Scope, scope_filter
from gridmap.crs import metric_epsg_for
from gridmap.errors import InvalidInput
from gridmap.services.casecounts import open_sql, overdue_sql

DEFAULT_DAYS = 30
MAX_DAYS = 3660
THREE_ZEROS = {"petitions": "petition", "accidents": "accident", "criminal": "criminal"}  # 零上访, 零事故, 零发案
HOTSPOT_VALUES = ("per_km2", "per_1000", "cases", "weight", "open", "overdue")
CONFIDENCE = ((2.576, 99), (1.960, 95), (1.645, 90))  # |z| above → confidence of a hot or cold spot


def window(since: dt.datetime | None, until: dt.datetime | None, *, days: int = DEFAULT_DAYS) -> tuple[dt.datetime, dt.datetime]:
    """[since, until): default the last `days` days up to now; both must carry a zone."""
    for name, value in (("from", since), ("to", until)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"Invalid value for parameter {name}: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    until = until or dt.datetime.now(dt.UTC)
    try:
        since = since or until - dt.timedelta(days=days)
    except OverflowError:
        raise InvalidInput("Invalid value for parameter to: too early; give from as well") from None
    if since >= until:
        raise InvalidInput("Invalid value for parameter to: must be later than from")
    if until - since > dt.timedelta(days=MAX_DAYS):
        raise InvalidInput(f"Invalid value for parameter from: a window of at most {MAX_DAYS} days")
    return since, until


def _categories(session: Session, categories: Sequence[str]) -> list[str]:
    """Category codes (a major class includes its subclasses), checked against the taxonomy."""
    known = set(session.execute(text("SELECT code FROM category")).scalars())
    for code in categories:
        if code not in known:
            raise InvalidInput(f"Unknown category {code[:16]!r}")
    return [c + "%" for c in categories]


def grids(session: Session, scope: Scope, *, residents: bool = True) -> gpd.GeoDataFrame:
    """The grids in force within reach: code, name, kind, community, area (km²), residents
    (counted unless `residents` is False: 4 s of the city's 12.7 M rows the map can spare)."""
    g_term, g_params = scope_filter("g", scope, "code")
    r_term, r_params = scope_filter("r", scope)
    counted = (f"LEFT JOIN (SELECT r.grid_code, count(*) AS n FROM resident r WHERE {r_term} GROUP BY 1) r ON r.grid_code = g.code"
               if residents else "LEFT JOIN (SELECT NULL::text AS grid_code, NULL::bigint AS n) r ON false")  # fmt: skip
    sql = f"""
        SELECT g.code, g.name, g.kind, left(g.code, 12) AS community, left(g.code, 9) AS street,
               g.area_m2 / 1e6 AS area_km2, coalesce(r.n, 0) AS residents, g.geom
        FROM grid g {counted}
        WHERE g.valid_to IS NULL AND {g_term}
        ORDER BY g.code"""
    frame = gpd.read_postgis(text(sql), session.connection(), geom_col="geom", params={**g_params, **r_params}, crs=4326)
    return frame.set_index("code", drop=False)


def grid_stats(session: Session, scope: Scope, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
               categories: Sequence[str] = (), residents: bool = True) -> gpd.GeoDataFrame:  # fmt: skip
    """Per grid in reach: cases in [since, until) and their rates, open and overdue now, KPIs."""
    since, until = window(since, until)
    frame = grids(session, scope, residents=residents)
    term, params = scope_filter("i", scope)
    params |= {"since": since, "until": until}
    cat = ""
    if categories:
        params["cats"] = _categories(session, categories)
        cat = "AND i.category_code LIKE ANY (:cats)"
    in_window = pd.read_sql(text(f"""
        SELECT i.grid_code AS code, count(*) AS cases, sum(i.severity) AS weight,
               count(*) FILTER (WHERE i.status = 'closed') AS closed,
               count(*) FILTER (WHERE i.status = 'closed' AND i.resolved_at <= i.deadline_at) AS closed_on_time,
               avg(extract(epoch FROM i.closed_at - i.reported_at) / 3600.0) FILTER (WHERE i.status = 'closed') AS handling_h
        FROM incident i WHERE i.reported_at >= :since AND i.reported_at < :until AND {term} {cat}
        GROUP BY 1"""), session.connection(), params=params).set_index("code")  # fmt: skip
    now = pd.read_sql(text(f"""
        SELECT i.grid_code AS code, count(*) AS open,
               count(*) FILTER (WHERE {overdue_sql()}) AS overdue
        FROM incident i WHERE {open_sql()} AND {term} {cat}
        GROUP BY 1"""), session.connection(), params=params).set_index("code")  # fmt: skip
    frame = frame.join(in_window).join(now)
    counts = ["cases", "weight", "closed", "closed_on_time", "open", "overdue"]
    frame[counts] = frame[counts].fillna(0).astype(int)
    frame["per_1000"] = np.where((frame["residents"] > 0) & residents, frame["cases"] / frame["residents"].clip(lower=1) * 1000, np.nan)
    frame["per_km2"] = frame["cases"] / frame["area_km2"]
    frame["on_time_rate"] = np.where(frame["closed"] > 0, frame["closed_on_time"] / frame["closed"].clip(lower=1), np.nan)
    frame["handling_h"] = frame["handling_h"].astype(float)
    frame.attrs.update(since=since.isoformat(), until=until.isoformat(), categories=list(categories))
    return frame


def hotspots(stats: gpd.GeoDataFrame, *, value: str = "per_km2", permutations: int = 0,
             seed: int = 42) -> gpd.GeoDataFrame:  # fmt: skip
    """Getis-Ord Gi* of `value` over queen contiguity (grids sharing an edge or a corner).

    With `permutations` = 0 the p-values are the normal approximation (fast at city scale);
    otherwise conditional permutations (esda's pseudo p-values). Adds gi_z, gi_p and spot:
    hot_99 … hot_90, cold_90 … cold_99, or none.
    """
    from esda.getisord import G_Local
    from libpysal.weights import Queen

    if value not in HOTSPOT_VALUES or value not in stats.columns:
        raise InvalidInput(f"Invalid value for parameter value: one of {', '.join(HOTSPOT_VALUES)}")
    out = stats.copy()
    out["gi_z"], out["gi_p"], out["spot"] = np.nan, np.nan, "none"
    if len(out) < 3:
        return out
    y = out[value].fillna(0.0).to_numpy(dtype=float)
    with warnings.catch_warnings():  # islands (grids touching no other) are reported, not fatal
        warnings.simplefilter("ignore")
        w = _queen(out, Queen)
        # binary weights with each grid counted in its own neighbourhood: Gi* as Getis and Ord define it
        g = G_Local(y, w, transform="B", star=True, permutations=permutations, seed=seed, keep_simulations=False)
    z = np.asarray(g.Zs, dtype=float)
    p = np.asarray(g.p_norm if permutations == 0 else g.p_sim, dtype=float)
    out["gi_z"], out["gi_p"] = z, p
    spot = np.full(len(out), "none", dtype=object)
    for threshold, confidence in reversed(CONFIDENCE):  # weakest first, strongest overwrite
        spot[z >= threshold] = f"hot_{confidence}"
        spot[z <= -threshold] = f"cold_{confidence}"
    spot[~np.isfinite(z)] = "none"
    out["spot"] = spot
    out.attrs.update(stats.attrs, value=value, permutations=permutations)
    return out


def warm_up(session: Session) -> None:
    """Import PySAL and build the city's grid contiguity once, so that a serving process's
    first map or hotspot request does not pay for them (about 2 s at city scale)."""
    from libpysal.weights import Queen

    frame = grids(session, Scope(clear=False, all_grids=True, grids=()), residents=False)
    if len(frame) >= 3:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _queen(frame, Queen)


_WEIGHTS: dict[int, Any] = {}  # queen contiguity by the grids it was built for (1.2 s for the city's grids)


def _queen(frame: gpd.GeoDataFrame, queen: Any) -> Any:
    """Queen contiguity of the frame's grids, built once per set of grid versions."""
    key = hash((tuple(frame["code"]), tuple(shapely.to_wkb(frame.geometry.values[:: max(1, len(frame) // 64)], hex=True))))
    w = _WEIGHTS.get(key)
    if w is None:
        if len(_WEIGHTS) > 16:
            _WEIGHTS.clear()
        w = _WEIGHTS[key] = queen.from_dataframe(frame, use_index=False, silence_warnings=True)
    return w


def coverage(session: Session, scope: Scope, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
             buffer_m: float = 50.0, frame: gpd.GeoDataFrame | None = None, with_uncovered: bool = True,
             max_grids: int | None = None) -> gpd.GeoDataFrame:  # fmt: skip
    """Per grid in reach: the share of its area within `buffer_m` of the window's patrol tracks,
    the same share of its road length where it has roads, and (`with_uncovered`) the part no
    patrol came near (WGS84). Exact polygon arithmetic in the area's UTM zone; `max_grids`
    refuses larger areas (an HTTP request should not compute a whole city: see docs/stats.md)."""
    if not 1 <= buffer_m <= 1000:
        raise InvalidInput("Invalid value for parameter buffer_m: 1 to 1000 metres")
    since, until = window(since, until, days=7)
    grid = frame if frame is not None else grids(session, scope, residents=False)
    if max_grids is not None and len(grid) > max_grids:
        raise InvalidInput(f"Coverage of {len(grid):,} grids at once is too long for a request (at most {max_grids:,}): "
                           "narrow it with area= (a district, street or community code)")
    out = grid[["code", "name", "community", "area_km2", "geom"]].copy()
    out["tracks"], out["covered_share"], out["road_m"], out["road_covered_share"] = 0, 0.0, 0.0, np.nan
    out["uncovered"] = out["geom"]
    if grid.empty:
        return gpd.GeoDataFrame(out, geometry="geom", crs=4326)
    epsg = metric_epsg_for(float(grid.geometry.union_all().centroid.x))
    west, south, east, north = grid.total_bounds
    box = {"w": west, "s": south, "e": east, "n": north, "since": since, "until": until}
    tracks = gpd.read_postgis(text("""SELECT id, geom FROM patrol_track WHERE started_at >= :since AND started_at < :until
                                      AND geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"""),
                              session.connection(), geom_col="geom", params=box, crs=4326).to_crs(epsg)  # fmt: skip
    roads = gpd.read_postgis(text("SELECT id, geom FROM road WHERE geom && ST_MakeEnvelope(:w, :s, :e, :n, 4326)"),
                             session.connection(), geom_col="geom", params=box, crs=4326).to_crs(epsg)  # fmt: skip
    polygons = grid.to_crs(epsg).geometry.to_numpy()
    buffers = _buffers(tracks.geometry.to_numpy(), buffer_m)
    pairs = shapely.STRtree(buffers).query(polygons, predicate="intersects")  # (grid index, buffer index)
    road_tree = shapely.STRtree(roads.geometry.to_numpy()) if len(roads) else None
    covered_geoms = np.empty(len(polygons), dtype=object)
    order = np.argsort(pairs[0], kind="stable")
    grids_hit, starts = np.unique(pairs[0][order], return_index=True)
    groups = np.split(pairs[1][order], starts[1:]) if len(order) else []
    shares = np.zeros(len(polygons))
    counts = np.zeros(len(polygons), dtype=int)
    for k, members in zip(grids_hit, groups, strict=True):
        # clipping each buffer to the grid first keeps the union small (measured 1.6× faster)
        covered = shapely.union_all(shapely.intersection(buffers[members], polygons[k]))
        covered_geoms[k] = covered
        shares[k] = covered.area / polygons[k].area if polygons[k].area else 0.0
        counts[k] = len(members)
    out["tracks"], out["covered_share"] = counts, np.clip(shares, 0.0, 1.0)
    road_m = np.zeros(len(polygons))
    road_share = np.full(len(polygons), np.nan)
    if road_tree is not None:
        road_pairs = road_tree.query(polygons, predicate="intersects")
        road_lines = roads.geometry.to_numpy()
        for k in np.unique(road_pairs[0]):
            inside = shapely.intersection(shapely.union_all(road_lines[road_pairs[1][road_pairs[0] == k]]), polygons[k])
            road_m[k] = inside.length
            if inside.length > 0:
                hit = covered_geoms[k]
                road_share[k] = (shapely.intersection(inside, hit).length / inside.length) if hit is not None else 0.0
    out["road_m"], out["road_covered_share"] = road_m, road_share
    if with_uncovered:
        uncovered = np.array([shapely.difference(polygons[k], covered_geoms[k]) if covered_geoms[k] is not None
                              else polygons[k] for k in range(len(polygons))], dtype=object)  # fmt: skip
        out["uncovered"] = gpd.GeoSeries(uncovered, crs=epsg, index=out.index).to_crs(4326)
    else:
        out = out.drop(columns="uncovered")
    result = gpd.GeoDataFrame(out, geometry="geom", crs=4326)
    result.attrs.update(since=since.isoformat(), until=until.isoformat(), buffer_m=buffer_m)
    return result


def refresh_coverage(session: Session, *, days: int = 7, buffer_m: float = 50.0,
                     until: dt.datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """Compute the whole city's coverage for the last `days` and replace `coverage_snapshot`
    with it in the caller's transaction (the map and the `gaps` tiles read it)."""
    from geoalchemy2.shape import from_shape

    from gridmap.models import CoverageSnapshot

    until = until or dt.datetime.now(dt.UTC)
    since = until - dt.timedelta(days=days)
    session.execute(text("SET LOCAL statement_timeout = '15min'"))  # a batch job, not a request
    everything = Scope(clear=False, all_grids=True, grids=())
    covered = coverage(session, everything, since=since, until=until, buffer_m=buffer_m)
    session.execute(text("DELETE FROM coverage_snapshot"))
    rows = []
    for row in covered.itertuples():
        gone = row.uncovered
        multi = None if gone is None or gone.is_empty else shapely.MultiPolygon(
            [p for p in getattr(gone, "geoms", [gone]) if p.geom_type == "Polygon"])  # fmt: skip
        rows.append(CoverageSnapshot(grid_code=row.code, since=since, until=until, buffer_m=buffer_m, tracks=int(row.tracks),
                                     covered_share=float(row.covered_share),
                                     road_covered_share=None if np.isnan(row.road_covered_share) else float(row.road_covered_share),
                                     uncovered=from_shape(multi, srid=4326) if multi is not None and not multi.is_empty else None))  # fmt: skip
    session.add_all(rows)
    session.flush()
    return {"grids": len(rows), "since": since.isoformat(), "until": until.isoformat(), "buffer_m": buffer_m,
            "mean_covered_share": round(float(covered["covered_share"].mean()), 4) if len(covered) else None}  # fmt: skip


def _buffers(lines: np.ndarray, buffer_m: float) -> np.ndarray:
    """The tracks' buffers: GPS jitter under 5 m simplified away first, two threads (GEOS
    releases the GIL), round ends with 4 segments per quarter circle (area error < 0.5 %)."""
    from concurrent.futures import ThreadPoolExecutor

    lines = shapely.simplify(lines, 5.0)
    chunks = np.array_split(lines, 2) if len(lines) > 1000 else [lines]
    with ThreadPoolExecutor(len(chunks)) as pool:
        parts = list(pool.map(lambda part: shapely.buffer(part, buffer_m, quad_segs=4), chunks))
    return np.concatenate(parts) if parts else np.empty(0, dtype=object)


def patrol_gaps(stats: gpd.GeoDataFrame, covered: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Grids ranked by the patrol gap index: the percentile rank of case density (per km²) times
    the uncovered share. 1 = the densest grid with no patrol at all; 0 = no cases or fully patrolled."""
    out = stats[["code", "name", "community", "cases", "per_km2", "geom"]].join(
        covered[["covered_share", "tracks"]])  # fmt: skip
    density_rank = out["per_km2"].rank(pct=True, method="average").where(out["cases"] > 0, 0.0)
    out["gap_index"] = (density_rank * (1.0 - out["covered_share"].fillna(0.0))).round(4)
    out = out.sort_values(["gap_index", "per_km2"], ascending=False)
    out["gap_rank"] = np.arange(1, len(out) + 1)
    return gpd.GeoDataFrame(out, geometry="geom", crs=4326)


def three_zeros(session: Session, scope: Scope, *, since: dt.datetime | None = None, until: dt.datetime | None = None,
                level: str = "grid") -> pd.DataFrame:  # fmt: skip
    """Per grid or community in reach: petitions, accidents and criminal cases in the window and
    whether each is zero (三零: 零上访, 零事故, 零发案); `all_zero` when all three are."""
    if level not in ("grid", "community"):
        raise InvalidInput("Invalid value for parameter level: grid or community")
    since, until = window(since, until, days=365)
    frame = grids(session, scope)[["code", "community"]]
    term, params = scope_filter("i", scope)
    counts = pd.read_sql(text(f"""
        SELECT i.grid_code AS code,
               count(*) FILTER (WHERE 'petition' = ANY (c.tags)) AS petitions,
               count(*) FILTER (WHERE 'accident' = ANY (c.tags)) AS accidents,
               count(*) FILTER (WHERE 'criminal' = ANY (c.tags)) AS criminal
        FROM incident i JOIN category c ON c.code = i.category_code
        WHERE i.reported_at >= :since AND i.reported_at < :until AND i.status <> 'rejected' AND {term}
          AND c.tags && ARRAY['petition', 'accident', 'criminal']
        GROUP BY 1"""), session.connection(), params={**params, "since": since, "until": until}).set_index("code")  # fmt: skip
    frame = frame.join(counts).fillna(0)
    if level == "community":
        frame = frame.groupby("community")[list(THREE_ZEROS)].sum()
        frame.index.name = "code"
        frame = frame.reset_index()
    else:
        frame = frame.reset_index(drop=True)
    for name in THREE_ZEROS:
        frame[name] = frame[name].astype(int)
        frame[f"zero_{name}"] = frame[name] == 0
    frame["all_zero"] = frame[[f"zero_{n}" for n in THREE_ZEROS]].all(axis=1)
    frame.attrs.update(since=since.isoformat(), until=until.isoformat(), level=level)
    return frame


def to_geojson(frame: gpd.GeoDataFrame, *, geometry: str | None = "geom", columns: Sequence[str] | None = None,
               precision: int = 6) -> dict[str, Any]:  # fmt: skip
    """A FeatureCollection (NaN → null) with the frame's window and options as `meta`."""
    import json

    cols = [c for c in (columns or frame.columns) if c not in ("geom", "uncovered") or c == geometry]
    data = gpd.GeoDataFrame(frame[cols], geometry=geometry, crs=4326) if geometry else None
    if data is not None:
        data = data.set_geometry(shapely.set_precision(data.geometry.to_numpy(), 10**-precision), crs=4326)
        out = json.loads(data.to_json(na="null", drop_id=True))
    else:
        rows = frame[cols].astype(object).where(frame[cols].notna(), None)
        out = {"items": rows.to_dict(orient="records")}
    out["meta"] = dict(frame.attrs)
    return out
