"""Points from users: range checks, CRS conversion to WGS84, deployment extent, batch parsing."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from gridmap import crs as crs_mod
from gridmap.errors import InvalidInput

MAX_BATCH = 100_000
EXTENT_MARGIN_DEG = 0.2  # points this far outside the grids in force still get "outside" answers


def prepare_point(lon: float, lat: float, crs: str | None,
                  extent: tuple[float, float, float, float] | None) -> tuple[float, float]:  # fmt: skip
    """Check a user's point, convert it to WGS84 and make sure it lies in the deployment area."""
    crs_mod.check_lonlat(lon, lat)
    lon84, lat84 = crs_mod.to_wgs84(lon, lat, crs)
    if extent is not None:
        minx, miny, maxx, maxy = extent
        m = EXTENT_MARGIN_DEG
        crs_mod.check_extent(float(lon84), float(lat84), (minx - m, miny - m, maxx + m, maxy + m))
    return float(lon84), float(lat84)


def parse_points(body: bytes, content_type: str, crs: str | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ids, WGS84 lon and lat, and a per-point reason ('' when fine) from CSV or GeoJSON."""
    name = crs_mod.canonical_crs(crs)
    if not body.strip():
        raise InvalidInput("The request body is empty: send CSV with columns id,lon,lat or a GeoJSON FeatureCollection of points")
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("application/json", "application/geo+json") or body.lstrip()[:1] == b"{":
        ids, lon, lat = _geojson(body)
    else:
        ids, lon, lat = _csv(body)
    reason = np.full(len(ids), "", dtype=object)
    finite = np.isfinite(lon) & np.isfinite(lat)
    reason[~finite] = "lon and lat must be numbers"
    reason[finite & ~crs_mod.lonlat_in_range(lon, lat)] = "lon must lie in [-180, 180] and lat in [-90, 90]"
    ok = reason == ""
    lon84 = np.full(len(ids), np.nan)
    lat84 = np.full(len(ids), np.nan)
    if ok.any():
        if name in ("GCJ02", "BD09"):
            inside = crs_mod.in_china(lon[ok], lat[ok])
            idx = np.flatnonzero(ok)
            reason[idx[~inside]] = f"outside China, where {name} is not defined"
            ok = reason == ""
        x, y = crs_mod.to_wgs84(lon[ok], lat[ok], name)
        lon84[ok], lat84[ok] = x, y
    return ids, lon84, lat84, reason


def _csv(body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:  # numbers parsed in C; a column with a bad value comes back as text and is coerced below
        frame = pd.read_csv(io.BytesIO(body), dtype={"id": str}, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InvalidInput(f"The CSV body could not be read: {str(exc).splitlines()[0]}") from None
    cols = {c.strip().lower(): c for c in frame.columns}
    lon_col = next((cols[c] for c in ("lon", "lng", "longitude", "x") if c in cols), None)
    lat_col = next((cols[c] for c in ("lat", "latitude", "y") if c in cols), None)
    if lon_col is None or lat_col is None:
        raise InvalidInput(f"The CSV needs a header with lon and lat columns (and optionally id); found: {', '.join(frame.columns)}")
    ids = frame[cols["id"]].to_numpy(dtype=object) if "id" in cols else np.arange(1, len(frame) + 1).astype(str).astype(object)
    return ids, pd.to_numeric(frame[lon_col], errors="coerce").to_numpy(float), pd.to_numeric(frame[lat_col], errors="coerce").to_numpy(float)


def _geojson(body: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import json

    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"The GeoJSON body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(doc.get("features"), list):
        raise InvalidInput("The GeoJSON body must be a FeatureCollection of Point features")
    feats = doc["features"]
    n = len(feats)
    ids = np.empty(n, dtype=object)
    lon = np.full(n, np.nan)
    lat = np.full(n, np.nan)
    for i, f in enumerate(feats):
        fid = f.get("id") if isinstance(f, dict) else None
        ids[i] = str(fid) if fid is not None else str(i + 1)
        geom = f.get("geometry") if isinstance(f, dict) else None
        if isinstance(geom, dict) and geom.get("type") == "Point":
            c = geom.get("coordinates")
            if isinstance(c, list) and len(c) >= 2 and all(isinstance(v, int | float) for v in c[:2]):
                lon[i], lat[i] = float(c[0]), float(c[1])
    return ids, lon, lat
