"""Coordinate systems: storage in EPSG:4326, metric work in a projected CGCS2000 zone."""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer

STORAGE_SRID = 4326


def metric_epsg_for(lon: float) -> int:
    """CGCS2000 3-degree Gauss-Kruger zone with central meridian nearest `lon` (EPSG:4534-4554)."""
    cm = int(round(lon / 3.0) * 3)
    cm = min(max(cm, 75), 135)
    return 4534 + (cm - 75) // 3


@lru_cache
def transformer(src: int | str, dst: int | str) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src), CRS.from_user_input(dst), always_xy=True)
