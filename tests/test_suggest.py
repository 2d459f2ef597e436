"""gridmap.planning on a synthetic community (no database): a street lattice, buildings in its
blocks, households from a seeded generator, in UTM zone 50N (EPSG:32650) around Guangzhou."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from gridmap.errors import InvalidInput
from gridmap.planning import metrics
from gridmap.planning.suggest import (
    Suggestion,
    _graph,
    grid_count,
    grids_metrics,
    kmeans_baseline,
    suggest,
)

CRS = "EPSG:32650"
X0, Y0 = 500_000.0, 3_400_000.0


def community(buildings: int = 300, households: int = 5000, *, seed: int = 0, size: tuple[float, float] = (1500, 1000),
              street: float = 180.0) -> tuple[gpd.GeoDataFrame, shapely.Polygon, gpd.GeoSeries]:  # fmt: skip
    """Buildings (12 × 24 m, a tenth non-residential), the community polygon and its streets."""
    rng = np.random.default_rng(seed)
    w, h = size
    area = shapely.Polygon([(0, 0), (w, 0), (w + 30, 0.6 * h), (w - 80, h), (0.4 * w, h + 40), (0, 0.95 * h)])
    area = shapely.affinity.translate(area, X0, Y0)
    lines = []
    for x in np.arange(street, w, street):  # perturbed lattice: offsets and slight slopes
        dx = rng.normal(0, 12, 2)
        lines.append(shapely.LineString([(X0 + x + dx[0], Y0 - 100), (X0 + x + dx[1], Y0 + h + 100)]))
    for y in np.arange(street * 0.8, h, street * 0.8):
        dy = rng.normal(0, 12, 2)
        lines.append(shapely.LineString([(X0 - 100, Y0 + y + dy[0]), (X0 + w + 100, Y0 + y + dy[1])]))
    roads = gpd.GeoSeries(lines, crs=CRS)
    blocks = shapely.difference(area, shapely.union_all(roads.buffer(10).values)).buffer(-4)
    spacing = math.sqrt(blocks.area / (buildings * 1.6))
    foot = np.array([])
    while len(foot) < buildings:  # denser until enough footprints fit in the blocks
        (x0, y0, x1, y1), step = blocks.bounds, (max(spacing, 14), max(spacing, 26))
        xs, ys = np.meshgrid(np.arange(x0, x1, step[0]), np.arange(y0, y1, step[1]))
        centres = np.c_[xs.ravel(), ys.ravel()] + rng.normal(0, 0.5, (xs.size, 2))
        foot = shapely.box(*(centres - [6, 12]).T, *(centres + [6, 12]).T)
        foot = foot[shapely.within(foot, blocks)]
        spacing *= 0.8
    foot = foot[np.sort(rng.choice(len(foot), buildings, replace=False))]
    weights = rng.lognormal(0, 0.5, buildings) * (rng.random(buildings) > 0.1)
    counts = np.round(weights / weights.sum() * households).astype(int)
    cases = rng.poisson(0.02 * counts)  # 90-day cases, roughly in proportion
    return gpd.GeoDataFrame({"households": counts, "cases": cases}, geometry=foot, crs=CRS), area, roads


def check_plan(s: Suggestion, buildings: gpd.GeoDataFrame, area: shapely.Polygon, roads: gpd.GeoSeries | None = None) -> None:
    """Every grid a connected subgraph and one valid polygon; the polygons tile the community;
    each building lies in its grid's polygon; the counts add up."""
    assert s.labels.shape == (len(buildings),) and set(s.labels) == set(range(s.k))
    assert list(s.polygons.index) == list(range(s.k)) and s.polygons.crs == buildings.crs
    g = _graph(buildings, area, "households", None, roads)
    node = np.zeros(g.n, dtype=np.int64)
    node[g.building] = s.labels
    for p in range(s.k):
        inside = np.flatnonzero(node == p)
        local = np.full(g.n, -1)
        local[inside] = np.arange(len(inside))
        m = (local[g.u] >= 0) & (local[g.v] >= 0)
        graph = coo_array((np.ones(m.sum()), (local[g.u[m]], local[g.v[m]])), shape=(len(inside),) * 2)
        assert connected_components(graph, directed=False)[0] == 1, f"grid {p} is not connected"
    assert all(p.geom_type == "Polygon" and p.is_valid for p in s.polygons)
    union = shapely.union_all(s.polygons.values)
    assert shapely.symmetric_difference(union, area).area < 1e-6 * area.area
    assert s.polygons.area.sum() == pytest.approx(area.area, rel=1e-6)  # with the union: no overlaps
    points = shapely.point_on_surface(buildings.geometry.values)
    assert shapely.covers(s.polygons.values[s.labels], points).all()
    assert s.households == pytest.approx(np.bincount(s.labels, buildings.households, s.k))
    counted, _ = grids_metrics(s.polygons, buildings)
    assert counted.to_numpy() == pytest.approx(s.households)


@pytest.fixture(scope="module")
def town() -> tuple[gpd.GeoDataFrame, shapely.Polygon, gpd.GeoSeries]:
    return community()


@pytest.fixture(scope="module")
def plan(town) -> Suggestion:
    buildings, area, roads = town
    return suggest(buildings, area, roads=roads, load="cases", seed=0)


def test_suggestion_is_a_valid_plan(town, plan: Suggestion) -> None:
    buildings, area, roads = town
    assert 4900 <= buildings.households.sum() <= 5100 and (buildings.households == 0).any()
    assert plan.k == grid_count(buildings.households.sum())
    assert ((plan.households >= 300) & (plan.households <= 500)).all(), plan.households
    assert plan.metrics["in_range"] == 1.0
    assert plan.load is not None and plan.load.sum() == buildings.cases.sum()
    check_plan(plan, buildings, area, roads)


def test_suggestion_is_deterministic(town, plan: Suggestion) -> None:
    buildings, area, roads = town
    again = suggest(buildings, area, roads=roads, load="cases", seed=0)
    assert (again.labels == plan.labels).all()
    assert all(a.equals_exact(b, 0) for a, b in zip(again.polygons, plan.polygons, strict=True))


def test_suggestion_balances_better_than_kmeans(town, plan: Suggestion) -> None:
    buildings, area, roads = town
    baseline = kmeans_baseline(buildings, area, plan.k, seed=0)
    assert baseline.k == plan.k
    assert plan.metrics["max_deviation"] <= baseline.metrics["max_deviation"]
    strips = shapely.box(X0 + np.arange(4) * 400, Y0, X0 + np.arange(1, 5) * 400, Y0 + 1100)  # the grids in force, say
    households, now = grids_metrics(gpd.GeoSeries(shapely.intersection(strips, area), crs=CRS), buildings)
    assert households.sum() == buildings.households.sum() and now["unassigned"] == 0
    for name, m in (("current", now), ("suggested", plan.metrics), ("kmeans", baseline.metrics)):
        print(f"{name:>9}: k={m['n']} max deviation {m['max_deviation']:.1%} in range {m['in_range']:.0%} "
              f"Polsby-Popper {m['polsby_popper_mean']:.3f} (min {m['polsby_popper_min']:.3f}) Reock {m['reock_mean']:.3f}")  # fmt: skip
    assert 0 < plan.metrics["polsby_popper_mean"] <= 1


def test_grid_count() -> None:
    assert grid_count(0) == grid_count(200) == grid_count(299) == 1
    assert grid_count(550) == 1  # two grids of 275 would both be too small
    assert grid_count(900) == 2 and grid_count(1000) == 3  # not two grids of exactly 500
    assert grid_count(5000) == 11 and grid_count(5000, headroom=0) == 10
    assert grid_count(4000, 300, 500) == 9 and grid_count(12_000, 300, 500) == 26


def test_small_communities() -> None:
    buildings, area, roads = community(80, 1000, seed=3, size=(500, 400))
    s = suggest(buildings, area, roads=roads)
    assert s.k in (2, 3) and ((s.households >= 300) & (s.households <= 500)).all(), s.households
    check_plan(s, buildings, area, roads)
    buildings, area, roads = community(20, 200, seed=4, size=(250, 200))
    tiny = suggest(buildings, area, roads=roads)
    assert tiny.k == 1 and (tiny.labels == 0).all() and tiny.households.tolist() == [buildings.households.sum()]
    assert tiny.polygons[0].equals(area)


def test_concave_community_without_roads() -> None:
    buildings, area, _ = community(400, 4000, seed=5)
    area = area.difference(shapely.box(X0 + 500, Y0 + 250, X0 + 1000, Y0 + 2000))
    buildings = buildings[buildings.within(area)].reset_index(drop=True)
    check_plan(suggest(buildings, area, seed=1), buildings, area)


def test_cells_cut_off_by_a_notch_are_regrouped() -> None:
    area = shapely.box(0, 0, 300, 300).difference(shapely.box(100, 60, 200, 300))
    points = [(28, 19), (89, 157), (152, 43), (59, 270), (224, 150), (255, 279), (234, 31), (271, 95), (59, 72), (135, 15)]
    voronoi = shapely.intersection(shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(points), extend_to=area)), area)
    assert any(c.geom_type != "Polygon" for c in voronoi)  # the notch cuts cells in two
    area = shapely.affinity.translate(area, X0, Y0)
    buildings = gpd.GeoDataFrame({"households": [120] * 10}, geometry=[shapely.Point(X0 + x, Y0 + y) for x, y in points], crs=CRS)
    g = _graph(buildings, area, "households", None, None)
    assert all(c.geom_type == "Polygon" for c in g.cells) and shapely.coverage_is_valid(g.cells)
    s = suggest(buildings, area)
    check_plan(s, buildings, area)
    assert s.k == 3 and sorted(s.households) == [360, 360, 480]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 299), st.integers(0, 299), st.integers(0, 60)), min_size=1, max_size=40))
def test_any_buildings_give_a_tiling(rows: list[tuple[int, int, int]]) -> None:
    """Duplicates, collinear points, empty households, buildings in the notch: still a tiling."""
    area = shapely.affinity.translate(shapely.box(0, 0, 300, 300).difference(shapely.box(100, 60, 200, 300)), X0, Y0)
    inside = [(x, y, h) for x, y, h in rows if area.contains(shapely.Point(X0 + x, Y0 + y))]
    if not inside:
        return
    x, y, h = np.array(inside, dtype=float).T
    buildings = gpd.GeoDataFrame({"households": h.astype(int)}, geometry=shapely.points(X0 + x, Y0 + y), crs=CRS)
    s = suggest(buildings, area, households_min=100, households_max=200)
    check_plan(s, buildings, area)
    assert s.k == min(grid_count(h.sum(), 100, 200), len(set(zip(x, y, strict=True)))) or s.k == grid_count(h.sum(), 100, 200) + 1


def test_compactness_of_a_square_and_balance() -> None:
    square = shapely.box(0, 0, 100, 100)
    assert metrics.polsby_popper([square])[0] == pytest.approx(math.pi / 4, abs=1e-3)
    assert metrics.reock(square)[0] == pytest.approx(2 / math.pi, abs=1e-3)
    disc = shapely.Point(0, 0).buffer(50, quad_segs=64)
    assert metrics.polsby_popper(gpd.GeoSeries([disc, square]))[0] == pytest.approx(1, abs=1e-3)
    assert np.isnan(metrics.polsby_popper([shapely.Polygon()])[0])
    b = metrics.balance([300, 500], lo=300, hi=450)
    assert b["max_deviation"] == pytest.approx(0.25) and b["mean"] == 400 and b["in_range"] == 0.5
    assert b["n"] == 2 and b["min"] == 300 and b["max"] == 500 and b["std"] == pytest.approx(100)
    assert metrics.balance([1, 2])["in_range"] is None
    s = metrics.summary([square, square], [300, 500], 300, 500)
    assert s["in_range"] == 1.0 and s["polsby_popper_min"] == pytest.approx(math.pi / 4, abs=1e-3)


def test_suggest_is_quick() -> None:
    buildings, area, roads = community(1500, 5000, seed=6)
    s = suggest(buildings, area, roads=roads, seed=0)
    print(f"suggest: {len(buildings)} buildings, {buildings.households.sum()} households, k={s.k}: {s.seconds:.2f} s")
    assert s.metrics["in_range"] == 1.0
    assert s.seconds < 30


def test_bad_input() -> None:
    buildings, area, _ = community(30, 300, seed=7, size=(250, 200))
    with pytest.raises(InvalidInput, match="Invalid value for parameter weight: buildings have no column 'people'"):
        suggest(buildings, area, weight="people")
    with pytest.raises(InvalidInput, match="projected CRS"):
        suggest(buildings.to_crs(4326), area)
