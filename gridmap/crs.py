"""Coordinate systems: storage in EPSG:4326, metric work in a projected CGCS2000 zone.

Input and output also accept GCJ-02 and BD-09, the offset systems of Chinese phone maps
(see docs/coordinates.md): they are not CRSs pyproj knows, so they are converted here with the
public formulas, vectorised over numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
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


# the coordinate systems accepted on input and offered on output (names users type → canonical);
# keys are upper case without "-" / "_", the form canonical_crs looks them up in
CRS_ALIASES = {
    "EPSG:4326": "EPSG:4326", "WGS84": "EPSG:4326", "4326": "EPSG:4326",
    "EPSG:4490": "EPSG:4490", "CGCS2000": "EPSG:4490", "4490": "EPSG:4490",
    "GCJ02": "GCJ02", "MARS": "GCJ02",
    "BD09": "BD09", "BAIDU": "BD09",
}  # fmt: skip

#: the offset systems of Chinese phone maps, with the names people write them by
SHIFTED_CRS = {"GCJ02": "GCJ-02", "BD09": "BD-09"}

#: (minlon, minlat, maxlon, maxlat) outside which GCJ-02 / BD-09 are not defined: the box the
#: widely used public implementations test (coordtransform's out_of_china), inclusive
CHINA_BOUNDS = (72.004, 0.8293, 137.8347, 55.8271)

#: the GCJ-02 (and BD-09) inverse: at most this many fixed-point steps, each point stopping
#: once the forward image of its estimate is within the tolerance (degrees, ~0.1 mm) of the input
GCJ02_INVERSE_MAX_ITERATIONS = 30
GCJ02_INVERSE_TOLERANCE = 1e-9

# GCJ-02 works on the Krasovsky 1940 ellipsoid (semi-major axis, first eccentricity squared)
_KRASOVSKY_A = 6378245.0
_KRASOVSKY_EE = 0.00669342162296594323
_BD_X_PI = math.pi * 3000.0 / 180.0

Extent = Sequence[float]


def canonical_crs(name: str | None) -> str:
    """The canonical name of a supported input/output CRS, or a clear error."""
    from gridmap.errors import InvalidInput

    if name is None or name == "":
        return "EPSG:4326"
    key = name.strip().upper().replace("-", "").replace("_", "")
    key = {"EPSG4326": "EPSG:4326", "EPSG4490": "EPSG:4490"}.get(key, key)
    if key in CRS_ALIASES:
        return CRS_ALIASES[key]
    raise InvalidInput(
        f"Unknown crs {name!r}: use one of {', '.join(sorted(set(CRS_ALIASES.values())))}"
    )


def shifted_crs(name: str | None) -> str | None:
    """'GCJ02' or 'BD09' when `name` is one of the phone-map systems, else None (never raises)."""
    from gridmap.errors import InvalidInput

    try:
        canonical = canonical_crs(name)
    except InvalidInput:
        return None
    return canonical if canonical in SHIFTED_CRS else None


def to_wgs84(lon, lat, crs: str | None = "EPSG:4326"):  # type: ignore[no-untyped-def]
    """Convert coordinates (scalars or arrays) from a supported CRS to WGS84 lon/lat.

    CGCS2000 (EPSG:4490) and WGS84 differ by centimetres; pyproj treats them as the same datum.
    GCJ-02 / BD-09 exist only in China: a scalar outside `CHINA_BOUNDS` raises InvalidInput,
    array elements outside come back as NaN (find them first with `outside_china`).
    """
    name = canonical_crs(crs)
    if name == "EPSG:4326":
        return lon, lat
    if name in SHIFTED_CRS:
        return _shifted(lon, lat, name, _gcj02_to_wgs84 if name == "GCJ02" else _bd09_to_wgs84)
    return transformer(name, 4326).transform(lon, lat)


def from_wgs84(lon, lat, crs: str | None = "EPSG:4326"):  # type: ignore[no-untyped-def]
    """Convert WGS84 lon/lat (scalars or arrays) to a supported output CRS.

    As in `to_wgs84`, GCJ-02 / BD-09 output outside China raises (scalars) or gives NaN (arrays).
    """
    name = canonical_crs(crs)
    if name == "EPSG:4326":
        return lon, lat
    if name in SHIFTED_CRS:
        return _shifted(lon, lat, name, _wgs84_to_gcj02 if name == "GCJ02" else _wgs84_to_bd09)
    return transformer(4326, name).transform(lon, lat)


def outside_china(lon: Any, lat: Any) -> NDArray[np.bool_]:
    """Mask of points (scalars or arrays, broadcast) where GCJ-02 / BD-09 are not defined.

    Non-finite coordinates count as outside.
    """
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    minlon, minlat, maxlon, maxlat = CHINA_BOUNDS
    with np.errstate(invalid="ignore"):
        inside = (x >= minlon) & (x <= maxlon) & (y >= minlat) & (y <= maxlat)
    return np.asarray(~inside)


def in_china(lon: Any, lat: Any) -> NDArray[np.bool_]:
    """Mask of points where GCJ-02 / BD-09 are defined (the complement of `outside_china`)."""
    return ~outside_china(lon, lat)


def outside_china_detail(lon: float, lat: float, crs: str) -> str:
    """The user-facing message for a point given in (or asked for in) GCJ-02 / BD-09 abroad."""
    name = canonical_crs(crs)
    return (
        f"Invalid coordinates for crs {name}: ({_num(lon)}, {_num(lat)}) lies outside China, "
        f"where {SHIFTED_CRS.get(name, name)} is not defined"
    )


def lonlat_in_range(lon: Any, lat: Any) -> NDArray[np.bool_]:
    """Vectorised range rule of `check_lonlat`: finite, |lon| <= 180, |lat| <= 90 (NaN → False)."""
    lon, lat = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)


def check_lonlat(lon: Any, lat: Any) -> tuple[float, float]:
    """Refuse a longitude/latitude that is not a finite number in range; return them as floats.

    A latitude beyond ±90 beside a longitude within ±90 is most likely a swapped pair, and the
    message says so.
    """
    from gridmap.errors import InvalidInput

    x = _finite("lon", lon)
    y = _finite("lat", lat)
    if not -180.0 <= x <= 180.0:
        raise InvalidInput(f"Invalid value for parameter lon: {_num(x)} is outside [-180, 180]")
    if not -90.0 <= y <= 90.0:
        swap = "; longitude and latitude look swapped" if abs(x) <= 90.0 and abs(y) <= 180.0 else ""
        raise InvalidInput(f"Invalid value for parameter lat: {_num(y)} is outside [-90, 90]{swap}")
    return x, y


def check_extent(lon: float, lat: float, extent: Extent) -> None:
    """Refuse a point outside the deployment's extent (minlon, minlat, maxlon, maxlat).

    When the swapped pair would lie inside, the message names the likely swap.
    """
    from gridmap.errors import InvalidInput

    minlon, minlat, maxlon, maxlat = (float(v) for v in extent)
    if not (minlon <= maxlon and minlat <= maxlat):
        raise ValueError(f"extent must be (minlon, minlat, maxlon, maxlat), got {tuple(extent)}")

    def inside(x: float, y: float) -> bool:
        return minlon <= x <= maxlon and minlat <= y <= maxlat

    if inside(lon, lat):
        return
    point = f"Point (lon={_num(lon)}, lat={_num(lat)}) lies outside the deployment area"
    if inside(lat, lon):
        raise InvalidInput(
            f"{point}; longitude and latitude look swapped — "
            f"(lon={_num(lat)}, lat={_num(lon)}) would lie inside"
        )
    box = ", ".join(_num(v) for v in (minlon, minlat, maxlon, maxlat))
    raise InvalidInput(f"{point} ({box})")


# --------------------------------------------------------------------------------------------
# GCJ-02 / BD-09 (vectorised; every function takes and returns float64 arrays)
# --------------------------------------------------------------------------------------------

Pair = tuple[NDArray[np.float64], NDArray[np.float64]]


def _shifted(lon: Any, lat: Any, name: str, convert: Any) -> Any:
    """Run `convert` on the points inside China; scalars outside raise, array elements get NaN."""
    from gridmap.errors import InvalidInput

    scalar = np.ndim(lon) == 0 and np.ndim(lat) == 0
    x, y = np.broadcast_arrays(np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64))
    outside = outside_china(x, y)
    if scalar:
        if outside:
            raise InvalidInput(outside_china_detail(float(x), float(y), name))
        ox, oy = convert(x.reshape(1), y.reshape(1))
        return float(ox[0]), float(oy[0])
    out_x = np.full(x.shape, np.nan)
    out_y = np.full(y.shape, np.nan)
    inside = ~outside
    out_x[inside], out_y[inside] = convert(x[inside], y[inside])
    return out_x, out_y


def _gcj02_offset(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    """GCJ-02 minus WGS84 (degrees) at WGS84 points: the public Krasovsky-ellipsoid formulas."""
    x = lon - 105.0
    y = lat - 35.0
    pi = math.pi
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    rad_lat = lat / 180.0 * pi
    magic = 1.0 - _KRASOVSKY_EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_KRASOVSKY_A * (1.0 - _KRASOVSKY_EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_KRASOVSKY_A / sqrt_magic * np.cos(rad_lat) * pi)
    return dlon, dlat


def _wgs84_to_gcj02(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + dlon, lat + dlat


def _gcj02_to_wgs84(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    dlon, dlat = _gcj02_offset(lon, lat)
    # the usual one-step approximation (metres off) is the starting point
    return _invert(_wgs84_to_gcj02, lon, lat, lon - dlon, lat - dlat)


def _invert(
    forward: Callable[[NDArray[np.float64], NDArray[np.float64]], Pair],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    start_lon: NDArray[np.float64],
    start_lat: NDArray[np.float64],
) -> Pair:
    """Solve forward(w) = (lon, lat) by fixed-point steps w <- w - (forward(w) - target).

    The offsets of GCJ-02 and BD-09 change by well under 1 % of a step per step, so the error
    shrinks a hundredfold or more each time: 2-4 steps reach the tolerance. Each point stops
    once converged; one that has not after the bound comes back as NaN, never as a guess.
    """
    wlon = np.array(start_lon, dtype=np.float64)
    wlat = np.array(start_lat, dtype=np.float64)
    todo = np.arange(wlon.size)
    for _ in range(GCJ02_INVERSE_MAX_ITERATIONS):
        flon, flat = forward(wlon[todo], wlat[todo])
        rlon = flon - lon[todo]
        rlat = flat - lat[todo]
        wlon[todo] -= rlon
        wlat[todo] -= rlat
        todo = todo[~(np.maximum(np.abs(rlon), np.abs(rlat)) < GCJ02_INVERSE_TOLERANCE)]
        if todo.size == 0:
            break
    else:
        wlon[todo] = np.nan
        wlat[todo] = np.nan
    return wlon, wlat


def _gcj02_to_bd09(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _BD_X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _BD_X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _bd09_to_gcj02(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    """Invert `_gcj02_to_bd09` exactly (to 1e-9°), starting from the public closed form.

    The closed form alone is off by up to ~0.25 m: it evaluates the perturbation terms at the
    BD-09 point instead of the GCJ-02 one.
    """
    return _invert(_gcj02_to_bd09, lon, lat, *_bd09_to_gcj02_closed_form(lon, lat))


def _bd09_to_gcj02_closed_form(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    x = lon - 0.0065
    y = lat - 0.006
    z = np.hypot(x, y) - 0.00002 * np.sin(y * _BD_X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _BD_X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def _wgs84_to_bd09(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    return _gcj02_to_bd09(*_wgs84_to_gcj02(lon, lat))


def _bd09_to_wgs84(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> Pair:
    return _gcj02_to_wgs84(*_bd09_to_gcj02(lon, lat))


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


def _finite(parameter: str, value: Any) -> float:
    from gridmap.errors import InvalidInput

    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise InvalidInput(f"Invalid value for parameter {parameter}: must be a finite number")
    return number


def _num(value: float) -> str:
    """A coordinate as people write it: 117.27, 190, -0.5 (up to 10 significant digits)."""
    return format(float(value), ".10g")
