"""Validation of a grid plan (网格调整方案校验): what is wrong with it, where, and how much.

Pure geometry in a metric CRS (metres), no database: `gridmap.services.plans` loads the plan,
its communities, buildings and the codes in use, and turns the findings into GeoJSON.

Each finding has a `type`, a `severity` (an ``error`` stops an apply; a ``warning`` is shown
and may be accepted), a message in English and Chinese, the grids it concerns, a measured
`value` and the geometry to draw. Tolerances are in metres (`Rules`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gridmap.planning.metrics import polsby_popper, reock

ERROR, WARNING = "error", "warning"
FINDING_TYPES = {  # type → severity
    "invalid": ERROR, "outside_parent": ERROR, "overlap": ERROR, "gap": ERROR, "code_invalid": ERROR,
    "code_collision": ERROR, "non_contiguous": ERROR, "sliver": WARNING, "hole": WARNING,
    "households_out_of_range": WARNING, "residents_over_max": WARNING, "compactness_low": WARNING,
}  # fmt: skip


@dataclass(frozen=True)
class Rules:
    """What a good grid is. Household ranges by grid kind: kinds without one (schools, hospitals,
    parks: dedicated grids) are not held to a household count."""

    households: Mapping[str, tuple[int, int]] = field(default_factory=lambda: {"general": (300, 500)})
    residents_max: int = 2500
    tolerance_m: float = 1.0  # overlaps, gaps and overhangs smaller than this band are drawing noise
    sliver_m: float = 10.0  # a grid (or a part of one) narrower than this is a sliver
    min_polsby_popper: float = 0.2
    min_reock: float = 0.25

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["households"] = {k: list(v) for k, v in self.households.items()}
        return out


@dataclass
class Finding:
    type: str
    message: str
    message_zh: str
    grids: list[str]
    value: float | None = None
    geometry: BaseGeometry | None = None

    @property
    def severity(self) -> str:
        return FINDING_TYPES[self.type]


@dataclass
class PlanGrids:
    """The plan's grids in a metric CRS: `label` names a grid in messages (its code, or "new #id")."""

    labels: list[str]
    codes: list[str | None]
    kinds: list[str]
    communities: list[str | None]
    geoms: np.ndarray  # shapely geometries


def _area(geom: BaseGeometry | None) -> float:
    return 0.0 if geom is None or geom.is_empty else float(geom.area)


def _polygons(geom: BaseGeometry) -> list[BaseGeometry]:
    return [g for g in shapely.get_parts(shapely.make_valid(geom)) if g.geom_type == "Polygon" and not g.is_empty]


def _pieces(geom: BaseGeometry | None, rules: Rules) -> list[BaseGeometry]:
    """The parts of an overlap or gap that survive the tolerance (drawing noise removed)."""
    if geom is None or geom.is_empty:
        return []
    eroded = shapely.buffer(geom, -rules.tolerance_m / 2, join_style="mitre")
    if eroded.is_empty:
        return []
    kept = shapely.intersection(geom, shapely.buffer(eroded, rules.tolerance_m, join_style="mitre"))
    return [p for p in _polygons(kept) if p.area >= rules.tolerance_m**2]


def validate(grids: PlanGrids, communities: Mapping[str, BaseGeometry], scope: BaseGeometry, *,
             households: Iterable[float], residents: Iterable[float], code_rule_ok: Iterable[bool],
             collisions: Mapping[int, str], rules: Rules) -> list[Finding]:  # fmt: skip
    """Every finding of the plan. `households`/`residents` per plan grid; `code_rule_ok` per grid
    (a 15-digit code whose first 12 digits are its community's); `collisions` maps a grid's
    index to what its code collides with."""
    out: list[Finding] = []
    geoms = grids.geoms
    valid = shapely.is_valid(geoms)
    for i in np.flatnonzero(~valid):
        reason = shapely.is_valid_reason(geoms[i])
        where = reason[reason.find("[") :] if "[" in reason else ""
        out.append(Finding("invalid", f"Grid {grids.labels[i]} is not a valid polygon: {reason}",
                           f"网格 {grids.labels[i]} 不是有效的面：{reason}", [grids.labels[i]],
                           geometry=_point_of(where) or shapely.boundary(geoms[i])))  # fmt: skip
    fixed = np.array([g if ok else shapely.make_valid(g) for g, ok in zip(geoms, valid, strict=True)], dtype=object)
    fixed = np.array([shapely.union_all(_polygons(g)) if not g.is_empty else g for g in fixed], dtype=object)

    # the code rule and collisions
    for i, ok in enumerate(code_rule_ok):
        if not ok:
            out.append(Finding("code_invalid", f"Grid code {grids.codes[i]!r} breaks the coding rule: 15 digits, the first 12 "
                               f"its community's code ({grids.communities[i] or 'unknown'})",
                               f"网格编码 {grids.codes[i]!r} 不符合编码规则：15 位数字，前 12 位为所在社区编码", [grids.labels[i]],
                               geometry=fixed[i]))  # fmt: skip
    for i, what in collisions.items():
        out.append(Finding("code_collision", f"Grid code {grids.codes[i]} collides with {what}",
                           f"网格编码 {grids.codes[i]} 与{what}重复", [grids.labels[i]], geometry=fixed[i]))  # fmt: skip

    # outside the parent community
    for i, g in enumerate(fixed):
        parent = communities.get(grids.communities[i] or "")
        if parent is None:
            out.append(Finding("outside_parent", f"Grid {grids.labels[i]} lies in no community of the plan's scope",
                               f"网格 {grids.labels[i]} 不在方案范围内的任何社区", [grids.labels[i]], _area(g), g))  # fmt: skip
            continue
        over = _pieces(shapely.difference(g, parent), rules)
        if over:
            piece = shapely.union_all(over)
            out.append(Finding("outside_parent", f"Grid {grids.labels[i]} reaches {piece.area:,.0f} m² beyond its community "
                               f"{grids.communities[i]} (tolerance {rules.tolerance_m:g} m)",
                               f"网格 {grids.labels[i]} 超出所属社区 {grids.communities[i]} 共 {piece.area:,.0f} 平方米",
                               [grids.labels[i]], round(piece.area, 1), piece))  # fmt: skip

    # overlaps, pairwise
    tree = shapely.STRtree(fixed)
    left, right = tree.query(fixed, predicate="intersects")
    for a, b in zip(left, right, strict=True):
        if a >= b:
            continue
        for piece in _pieces(shapely.intersection(fixed[a], fixed[b]), rules):
            out.append(Finding("overlap", f"Grids {grids.labels[a]} and {grids.labels[b]} overlap by {piece.area:,.0f} m²",
                               f"网格 {grids.labels[a]} 与 {grids.labels[b]} 重叠 {piece.area:,.0f} 平方米",
                               [grids.labels[a], grids.labels[b]], round(piece.area, 1), piece))  # fmt: skip

    # gaps: parts of the scope no grid covers
    covered = shapely.union_all(fixed)
    for piece in _pieces(shapely.difference(scope, covered), rules):
        out.append(Finding("gap", f"{piece.area:,.0f} m² of the scope belong to no grid",
                           f"有 {piece.area:,.0f} 平方米不属于任何网格", [], round(piece.area, 1), piece))  # fmt: skip

    # the shape of each grid
    for i, g in enumerate(fixed):
        parts = sorted(_polygons(g), key=lambda p: -p.area)
        if len(parts) > 1:
            rest = shapely.union_all(parts[1:])
            out.append(Finding("non_contiguous", f"Grid {grids.labels[i]} is in {len(parts)} separate pieces "
                               f"({rest.area:,.0f} m² apart from the main one)",
                               f"网格 {grids.labels[i]} 由 {len(parts)} 块不相连的部分组成", [grids.labels[i]], len(parts), rest))  # fmt: skip
        for p in _thin(g, rules.sliver_m):
            out.append(Finding("sliver", f"Grid {grids.labels[i]} has a sliver of {p.area:,.0f} m² narrower than "
                               f"{rules.sliver_m:g} m", f"网格 {grids.labels[i]} 有宽度不足 {rules.sliver_m:g} 米的狭长碎片",
                               [grids.labels[i]], round(p.area, 1), p))  # fmt: skip
        for p in parts:
            for ring in p.interiors:
                hole = shapely.Polygon(ring)
                filled = [grids.labels[j] for j in tree.query(hole, predicate="intersects")
                          if j != i and shapely.intersection(fixed[j], hole).area > 0.5 * hole.area]  # fmt: skip
                note, note_zh = (f" (grid {', '.join(filled)} lies inside it)", f"（内有网格 {', '.join(filled)}）") if filled else ("", "")
                out.append(Finding("hole", f"Grid {grids.labels[i]} has a hole of {hole.area:,.0f} m²{note}",
                                   f"网格 {grids.labels[i]} 有 {hole.area:,.0f} 平方米的空洞{note_zh}",
                                   [grids.labels[i]], round(hole.area, 1), hole))  # fmt: skip

    # balance and compactness
    pp, rk = polsby_popper(fixed), reock(fixed)
    for i, (n, people) in enumerate(zip(households, residents, strict=True)):
        band = rules.households.get(grids.kinds[i])
        if band is not None and not band[0] <= n <= band[1]:
            out.append(Finding("households_out_of_range", f"Grid {grids.labels[i]} has {int(n):,} households; "
                               f"a {grids.kinds[i]} grid should have {band[0]}–{band[1]}",
                               f"网格 {grids.labels[i]} 有 {int(n):,} 户，应为 {band[0]}–{band[1]} 户",
                               [grids.labels[i]], float(n), fixed[i]))  # fmt: skip
        if people > rules.residents_max:
            out.append(Finding("residents_over_max", f"Grid {grids.labels[i]} has {int(people):,} residents, more than "
                               f"{rules.residents_max:,}", f"网格 {grids.labels[i]} 有 {int(people):,} 名居民，超过 {rules.residents_max:,}",
                               [grids.labels[i]], float(people), fixed[i]))  # fmt: skip
        if pp[i] < rules.min_polsby_popper or rk[i] < rules.min_reock:
            out.append(Finding("compactness_low", f"Grid {grids.labels[i]} is not compact: Polsby–Popper {pp[i]:.2f} "
                               f"(at least {rules.min_polsby_popper:g}), Reock {rk[i]:.2f} (at least {rules.min_reock:g})",
                               f"网格 {grids.labels[i]} 形状不紧凑：Polsby–Popper {pp[i]:.2f}，Reock {rk[i]:.2f}",
                               [grids.labels[i]], round(float(min(pp[i], rk[i])), 3), fixed[i]))  # fmt: skip
    return out


def _thin(geom: BaseGeometry, width: float) -> list[BaseGeometry]:
    """The parts of a grid narrower than `width`: what a morphological opening (shrink, then
    grow back by half the width) removes — a thin grid, or a thin strip hanging off one."""
    opened = shapely.buffer(shapely.buffer(geom, -width / 2, join_style="mitre"), width / 2, join_style="mitre")
    return [p for p in _polygons(shapely.difference(geom, opened)) if p.area >= 2 * width * width]


def _point_of(where: str) -> BaseGeometry | None:
    """The place in a GEOS validity reason, "[x y]"."""
    try:
        x, y = (float(v) for v in where.strip("[]").split()[:2])
    except ValueError:
        return None
    return shapely.Point(x, y)
