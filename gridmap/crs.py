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


# the coordinate systems accepted on input and offered on output (names users type → canonical)
CRS_ALIASES = {
    "EPSG:4326": "EPSG:4326", "WGS84": "EPSG:4326", "4326": "EPSG:4326",
    "EPSG:4490": "EPSG:4490", "CGCS2000": "EPSG:4490", "4490": "EPSG:4490",
}  # fmt: skip


def canonical_crs(name: str | None) -> str:
    """The canonical name of a supported input/output CRS, or a clear error."""
    from gridmap.errors import InvalidInput

    if name is None or name == "":
        return "EPSG:4326"
    key = name.strip().upper().replace("-", "").replace("_", "")
    key = {"EPSG4326": "EPSG:4326", "EPSG4490": "EPSG:4490"}.get(key, key)
    if key in CRS_ALIASES:
        return CRS_ALIASES[key]
    raise InvalidInput(f"Unknown crs {name!r}: use one of {', '.join(sorted(set(CRS_ALIASES.values())))}")


def to_wgs84(lon, lat, crs: str | None = "EPSG:4326"):  # type: ignore[no-untyped-def]
    """Convert coordinates (scalars or arrays) from a supported CRS to WGS84 lon/lat.

    CGCS2000 (EPSG:4490) and WGS84 differ by centimetres; pyproj treats them as the same datum.
    """
    name = canonical_crs(crs)
    if name == "EPSG:4326":
        return lon, lat
    return transformer(name, 4326).transform(lon, lat)


def from_wgs84(lon, lat, crs: str | None = "EPSG:4326"):  # type: ignore[no-untyped-def]
    """Convert WGS84 lon/lat (scalars or arrays) to a supported output CRS."""
    name = canonical_crs(crs)
    if name == "EPSG:4326":
        return lon, lat
    return transformer(4326, name).transform(lon, lat)
