"""Suggest grid boundaries for a community (重新划分网格): contiguous, compact unit grids of
300–500 households that follow the streets where they can and tile the community exactly.

The method is the one redistricting settled on (ReCom, as in GerryChain), on buildings instead
of census blocks:

* Cells: the Voronoi cells of the buildings' representative points, cut to the community. A
  piece of a cell that a concave boundary cuts off goes to the cell sharing its longest
  boundary, so every cell is one piece round its building and cells joined by an edge below
  make one piece together.
* Graph: Delaunay edges between buildings whose cells share a boundary; edges longer than
  `LONG_EDGE` × the median are dropped, and the fewest, shortest dropped edges put back where
  the graph would fall apart. An edge across a street is kept but made dear: spanning trees
  cross streets as rarely as they can (GerryChain's region surcharge), so their cuts fall on
  streets, and cutting it costs `ROAD_CUT` of a cut through a block. Dropping such edges would
  leave the blocks joined by a single tree of them, and most plans out of reach.
* Partition: recursive bisection on random spanning trees (minimum spanning trees of random
  weights): of the tree's edges whose two sides split the households k1 : k2 within `TOLERANCE`
  of a grid's ideal, cut the one that costs least. Both sides of a tree cut are connected, so
  every grid is.
* Recombination: `STEPS_PER_GRID` × k times, merge two neighbouring grids, split them again on
  a fresh tree and keep the change when the objective falls:
  Σ ((households - mean) / mean)² + `LOAD_WEIGHT` × the same for `load`
  + `OUT_OF_RANGE` × households outside [min, max] / mean
  + `COMPACTNESS` × cost of the cut edges / √(n k) + `PP_WEIGHT` × Σ (1 - Polsby–Popper).
  The cut edges keep the boundaries on the streets; Polsby–Popper of the grids' polygons keeps
  them round, which cut edges alone do poorly (they count buildings along a boundary, not metres).
* Polygons: each grid's cells dissolved (a coverage union: the grids tile the community without
  gap or overlap). Should a grid still fall in pieces (a building outside the community, an
  edge put back between cells that do not touch), it keeps the piece with most households and
  gives the others, with their buildings, to the neighbour sharing the longest boundary.

The number of grids k (`grid_count`): the fewest with total / k ≤ max × (1 - `HEADROOM`), else
with total / k ≤ max: fewest grid workers, but not so few that every grid must sit at the cap
(5,000 households would make 10 grids of exactly 500, whose boundaries then wander to hit
the count, with no room to grow). Where total / k < min the range cannot be met and
k = ⌊total / min⌋, at least 1, so grids err large. If the plan leaves a grid out of range and
total / (k + 1) ≥ min, k + 1 is tried too and the plan with fewer households out of range kept.

Graphs are edge arrays and scipy.sparse.csgraph (spanning trees, depth-first order): scipy is a
dependency already, networkx is not, and a plan draws some thousands of spanning trees. All in
metres (buildings, community and roads in one projected CRS); no database. Same `seed`, same plan.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from numpy.typing import NDArray
from scipy.cluster.vq import kmeans2, vq
from scipy.sparse import coo_array
from scipy.sparse.csgraph import depth_first_order, minimum_spanning_tree
from scipy.spatial import Delaunay, QhullError

from gridmap.errors import InvalidInput
from gridmap.planning import metrics

HOUSEHOLDS_MIN, HOUSEHOLDS_MAX = 300, 500
HEADROOM = 0.05  # of the maximum, kept free when choosing k
LONG_EDGE = 3.0  # × the median edge: longer edges (across a field, a river) do not make neighbours
ROAD_SURCHARGE = 1.0  # added to an edge's random weight in [1, 2) when it crosses a street
ROAD_CUT = 0.25  # cost of cutting a street-side edge, against 1 through a block
TOLERANCE = 0.02  # of a grid's ideal households, for a bisection's cut
TREES, PATIENCE = 200, 20  # trees a bisection tries for a cut within tolerance; after PATIENCE, one in range will do
CANDIDATES = 16  # cuts within tolerance compared by their cost
IN_RANGE = 1e12  # added to the deviation of a cut out of range
STEPS_PER_GRID, RECOM_TOLERANCE, RECOM_TREES = 80, 0.05, 2
# the objective's weights, tuned on the synthetic communities of tests/test_suggest.py: max deviation
# 4–9 %, Polsby–Popper ≈ 0.6, 90+ % of the cut edges across streets
COMPACTNESS, PP_WEIGHT, LOAD_WEIGHT, OUT_OF_RANGE = 0.1, 0.1, 0.1, 10.0

Int = NDArray[np.int64]
Float = NDArray[np.float64]


@dataclass
class Suggestion:
    """A plan: the grid of each building, the grids' polygons and what they hold."""

    labels: Int  # per building (row of `buildings`), 0 .. k-1
    polygons: gpd.GeoSeries  # index 0 .. k-1
    households: Float  # per grid
    load: Float | None  # per grid, when a load column was given
    metrics: dict[str, Any]  # metrics.summary
    k: int
    method: str
    seconds: float


@dataclass
class _Graph:
    """Buildings merged by representative point (1 cm): nodes, their cells and their edges."""

    xy: Float  # (n, 2)
    building: Int  # node of each building
    pop: Float
    load: Float | None
    cells: NDArray[np.object_]  # Voronoi cell of each node cut to the community: a coverage of it
    u: Int
    v: Int
    cost: Float  # of cutting the edge: 1, or ROAD_CUT across a street
    road: NDArray[np.bool_]

    @property
    def n(self) -> int:
        return len(self.xy)


def grid_count(total: float, households_min: float = HOUSEHOLDS_MIN, households_max: float = HOUSEHOLDS_MAX, *,
               headroom: float = HEADROOM) -> int:  # fmt: skip
    """The fewest grids with total / k ≤ max × (1 - headroom), else with total / k ≤ max; fewer
    (⌊total / min⌋, at least 1) when those would fall below min."""
    for cap in (households_max * (1 - headroom), households_max):
        k = max(1, math.ceil(total / cap))
        if total / k >= households_min:
            return k
    return max(1, math.floor(total / households_min))


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon") and p.area > 0]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _column(buildings: gpd.GeoDataFrame, name: str, parameter: str) -> Float:
    if name not in buildings.columns:
        raise InvalidInput(f"Invalid value for parameter {parameter}: buildings have no column {name!r}")
    values = pd.to_numeric(buildings[name], errors="coerce").fillna(0).to_numpy(float)
    if (values < 0).any():
        raise InvalidInput(f"Invalid value for parameter {parameter}: column {name!r} has negative values")
    return values


def _edges(xy: Float) -> Int:
    """Delaunay edges (i < j); a path along the points when they are fewer than 3 or collinear."""
    try:
        s = Delaunay(xy).simplices
    except (QhullError, ValueError):
        order = np.lexsort(xy.T)
        return np.sort(np.c_[order[:-1], order[1:]], axis=1)
    return np.unique(np.sort(np.r_[s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]], axis=1), axis=0)


def _cells(xy: Float, area: shapely.Geometry) -> tuple[NDArray[np.object_], Int]:
    """Voronoi cells of the points cut to the community, each in one piece round its point where
    it can: a piece a concave boundary cuts off goes to the cell sharing its longest boundary, so
    that neighbouring cells make a grid in one piece. Also the cells that took such pieces."""
    if len(xy) < 2:
        return np.array([area] * len(xy), dtype=object), np.empty(0, dtype=np.int64)
    voronoi = shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=area, ordered=True)
    cells = shapely.intersection(shapely.get_parts(voronoi), area)
    tree, took = shapely.STRtree(cells), []
    for i in np.flatnonzero(shapely.get_type_id(cells) != shapely.GeometryType.POLYGON):
        pieces = shapely.get_parts(_polygonal(cells[i]))
        own = shapely.covers(pieces, shapely.Point(xy[i]))
        stay = list(pieces[own])
        for piece in pieces[~own] if own.any() else []:  # a point outside the community keeps all
            near = np.union1d(tree.query(piece), np.asarray(took, dtype=np.int64))  # the tree knows the cells as they were
            shared = shapely.length(shapely.intersection(piece, cells[near])) * (near != i)
            if shared.max(initial=0) > 0:
                q = near[np.argmax(shared)]
                cells[q] = shapely.union(cells[q], piece)
                took.append(q)
            else:
                stay.append(piece)
        cells[i] = shapely.union_all(stay or pieces)
    return cells, np.unique(np.asarray(took, dtype=np.int64))


def _graph(buildings: gpd.GeoDataFrame, area: shapely.Geometry, weight: str, load: str | None, roads: Any) -> _Graph:
    crs = buildings.crs
    if crs is not None and crs.is_geographic:
        raise InvalidInput("Invalid value for parameter buildings: give them in a projected CRS in metres, e.g. a UTM zone")
    if roads is not None and getattr(roads, "crs", None) not in (None, crs):
        raise InvalidInput("Invalid value for parameter roads: not in the CRS of the buildings")
    points = shapely.point_on_surface(np.asarray(buildings.geometry.values, dtype=object))
    xy, building = np.unique(np.round(shapely.get_coordinates(points), 2), axis=0, return_inverse=True)
    n = len(xy)
    pop = np.bincount(building, _column(buildings, weight, "weight"), n)
    node_load = None if load is None else np.bincount(building, _column(buildings, load, "load"), n)
    cells, took = _cells(xy, area)
    e = _edges(xy) if n > 1 else np.empty((0, 2), dtype=np.int64)
    if len(took):  # a cell that took a piece may have new neighbours
        near = shapely.STRtree(cells).query(cells[took])
        e = np.unique(np.r_[e, np.sort(np.c_[took[near[0]], near[1]], axis=1)], axis=0)
        e = e[e[:, 0] != e[:, 1]]
    u, v = e[:, 0], e[:, 1]
    length = np.hypot(*(xy[u] - xy[v]).T)
    limit = LONG_EDGE * np.median(length) if len(u) else 0.0
    adjacent = shapely.relate_pattern(cells[u], cells[v], "F***1****")
    keep = adjacent & (length <= limit)
    if not keep.all():
        # Kruskal takes every kept edge (weight 1) before any dropped one, long ones between
        # adjacent cells (2–3) before the rest (4–5): the dropped edges of the tree are the fewest,
        # shortest, that join the pieces the drop made
        w = np.where(keep, 1.0, np.where(adjacent, 2.0, 4.0) + length / length.max())
        tree = minimum_spanning_tree(coo_array((w, (u, v)), shape=(n, n))).tocoo()
        bridge = {(min(a, b), max(a, b)) for a, b in zip(tree.row, tree.col, strict=True)}
        keep |= np.array([(a, b) in bridge for a, b in zip(u, v, strict=True)], dtype=bool)
    u, v = u[keep], v[keep]
    road = np.zeros(len(u), dtype=bool)
    if roads is not None and len(u):
        lines = shapely.linestrings(np.stack([xy[u], xy[v]], axis=1))
        streets = shapely.STRtree(np.asarray(getattr(roads, "geometry", roads), dtype=object))
        road[streets.query(lines, predicate="intersects")[0]] = True
    return _Graph(xy, building.ravel(), pop, node_load, cells, u, v, np.where(road, ROAD_CUT, 1.0), road)


def _side(pos: Int, start: int, size: int, subtree: bool) -> NDArray[np.bool_]:
    inside = (pos >= start) & (pos < start + size)  # a subtree is a run of the preorder
    return inside if subtree else ~inside


def _cut(g: _Graph, nodes: Int, k1: int, kk: int, rng: np.random.Generator, lo: float, hi: float, *,
         tol: float, trees: int) -> NDArray[np.bool_] | None:  # fmt: skip
    """The side of `nodes` that takes k1 of their kk grids, cut from a random spanning tree.

    Of a tree's cuts with both sides in range and within `tol` of the ideal, the cheapest (fewest
    edges, street-side ones cheap) is taken; with none in `PATIENCE` trees, the best-balanced cut
    in range; with none in `trees` trees (at most n + `PATIENCE`: a small graph has few cuts to
    offer), the best-balanced; None if no cut leaves each side a building per grid.
    """
    n = len(nodes)
    local = np.full(g.n, -1)
    local[nodes] = np.arange(n)
    inside = (local[g.u] >= 0) & (local[g.v] >= 0)
    u, v, cost, road = local[g.u[inside]], local[g.v[inside]], g.cost[inside], g.road[inside]
    pop = g.pop[nodes]
    total = float(pop.sum())
    slack = tol * max(total / kk, 1.0)
    ks = np.array([[k1], [kk - k1]])  # grids on the subtree's side: either share
    best: tuple[float, NDArray[np.bool_] | None] = (math.inf, None)
    for t in range(min(trees, n + PATIENCE)):
        if t >= PATIENCE and best[0] < IN_RANGE:
            break
        w = 1 + rng.random(len(u)) + ROAD_SURCHARGE * road
        tree = minimum_spanning_tree(coo_array((w, (u, v)), shape=(n, n)))
        order, pred = depth_first_order(tree, 0, directed=False)
        below, size, parent = pop.tolist(), [1] * n, pred.tolist()
        for x in order[:0:-1].tolist():
            below[parent[x]] += below[x]
            size[parent[x]] += size[x]
        x = order[1:]  # cutting x from its parent leaves x's subtree on one side
        s, c = np.asarray(below)[x], np.asarray(size)[x]
        dev = np.abs(s - total * ks / kk)
        in_range = (s >= ks * lo) & (s <= ks * hi) & (total - s >= (kk - ks) * lo) & (total - s <= (kk - ks) * hi)
        fits = (c >= ks) & (n - c >= kk - ks)
        pos = np.empty(n, dtype=np.int64)
        pos[order] = np.arange(n)
        o, i = np.nonzero(in_range & fits & (dev <= slack))
        if len(i):
            first = np.argsort(dev[o, i], kind="stable")[:CANDIDATES]
            o, i = o[first], i[first]
            start, end = pos[x[i]][:, None], (pos[x[i]] + c[i])[:, None]
            crossing = ((pos[u] >= start) & (pos[u] < end)) != ((pos[v] >= start) & (pos[v] < end))
            pick = np.argmin(crossing @ cost + dev[o, i] / slack * 1e-3)
            return _side(pos, pos[x[i[pick]]], c[i[pick]], o[pick] == 0)
        score = np.where(fits, dev + np.where(in_range, 0.0, IN_RANGE), np.inf)
        o, i = np.unravel_index(np.argmin(score), score.shape)
        if score[o, i] < best[0]:
            best = (float(score[o, i]), _side(pos, pos[x[i]], c[i], o == 0))
    return best[1]


def _objective(g: _Graph, labels: Int, k: int, lo: float, hi: float, pp: Float) -> float:
    """Household (and load) deviation, households out of range, cut edges and 1 - Polsby–Popper; lower is better."""
    h = np.bincount(labels, g.pop, k)
    ideal = max(h.mean(), 1.0)
    j = np.sum(((h - ideal) / ideal) ** 2) + OUT_OF_RANGE * np.sum(np.maximum(0, np.maximum(lo - h, h - hi))) / ideal
    if g.load is not None and g.load.sum() > 0:
        load = np.bincount(labels, g.load, k)
        j += LOAD_WEIGHT * np.sum((load / load.mean() - 1) ** 2)
    j += COMPACTNESS * g.cost[labels[g.u] != labels[g.v]].sum() / math.sqrt(g.n * k)
    return float(j + PP_WEIGHT * np.sum(1 - pp))


def _shape(g: _Graph, nodes: Int) -> shapely.Geometry:
    return shapely.coverage_union_all(g.cells[nodes])


def _plan(g: _Graph, k: int, rng: np.random.Generator, lo: float, hi: float) -> Int:
    """Recursive bisection on random spanning trees, then recombination steps."""
    labels = np.zeros(g.n, dtype=np.int64)
    stack = [(np.arange(g.n), k, 0)]
    while stack:
        nodes, kk, first = stack.pop()
        if kk == 1:
            labels[nodes] = first
            continue
        k1 = kk // 2
        side = _cut(g, nodes, k1, kk, rng, lo, hi, tol=TOLERANCE, trees=TREES)
        if side is None:  # a tree with no such cut (a star): a leaf can always go alone
            k1, side = 1, _cut(g, nodes, 1, kk, rng, lo, hi, tol=TOLERANCE, trees=1)
        assert side is not None
        stack += [(nodes[side], k1, first), (nodes[~side], kk - k1, first + k1)]
    pp = metrics.polsby_popper([_shape(g, np.flatnonzero(labels == p)) for p in range(k)])
    score = _objective(g, labels, k, lo, hi, pp)
    for _ in range(STEPS_PER_GRID * k if k > 1 else 0):
        between = np.flatnonzero(labels[g.u] != labels[g.v])
        e = between[rng.integers(len(between))]
        a, b = labels[g.u[e]], labels[g.v[e]]
        nodes = np.flatnonzero((labels == a) | (labels == b))
        side = _cut(g, nodes, 1, 2, rng, lo, hi, tol=RECOM_TOLERANCE, trees=RECOM_TREES)
        assert side is not None
        new = labels.copy()
        new[nodes[side]], new[nodes[~side]] = a, b
        new_pp = pp.copy()
        new_pp[[a, b]] = 1.0  # as round as can be: if that does not help, no need to draw them
        if _objective(g, new, k, lo, hi, new_pp) >= score:
            continue
        new_pp[[a, b]] = metrics.polsby_popper([_shape(g, nodes[side]), _shape(g, nodes[~side])])
        if (new_score := _objective(g, new, k, lo, hi, new_pp)) < score:
            labels, score, pp = new, new_score, new_pp
    return labels


def _polygons(g: _Graph, labels: Int, k: int) -> tuple[list[shapely.Geometry], Int]:
    """Each grid's cells dissolved; stray pieces (and their buildings) go to the neighbour
    sharing the longest boundary."""
    polys = [_polygonal(_shape(g, np.flatnonzero(labels == p))) for p in range(k)]
    labels = labels.copy()
    for p in range(k):
        pieces = shapely.get_parts(polys[p])
        if len(pieces) < 2:
            continue
        mine = np.flatnonzero(labels == p)
        held = np.array([g.pop[mine[shapely.contains_xy(piece, *g.xy[mine].T)]].sum() for piece in pieces])
        stay = [pieces[np.lexsort((-shapely.area(pieces), -held))[0]]]
        for piece in (piece for piece in pieces if piece is not stay[0]):
            shared = shapely.length(shapely.intersection(piece, np.asarray(polys, dtype=object)))
            shared[p] = 0
            q = int(np.argmax(shared))
            if shared[q] <= 0:  # an island of a MultiPolygon community: it stays
                stay.append(piece)
                continue
            polys[q] = _polygonal(shapely.union(polys[q], piece))
            labels[mine[shapely.covers(piece, shapely.points(g.xy[mine]))]] = q
        polys[p] = shapely.union_all(stay)
    return polys, labels


def _area(area: shapely.Geometry) -> shapely.Geometry:
    area = _polygonal(shapely.make_valid(area))
    if area.is_empty:
        raise InvalidInput("Invalid value for parameter area: give a polygon with an area")
    return area


def _suggestion(g: _Graph, buildings: gpd.GeoDataFrame, area: shapely.Geometry, labels: Int, k: int, lo: float, hi: float,
                method: str, start: float) -> Suggestion:  # fmt: skip
    polys, labels = _polygons(g, labels, k) if k > 1 else ([area], labels)
    households = np.bincount(labels, g.pop, k)
    load = None if g.load is None else np.bincount(labels, g.load, k)
    polygons = gpd.GeoSeries(polys, crs=buildings.crs)
    return Suggestion(labels=labels[g.building], polygons=polygons, households=households, load=load,
                      metrics=metrics.summary(polygons, households, lo, hi), k=k, method=method,
                      seconds=time.perf_counter() - start)  # fmt: skip


def suggest(buildings: gpd.GeoDataFrame, area: shapely.Geometry, *, households_min: float = HOUSEHOLDS_MIN,
            households_max: float = HOUSEHOLDS_MAX, weight: str = "households", load: str | None = None,
            roads: gpd.GeoSeries | None = None, seed: int = 0) -> Suggestion:  # fmt: skip
    """Grids of `households_min`–`households_max` households (column `weight`) over `area`, balancing
    the column `load` as well when given and following `roads` where they can."""
    start = time.perf_counter()
    area = _area(area)
    g = _graph(buildings, area, weight, load, roads)
    lo, hi = households_min, households_max
    k = min(grid_count(g.pop.sum(), lo, hi), max(g.n, 1))
    rng = np.random.default_rng(seed)
    labels = _plan(g, k, rng, lo, hi) if k > 1 else np.zeros(g.n, dtype=np.int64)

    def outside(labels: Int, k: int) -> float:
        h = np.bincount(labels, g.pop, k)
        return float(np.maximum(0, np.maximum(lo - h, h - hi)).sum())

    if outside(labels, k) > 0 and g.pop.sum() / (k + 1) >= lo and k < g.n:
        more = _plan(g, k + 1, rng, lo, hi)
        if outside(more, k + 1) < outside(labels, k):
            labels, k = more, k + 1
    method = f"recom: spanning-tree bisection + {STEPS_PER_GRID * k if k > 1 else 0} recombination steps"
    return _suggestion(g, buildings, area, labels, k, lo, hi, method, start)


def kmeans_baseline(buildings: gpd.GeoDataFrame, area: shapely.Geometry, k: int, seed: int = 0, *,
                    weight: str = "households", households_min: float = HOUSEHOLDS_MIN,
                    households_max: float = HOUSEHOLDS_MAX) -> Suggestion:  # fmt: skip
    """k-means of the buildings' points weighted by households (a point per household), the same
    polygons: the simple plan a suggestion has to beat."""
    start = time.perf_counter()
    area = _area(area)
    g = _graph(buildings, area, weight, None, None)
    k = max(1, min(k, g.n))
    each = np.repeat(g.xy, np.round(g.pop).astype(np.int64), axis=0)
    if k > 1 and len(each) >= k:
        centres, _ = kmeans2(each, k, minit="++", seed=np.random.default_rng(seed))
        labels = np.unique(vq(g.xy, centres)[0], return_inverse=True)[1].ravel()  # an emptied cluster is no grid
        k = int(labels.max()) + 1
    else:
        labels, k = np.zeros(g.n, dtype=np.int64), 1
    return _suggestion(g, buildings, area, labels, k, households_min, households_max, "kmeans: household-weighted", start)


def grids_metrics(polygons: gpd.GeoSeries, buildings: gpd.GeoDataFrame, *, weight: str = "households",
                  households_min: float = HOUSEHOLDS_MIN, households_max: float = HOUSEHOLDS_MAX
                  ) -> tuple[pd.Series, dict[str, Any]]:  # fmt: skip
    """Households per grid (buildings by their representative point) and metrics.summary of the
    grids, `unassigned` adding the households that fall in none."""
    values = _column(buildings, weight, "weight")
    points = shapely.point_on_surface(np.asarray(buildings.geometry.values, dtype=object))
    point, grid = shapely.STRtree(np.asarray(polygons.values, dtype=object)).query(points, predicate="intersects")
    first = np.unique(point, return_index=True)[1]  # a point on a shared boundary counts once
    households = np.bincount(grid[first], values[point[first]], len(polygons))
    summary = metrics.summary(polygons, households, households_min, households_max)
    summary["unassigned"] = float(values.sum() - households.sum())
    return pd.Series(households, index=polygons.index, name=weight), summary
