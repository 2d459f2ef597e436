"""The synthetic city's geometry: streets, blocks, buildings, and the grid hierarchy.

How it is built (deterministic for a seed):

1. A lattice of street nodes in a projected CGCS2000 zone: narrow blocks in the urban cores,
   wide ones in the countryside, every node jittered and the whole net smoothly warped, so the
   local streets form a perturbed grid with straighter, wider arterials every eighth line.
2. The territory is a prefix of a Hilbert curve over the lattice's cells (blocks). Consecutive
   cells on a Hilbert curve are edge-adjacent, so any run of the curve is a contiguous area.
3. Each block gets a land use from its urbanity (distance to urban centres plus noise) and is
   filled with buildings, set back from the roads, with households by building type.
4. The curve is cut into grids by dynamic programming: runs of whole blocks whose households sum
   to 300–500 (general grids), while schools, hospitals and industrial parks form dedicated
   grids. Runs of grids make communities, runs of communities streets, runs of streets districts,
   so every level is contiguous and the grids of a community cover it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from gridmap.demo import names

HH_MIN, HH_MAX = 300, 500  # households per general grid (urban standard: 300–500)
CELL_HH_CAP = 190  # households per block: keeps every stretch of blocks splittable into grids


@dataclass(frozen=True)
class Scale:
    name: str
    order: int  # lattice is 2**order cells on a side
    cells: int  # territory: the first `cells` cells of the Hilbert curve
    districts: int
    streets: int
    core: float  # base block size in the core (m)
    rural: float  # block size far from the core (m)
    patrol_days: int
    incident_days: int = 90


SCALES: dict[str, Scale] = {
    "small": Scale("small", 4, 92, 1, 1, 130.0, 160.0, patrol_days=30),
    "medium": Scale("medium", 6, 2600, 1, 9, 135.0, 260.0, patrol_days=30),
    "city": Scale("city", 9, 112_000, 12, 170, 140.0, 330.0, patrol_days=14),
}

# block land uses and what each holds
USES = ["res_high", "res_mid", "res_low", "mixed", "commercial", "public", "park", "school",
        "hospital", "industrial", "village", "farmland"]  # fmt: skip
U = {u: i for i, u in enumerate(USES)}
DEDICATED = {U["school"]: "school", U["hospital"]: "hospital", U["industrial"]: "industrial_park"}


def hilbert_d2xy(order: int, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell (x, y) of the d-th step of the Hilbert curve on a 2**order lattice (vectorised)."""
    x = np.zeros_like(d)
    y = np.zeros_like(d)
    t = d.copy()
    s = 1
    n = 1 << order
    while s < n:
        rx = 1 & (t // 2)
        ry = 1 & (t ^ rx)
        flip = (ry == 0) & (rx == 1)
        x = np.where(flip, s - 1 - x, x)
        y = np.where(flip, s - 1 - y, y)
        swap = ry == 0
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        x = x + s * rx
        y = y + s * ry
        t = t // 4
        s *= 2
    return x, y


@dataclass
class City:
    """Everything geometric, in the projected CRS (metres)."""

    epsg: int
    scale: Scale
    cell_i: np.ndarray
    cell_j: np.ndarray
    node_xy: np.ndarray  # (n+1, n+1, 2)
    cell_use: np.ndarray
    cell_urban: np.ndarray
    cell_hh: np.ndarray
    cell_poly: np.ndarray  # shapely polygons (full cell, to the road centre lines)
    buildings: dict[str, np.ndarray]
    roads: dict[str, np.ndarray]
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    communities: dict[str, np.ndarray] = field(default_factory=dict)
    streets: dict[str, np.ndarray] = field(default_factory=dict)
    districts: dict[str, np.ndarray] = field(default_factory=dict)


def road_kind_of_line(k: np.ndarray) -> np.ndarray:
    """0 = local, 1 = secondary, 2 = arterial, by lattice line index."""
    return np.where(k % 8 == 0, 2, np.where(k % 4 == 0, 1, 0))


ROAD_WIDTH = np.array([14.0, 24.0, 40.0])


def build_lattice(rng: np.random.Generator, scale: Scale, origin: tuple[float, float]) -> np.ndarray:
    n = 1 << scale.order
    centre = n / 2

    def spacings() -> np.ndarray:
        k = np.arange(n)
        far = np.clip(np.abs(k + 0.5 - centre) / max(centre * 0.8, 1.0), 0, 1) ** 1.5
        base = scale.core + (scale.rural - scale.core) * far
        return base * rng.uniform(0.85, 1.15, n)

    xs = np.concatenate([[0.0], np.cumsum(spacings())])
    ys = np.concatenate([[0.0], np.cumsum(spacings())])
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    # jitter every node, less on arterials so they stay straight-ish
    line = np.arange(n + 1)
    kind_i = road_kind_of_line(line)[:, None]
    kind_j = road_kind_of_line(line)[None, :]
    amp = np.where((kind_i == 2) | (kind_j == 2), 0.04, 0.11) * scale.core
    gx = gx + rng.uniform(-1, 1, gx.shape) * amp
    gy = gy + rng.uniform(-1, 1, gy.shape) * amp
    # a smooth warp bends the whole net (rivers and hills in a real city do the same)
    size = xs[-1]
    ph = rng.uniform(0, 2 * np.pi, 4)
    wx = 0.035 * size * np.sin(2 * np.pi * gy / size * 1.3 + ph[0]) + 0.02 * size * np.sin(2 * np.pi * gx / size * 0.7 + ph[1])
    wy = 0.035 * size * np.sin(2 * np.pi * gx / size * 1.1 + ph[2]) + 0.02 * size * np.sin(2 * np.pi * gy / size * 0.9 + ph[3])
    gx, gy = gx + wx, gy + wy
    ang = np.deg2rad(rng.uniform(8, 20))
    cx, cy = gx - size / 2, gy - size / 2
    rx = cx * np.cos(ang) - cy * np.sin(ang)
    ry = cx * np.sin(ang) + cy * np.cos(ang)
    return np.stack([rx + origin[0], ry + origin[1]], axis=-1)


def assign_land_use(rng: np.random.Generator, ci: np.ndarray, cj: np.ndarray, centres_xy: np.ndarray,
                    cell_xy: np.ndarray, scale: Scale) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    n = len(ci)
    d2 = ((cell_xy[:, None, :] - centres_xy[None, :, :2]) ** 2).sum(-1)
    urban = np.max(np.exp(-d2 / (2 * centres_xy[None, :, 2] ** 2)), axis=1)
    urban = np.clip(urban + rng.normal(0, 0.06, n), 0, 1)
    p_core = np.array([30, 24, 8, 15, 8, 5, 6, 1.6, 0.5, 0, 0, 0], float)
    p_sub = np.array([8, 22, 22, 8, 3, 3, 5, 1.5, 0.3, 0, 12, 14], float)
    p_rur = np.array([0, 0, 2, 1, 0.5, 1.5, 1, 0.6, 0.1, 0, 52, 42], float)
    w_core = np.clip((urban - 0.45) / 0.3, 0, 1)[:, None]
    w_rur = np.clip((0.35 - urban) / 0.25, 0, 1)[:, None]
    w_sub = np.clip(1 - w_core - w_rur, 0, 1)
    p = w_core * p_core + w_sub * p_sub + w_rur * p_rur
    p /= p.sum(1, keepdims=True)
    cum = p.cumsum(1)
    use = (rng.random(n)[:, None] > cum).sum(1)
    # industrial parks: runs of the curve in the suburbs (a run is a compact, contiguous area)
    n_parks = max(0, int(n / 900))
    sub = np.flatnonzero((urban > 0.2) & (urban < 0.55))
    for start in rng.choice(sub, size=min(n_parks, len(sub)), replace=False) if len(sub) else []:
        length = int(rng.integers(5, 14))
        use[start : start + length] = U["industrial"]
    return use, urban


# (slot width m, slot depth m, footprint fraction, floors range, building use, max buildings)
LAYOUT = {
    U["res_high"]: (48, 52, (0.45, 0.6), (18, 33), "residential", 8),
    U["res_mid"]: (64, 34, (0.75, 0.4), (5, 12), "residential", 14),
    U["res_low"]: (30, 26, (0.7, 0.55), (2, 4), "residential", 30),
    U["mixed"]: (36, 30, (0.8, 0.65), (3, 9), "mixed", 18),
    U["commercial"]: (70, 60, (0.8, 0.75), (2, 6), "commercial", 4),
    U["public"]: (60, 45, (0.6, 0.5), (2, 6), "office", 3),
    U["park"]: (80, 80, (0.15, 0.15), (1, 2), "public", 2),
    U["school"]: (70, 35, (0.75, 0.45), (3, 5), "school", 5),
    U["hospital"]: (60, 45, (0.8, 0.7), (4, 16), "hospital", 6),
    U["industrial"]: (100, 65, (0.8, 0.65), (1, 3), "industrial", 6),
    U["village"]: (24, 21, (0.55, 0.5), (1, 3), "village_house", 140),
    U["farmland"]: (90, 90, (0.12, 0.12), (1, 1), "other", 3),
}
HH_TARGET = {U["res_high"]: (130, 190), U["res_mid"]: (90, 180), U["res_low"]: (50, 120), U["mixed"]: (30, 90)}


def bilinear(corners: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Map (u, v) in the unit square onto a quadrilateral A(0,0) B(1,0) C(1,1) D(0,1)."""
    a, b, c, d = corners
    u, v = u[..., None], v[..., None]
    return (1 - u) * (1 - v) * a + u * (1 - v) * b + u * v * c + (1 - u) * v * d


def fill_blocks(rng: np.random.Generator, city_nodes: np.ndarray, ci: np.ndarray, cj: np.ndarray,
                use: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:  # fmt: skip
    """Lay buildings out in each block, set back from the roads; return buildings and block households."""
    cells_out, rings, floors_out, use_out, hh_out = [], [], [], [], []
    cell_hh = np.zeros(len(ci), dtype=np.int64)
    kinds_i = road_kind_of_line(np.arange(city_nodes.shape[0]))
    for k in range(len(ci)):
        i, j, lu = int(ci[k]), int(cj[k]), int(use[k])
        corners = np.stack([city_nodes[i, j], city_nodes[i + 1, j], city_nodes[i + 1, j + 1], city_nodes[i, j + 1]])
        width = 0.5 * (np.linalg.norm(corners[1] - corners[0]) + np.linalg.norm(corners[2] - corners[3]))
        depth = 0.5 * (np.linalg.norm(corners[3] - corners[0]) + np.linalg.norm(corners[2] - corners[1]))
        setback = 6.0 if lu != U["village"] else 15.0
        ml = ROAD_WIDTH[kinds_i[i]] / 2 + setback
        mr = ROAD_WIDTH[kinds_i[i + 1]] / 2 + setback
        mb = ROAD_WIDTH[kinds_i[j]] / 2 + setback
        mt = ROAD_WIDTH[kinds_i[j + 1]] / 2 + setback
        inner_w, inner_d = width - ml - mr, depth - mb - mt
        if inner_w < 20 or inner_d < 20:
            continue
        sw, sd, frac, fl, buse, cap = LAYOUT[lu]
        nu, nv = max(1, int(inner_w // sw)), max(1, int(inner_d // sd))
        gu, gv = np.meshgrid(np.arange(nu), np.arange(nv), indexing="ij")
        gu, gv = gu.ravel(), gv.ravel()
        keep = np.ones(gu.size, bool)
        if lu == U["village"]:  # a village is a cluster, not a carpet
            cu, cv = rng.uniform(0.35, 0.65, 2)
            ru, rv = rng.uniform(0.38, 0.56, 2)
            du, dv = (gu + 0.5) / nu - cu, (gv + 0.5) / nv - cv
            keep = (du / ru) ** 2 + (dv / rv) ** 2 < 1
            keep &= rng.random(gu.size) < 0.85
        elif lu in (U["park"], U["farmland"], U["public"], U["commercial"], U["school"], U["hospital"]):
            keep &= rng.random(gu.size) < 0.7
        else:
            keep &= rng.random(gu.size) < 0.92
        idx = np.flatnonzero(keep)
        if idx.size > cap:
            idx = rng.choice(idx, size=cap, replace=False)
        if idx.size == 0:
            idx = np.array([0])
        gu, gv = gu[idx], gv[idx]
        m = gu.size
        fu = frac[0] * rng.uniform(0.8, 1.0, m)
        fv = frac[1] * rng.uniform(0.8, 1.0, m)
        ju = (1 - fu) / 2 * rng.uniform(-0.6, 0.6, m)
        jv = (1 - fv) / 2 * rng.uniform(-0.6, 0.6, m)
        su, sv = inner_w / nu / width, inner_d / nv / depth
        u0 = ml / width + (gu + 0.5 + ju - fu / 2) * su
        u1 = ml / width + (gu + 0.5 + ju + fu / 2) * su
        v0 = mb / depth + (gv + 0.5 + jv - fv / 2) * sv
        v1 = mb / depth + (gv + 0.5 + jv + fv / 2) * sv
        uu = np.stack([u0, u1, u1, u0, u0], 1)
        vv = np.stack([v0, v0, v1, v1, v0], 1)
        rings.append(bilinear(corners, uu, vv))
        floors = rng.integers(fl[0], fl[1] + 1, m)
        hh = np.zeros(m, dtype=np.int64)
        if lu in HH_TARGET:
            lo, hi = HH_TARGET[lu]
            target = int(rng.integers(lo, hi + 1))
            weight = floors * fu * fv
            share = weight / weight.sum() * target
            hh = np.floor(share).astype(np.int64)
            rest = target - hh.sum()
            hh[np.argsort(share - hh)[::-1][:rest]] += 1
            hh = np.maximum(hh, 1)
        elif lu == U["village"]:
            hh = np.where(rng.random(m) < 0.72, 1, 2)
        hh_total = int(hh.sum())
        if hh_total > CELL_HH_CAP:  # trim the biggest buildings' households to the block cap
            over = hh_total - CELL_HH_CAP
            order = np.argsort(-hh)
            while over > 0:
                for b in order:
                    if over == 0:
                        break
                    if hh[b] > 1:
                        hh[b] -= 1
                        over -= 1
        cell_hh[k] = hh.sum()
        cells_out.append(np.full(m, k))
        floors_out.append(floors)
        use_out.append(np.full(m, buse, dtype=object))
        hh_out.append(hh)
    coords = np.concatenate(rings)
    buildings = {
        "cell": np.concatenate(cells_out),
        "geom": shapely.polygons(coords),
        "floors": np.concatenate(floors_out),
        "use": np.concatenate(use_out),
        "households": np.concatenate(hh_out),
    }
    return buildings, cell_hh


def segment_curve(weights: np.ndarray, kinds: np.ndarray, target: float = 390.0, max_len: int = 200) -> list[tuple[int, int, str]]:
    """Cut the curve into grids: runs [a, b) of whole blocks, in one dynamic-programming pass.

    A general grid is a run whose households lie in [HH_MIN, HH_MAX] (cost: squared distance to
    `target`). A dedicated run (one school or hospital block, or a run of industrial-park blocks)
    may be a grid of its own at no cost; absorbing one into a general grid costs a large penalty,
    so it happens only where the households around it could not be split otherwise.
    """
    n = len(weights)
    pre = np.concatenate([[0], np.cumsum(weights)]).astype(np.int64)
    ded = kinds >= 0
    ded_pre = np.concatenate([[0], np.cumsum(ded)])
    run_start = np.full(n + 1, -1)  # run_start[i] = r0 when a dedicated run ends exactly at i
    k = 0
    while k < n:
        if ded[k]:
            e = k + 1
            while e < n and kinds[k] == U["industrial"] and kinds[e] == kinds[k]:
                e += 1
            run_start[e] = k
            k = e
        else:
            k += 1
    penalty = 1e7
    best = np.full(n + 1, np.inf)
    prev = np.full(n + 1, -1)
    is_ded = np.zeros(n + 1, bool)
    best[0] = 0.0
    for i in range(1, n + 1):
        j0 = max(0, i - max_len)
        s = pre[i] - pre[j0:i]
        cost = best[j0:i] + (s - target) ** 2 + penalty * (ded_pre[i] - ded_pre[j0:i])
        cost = np.where((s >= HH_MIN) & (s <= HH_MAX), cost, np.inf)
        jj = int(np.argmin(cost))
        best[i], prev[i] = cost[jj], j0 + jj
        r0 = run_start[i]
        if r0 >= 0 and best[r0] < best[i]:
            best[i], prev[i], is_ded[i] = best[r0], r0, True
    if not np.isfinite(best[n]):
        raise RuntimeError("the demo territory cannot be split into grids of 300-500 households")
    out: list[tuple[int, int, str]] = []
    i = n
    while i > 0:
        j = int(prev[i])
        out.append((j, i, DEDICATED[int(kinds[j])] if is_ded[i] else "general"))
        i = j
    return out[::-1]


def group_runs(rng: np.random.Generator, n_items: int, n_groups: int | None = None,
               size: tuple[int, int] | None = None) -> np.ndarray:  # fmt: skip
    """Cut a sequence of `n_items` into consecutive runs; return the run index of each item."""
    if n_groups is not None:
        n_groups = max(1, min(n_groups, n_items))
        out = np.zeros(n_items, dtype=np.int64)
        if n_groups > 1:
            # even cuts nudged at random: equal-ish runs, none empty
            even = np.linspace(0, n_items, n_groups + 1)[1:-1]
            jitter = rng.uniform(-0.3, 0.3, n_groups - 1) * (n_items / n_groups)
            cuts = np.unique(np.clip(np.round(even + jitter).astype(np.int64), 1, n_items - 1))
            out[cuts] = 1
        return np.cumsum(out)
    assert size is not None
    out = np.zeros(n_items, dtype=np.int64)
    pos, g = 0, 0
    while pos < n_items:
        ln = int(rng.integers(size[0], size[1] + 1))
        if n_items - (pos + ln) < size[0]:
            ln = n_items - pos
        out[pos : pos + ln] = g
        pos += ln
        g += 1
    return out


def generate(seed: int, scale: Scale, centre_lonlat: tuple[float, float], epsg: int) -> City:
    from gridmap.crs import transformer

    rng = np.random.default_rng([seed, 1])
    ox, oy = transformer(4326, epsg).transform(*centre_lonlat)
    nodes = build_lattice(rng, scale, (ox, oy))
    d = np.arange(scale.cells, dtype=np.int64)
    ci, cj = hilbert_d2xy(scale.order, d)
    corners = np.stack([nodes[ci, cj], nodes[ci + 1, cj], nodes[ci + 1, cj + 1], nodes[ci, cj + 1], nodes[ci, cj]], 1)
    cell_poly = shapely.polygons(corners)
    cell_xy = corners[:, :4].mean(1)
    # urban centres: the main one near the territory's middle, smaller towns elsewhere
    mid = cell_xy.mean(0)
    span = np.sqrt(((cell_xy - mid) ** 2).sum(1)).max()
    n_towns = {"small": 0, "medium": 2, "city": 10}.get(scale.name, 3)
    main = cell_xy[np.argmin(((cell_xy - mid) ** 2).sum(1))]
    towns = cell_xy[rng.choice(len(cell_xy), size=n_towns, replace=False)] if n_towns else np.empty((0, 2))
    radius = {"small": 5 * span, "medium": 0.45 * span, "city": 0.17 * span}.get(scale.name, 0.3 * span)
    centres = np.vstack([np.c_[main[None], [[radius]]], np.c_[towns, rng.uniform(0.25, 0.45, n_towns) * radius]])
    use, urban = assign_land_use(rng, ci, cj, centres, cell_xy, scale)
    buildings, cell_hh = fill_blocks(rng, nodes, ci, cj, use)
    city = City(epsg, scale, ci, cj, nodes, use, urban, cell_hh, cell_poly, buildings, roads={})
    city.roads = build_roads(rng, city)
    build_hierarchy(rng, city)
    return city


def build_roads(rng: np.random.Generator, city: City) -> dict[str, np.ndarray]:
    """Roads along the lattice lines, split where the territory ends; named, with kind and width."""
    n = city.node_xy.shape[0] - 1
    has = np.zeros((n + 2, n + 2), bool)
    has[city.cell_i + 1, city.cell_j + 1] = True
    geoms, kinds, names_, widths = [], [], [], []
    used: set[str] = set()
    suffix = {2: ("大道", " Avenue"), 1: ("路", " Road"), 0: ("街", " Street")}
    for axis in (0, 1):
        for line in range(n + 1):
            # segment k of this line runs between nodes k and k+1; it exists if a cell touches it
            if axis == 0:  # horizontal line y = line: cells (k, line-1) and (k, line)
                seg = has[1 : n + 1, line] | has[1 : n + 1, line + 1]
            else:
                seg = has[line, 1 : n + 1] | has[line + 1, 1 : n + 1]
            if not seg.any():
                continue
            kind = int(road_kind_of_line(np.array([line]))[0])
            zh, en = names.place_name(rng, used)
            padded = np.concatenate([[False], seg, [False]]).astype(int)
            starts = np.flatnonzero(np.diff(padded) == 1)
            ends = np.flatnonzero(np.diff(padded) == -1)
            for s, e in zip(starts, ends, strict=True):
                pts = city.node_xy[s : e + 1, line] if axis == 0 else city.node_xy[line, s : e + 1]
                geoms.append(shapely.linestrings(pts))
                kinds.append(["local", "secondary", "arterial"][kind])
                names_.append(zh + suffix[kind][0])
                widths.append(ROAD_WIDTH[kind])
    return {"geom": np.array(geoms), "kind": np.array(kinds), "name": np.array(names_), "width": np.array(widths)}


def _name_children(rng: np.random.Generator, used: set[str], parent_codes: np.ndarray, parent: np.ndarray,
                   rural: np.ndarray, rural_base: int, urban_suffix: tuple[str, str],
                   rural_suffix: tuple[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Codes and names of streets (or communities): 3-digit serials within the parent, urban
    ones from 001 and rural ones from `rural_base` (GB/T 10114: 镇 from 100, 村 from 200)."""
    codes, zh_names, en_names = [], [], []
    taken: dict[tuple[int, bool], int] = {}
    used_in: dict[int, set[str]] = {}  # names are unique within their parent, as in real cities
    for k in range(len(parent)):
        p, r = int(parent[k]), bool(rural[k])
        taken[(p, r)] = taken.get((p, r), 0) + 1
        serial = (rural_base if r else 0) + taken[(p, r)]
        zh, en = names.place_name(rng, used_in.setdefault(p, set(used)))
        suffix = rural_suffix if r else urban_suffix
        codes.append(f"{parent_codes[p]}{serial:03d}")
        zh_names.append(zh + suffix[0])
        en_names.append(en + suffix[1])
    return np.array(codes), np.array(zh_names), np.array(en_names)


def build_hierarchy(rng: np.random.Generator, city: City) -> None:
    scale = city.scale
    kinds = np.where(np.isin(city.cell_use, list(DEDICATED)), city.cell_use, -1)
    segs = segment_curve(city.cell_hh, kinds)
    g_start = np.array([a for a, _, _ in segs])
    g_end = np.array([b for _, b, _ in segs])
    g_kind = np.array([k for _, _, k in segs])
    g_hh = np.array([city.cell_hh[a:b].sum() for a, b, _ in segs])
    n_grid = len(segs)
    # communities: 4-10 grids (villages: 1-3); streets and districts: as many as the scale asks
    g_comm = group_runs(rng, n_grid, size=(4, 10))
    n_comm = int(g_comm.max()) + 1
    c_street = group_runs(rng, n_comm, n_groups=scale.streets)
    n_street = int(c_street.max()) + 1
    s_district = group_runs(rng, n_street, n_groups=scale.districts)

    cell_grid = np.repeat(np.arange(n_grid), g_end - g_start)
    g_poly = np.array([shapely.coverage_union_all(city.cell_poly[a:b]) for a, b in zip(g_start, g_end, strict=True)])
    g_urban = np.array([city.cell_urban[a:b].mean() for a, b in zip(g_start, g_end, strict=True)])
    c_poly = np.array([shapely.coverage_union_all(g_poly[g_comm == c]) for c in range(n_comm)])
    c_urban = np.array([g_urban[g_comm == c].mean() for c in range(n_comm)])
    s_poly = np.array([shapely.coverage_union_all(c_poly[c_street == s]) for s in range(n_street)])
    s_urban = np.array([c_urban[c_street == s].mean() for s in range(n_street)])
    n_dist = int(s_district.max()) + 1
    d_poly = np.array([shapely.coverage_union_all(s_poly[s_district == k]) for k in range(n_dist)])
    d_urban = np.array([s_urban[s_district == k].mean() for k in range(n_dist)])

    # codes (GB/T 2260 style; prefecture 3499 does not exist, so no code collides with a real one)
    d_code = []
    urban_no, county_no = 1, 21
    order = np.argsort(-d_urban)
    for rank, k in enumerate(order):
        is_county = d_urban[k] < 0.3 and rank > 0
        zh, en = names.DISTRICTS[rank % len(names.DISTRICTS)]
        if is_county and not zh.endswith("县"):
            zh, en = zh[:-1] + "县", en.replace("District", "County")
        if not is_county and zh.endswith("县"):
            zh, en = zh[:-1] + "区", en.replace("County", "District")
        num = county_no if is_county else urban_no
        if is_county:
            county_no += 1
        else:
            urban_no += 1
        d_code.append((k, f"3499{num:02d}", zh, en))
    d_code.sort()
    city.districts = {
        "code": np.array([c for _, c, _, _ in d_code]), "name": np.array([z for _, _, z, _ in d_code]),
        "name_en": np.array([e for _, _, _, e in d_code]), "geom": d_poly,
    }  # fmt: skip
    used: set[str] = set()
    s_code, s_name, s_en = _name_children(
        rng, used, city.districts["code"], s_district, s_urban < 0.4, 100, ("街道", " Subdistrict"), ("镇", " Town")
    )
    city.streets = {"code": s_code, "name": s_name, "name_en": s_en, "geom": s_poly, "district": s_district}
    c_code, c_name, c_en = _name_children(
        rng, used, s_code, c_street, c_urban < 0.3, 200, ("社区", " Community"), ("村", " Village")
    )
    city.communities = {"code": c_code, "name": c_name, "name_en": c_en, "geom": c_poly, "street": c_street}
    gcode, gname = [], []
    kind_zh = {"school": "学校", "hospital": "医院", "industrial_park": "产业园"}
    serial_in: dict[int, int] = {}
    for g in range(n_grid):
        c = int(g_comm[g])
        serial_in[c] = serial_in.get(c, 0) + 1
        gcode.append(f"{c_code[c]}{serial_in[c]:03d}")
        if g_kind[g] == "general":
            gname.append(f"{c_name[c]}第{serial_in[c]}网格")
        else:
            gname.append(f"{c_name[c]}{kind_zh[g_kind[g]]}专属网格")
    city.grids = {
        "code": np.array(gcode), "name": np.array(gname), "kind": g_kind, "geom": g_poly,
        "community": g_comm, "households": g_hh, "start": g_start, "end": g_end, "urban": g_urban,
    }  # fmt: skip
    city.buildings["grid"] = cell_grid[city.buildings["cell"]]
