"""Measures of a grid plan, so the current grids, a suggestion and a baseline read side by side.

* Compactness: Polsby–Popper (4πA/P², 1 for a disc, π/4 for a square) punishes ragged
  boundaries; Reock (area over the area of the smallest enclosing circle, 2/π for a square)
  punishes elongated grids. Both want geometries in metres; a MultiPolygon counts all its
  parts' perimeter, so a grid in pieces scores low, as it should.
* Balance: how far the households (or any load) per grid stray from the mean, and the share of
  grids within the wanted range (300–500 households per unit grid is the usual rule).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray


def _geometries(geoms: Any) -> NDArray[np.object_]:
    return np.asarray([geoms] if isinstance(geoms, shapely.Geometry) else list(geoms), dtype=object)


def polsby_popper(geoms: Any) -> NDArray[np.float64]:
    """4πA/P² of each geometry (a sequence, GeoSeries or single geometry); NaN where empty."""
    g = _geometries(geoms)
    area, perimeter = shapely.area(g), shapely.length(g)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(perimeter > 0, 4 * np.pi * area / perimeter**2, np.nan)


def reock(geoms: Any) -> NDArray[np.float64]:
    """Area over the area of the minimum bounding circle of each geometry; NaN where empty."""
    g = _geometries(geoms)
    circle = np.pi * shapely.minimum_bounding_radius(g) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(circle > 0, shapely.area(g) / circle, np.nan)


def balance(values: ArrayLike, lo: float | None = None, hi: float | None = None) -> dict[str, float | int | None]:
    """n, mean, std, min, max, max_deviation (max |v - mean| / mean) and the share in [lo, hi]
    (None when neither bound is given; an absent bound is open)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return dict(n=0, mean=math.nan, std=math.nan, min=math.nan, max=math.nan, max_deviation=math.nan,
                    in_range=None if lo is None and hi is None else math.nan)  # fmt: skip
    mean = float(v.mean())
    inside = (v >= (-np.inf if lo is None else lo)) & (v <= (np.inf if hi is None else hi))
    return dict(
        n=int(v.size), mean=mean, std=float(v.std()), min=float(v.min()), max=float(v.max()),
        max_deviation=float(np.abs(v - mean).max() / mean) if mean > 0 else math.nan,
        in_range=None if lo is None and hi is None else float(inside.mean()),
    )  # fmt: skip


def summary(polygons: Any, households: ArrayLike, lo: float | None = None, hi: float | None = None) -> dict[str, Any]:
    """Balance of the households per grid and the mean and minimum compactness, one flat dict
    per plan (a column of a side-by-side table)."""
    out = balance(households, lo, hi)
    for name, values in (("polsby_popper", polsby_popper(polygons)), ("reock", reock(polygons))):
        known = values.size > 0 and not np.isnan(values).all()
        out[f"{name}_mean"] = float(np.nanmean(values)) if known else math.nan
        out[f"{name}_min"] = float(np.nanmin(values)) if known else math.nan
    return out
