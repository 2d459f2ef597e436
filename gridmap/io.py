"""Import and export of admin areas, grids and buildings (GeoJSON, GeoPackage, Shapefile).

Framework-free: the CLI (``gridmap.cli_io``), the API and notebooks call the same functions.
The rules (loading semantics, column mapping, what is rejected and why) are written down in
``docs/import-export.md``; keep the two in step.

Big files are the normal case (a city has ~2 million building footprints), so every check is
vectorised with shapely / pandas, rows reach PostgreSQL through COPY into a staging table, and
the final writes are set-based ``INSERT … SELECT`` / ``UPDATE … FROM`` statements.
"""

from __future__ import annotations

import csv
import datetime as dt
import io as _stdio
import re
import shutil
import tempfile
import time
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, get_args
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from gridmap import vocab
from gridmap.crs import SHIFTED_CRS, STORAGE_SRID, from_wgs84, outside_china, shifted_crs, to_wgs84
from gridmap.db import copy_in
from gridmap.errors import InvalidInput

LayerName = Literal["admin-areas", "grids", "buildings"]
LAYERS: tuple[LayerName, ...] = get_args(LayerName)
UnknownUse = Literal["reject", "other"]

#: (step, done, total) — total 0 means "unknown, show a spinner".
ProgressFn = Callable[[str, int, int], None]

#: Date/times without a zone (in files, on the command line) are China Standard Time, the
#: local time of the cities gridmap serves (see the duty roster in models.py).
NAIVE_TIME_ZONE = ZoneInfo("Asia/Shanghai")

COPY_CHUNK_ROWS = 100_000
EXPORT_CHUNK_ROWS = 100_000

READ_SUFFIXES = {
    ".geojson": "GeoJSON",
    ".json": "GeoJSON",
    ".gpkg": "GPKG",
    ".shp": "ESRI Shapefile",
    ".zip": "zipped Shapefile",
}
FORMATS_HINT = (
    "GeoJSON (.geojson, .json), GeoPackage (.gpkg), Shapefile (.shp) or zipped Shapefile (.zip)"
)

# Shapefile (dBASE) field names hold at most 10 characters: export writes these short names and
# import recognises them by default, so a Shapefile round trip needs no --map.
SHAPEFILE_NAMES = {"parent_code": "parentcode", "community_code": "comm_code"}

# Chinese phone maps use GCJ-02 / BD-09 (`--crs GCJ02`, `--crs BD09`), which are not CRSs pyproj
# knows: they are offsets of WGS84 lon/lat that gridmap.crs converts. No file can declare them, so
# `_parse_crs` gives EPSG:4326 for them (the frame their lon/lat are written in) and
# `_to_storage` / `_from_storage` apply the offsets to the coordinates.


# --------------------------------------------------------------------------------------------
# Column targets per layer
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A column gridmap fills; `aliases` are other source names recognised without --map."""

    name: str
    required: bool = False
    aliases: tuple[str, ...] = ()


TARGETS: dict[LayerName, tuple[Target, ...]] = {
    "admin-areas": (
        Target("code", required=True),
        Target("name", required=True),
        Target("level"),
        Target("parent_code", aliases=(SHAPEFILE_NAMES["parent_code"],)),
        Target("name_en"),
    ),
    "grids": (
        Target("code", required=True),
        Target("name", required=True),
        Target("kind"),
        Target("community_code", aliases=(SHAPEFILE_NAMES["community_code"],)),
        Target("valid_from"),
    ),
    "buildings": (
        Target("code"),
        Target("name"),
        Target("address"),
        Target("use"),
        Target("floors"),
        Target("households"),
    ),
}

LEVEL_BY_LENGTH = {length: level for level, length in vocab.ADMIN_LEVELS.items()}
PARENT_LEVEL = {"street": "district", "community": "street"}
LEVEL_ALIASES: dict[str, str] = {
    **{level: level for level in vocab.ADMIN_LEVELS},
    **dict.fromkeys(("区", "县", "区县", "县级市", "旗"), "district"),
    **dict.fromkeys(("街道", "乡", "镇", "乡镇", "苏木", "township"), "street"),
    **dict.fromkeys(("社区", "村", "社区/村", "居委会", "村委会", "village"), "community"),
}


def _vocab_aliases(terms: Mapping[str, tuple[str, str]]) -> dict[str, str]:
    """Accept a vocabulary key, its Chinese label or its English label (any case)."""
    out: dict[str, str] = {}
    for key, (zh, en) in terms.items():
        out[key.lower()] = key
        out[zh.lower()] = key
        out[en.lower()] = key
    return out


KIND_ALIASES = _vocab_aliases(vocab.GRID_KINDS)
USE_ALIASES = _vocab_aliases(vocab.BUILDING_USES)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


class Rejection(NamedTuple):
    """A row of the file (1 = its first feature) and why it was not loaded."""

    row: int
    reason: str


@dataclass
class ImportReport:
    """What an import read, loaded and refused."""

    layer: LayerName
    source: str
    read: int = 0
    valid: int = 0
    loaded: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    repaired: int = 0
    repaired_rows: list[Rejection] = field(default_factory=list)
    outside_grid: int | None = None
    seconds: float = 0.0
    dry_run: bool = False
    skip_invalid: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when rows were rejected and the caller did not ask to skip them."""
        return bool(self.rejected) and not self.skip_invalid


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def read_layer(
    path: str | Path,
    *,
    layer: str | None = None,
    crs: str | None = None,
    force_crs: bool = False,
    encoding: str | None = None,
) -> gpd.GeoDataFrame:
    """Read a vector file and return it in EPSG:4326.

    `crs` is used when the file declares none; a file's own CRS wins unless `force_crs`.
    """
    frame, _notes = _read_layer(path, layer=layer, crs=crs, force_crs=force_crs, encoding=encoding)
    return frame


def frame_from_geojson(value: Any, *, crs: str | None = None) -> gpd.GeoDataFrame:
    """A GeoJSON FeatureCollection (a request body) read like a file, in EPSG:4326."""
    import json
    import tempfile

    if not isinstance(value, dict) or value.get("type") != "FeatureCollection" or not isinstance(value.get("features"), list):
        raise InvalidInput("Invalid value for geojson: a GeoJSON FeatureCollection")
    with tempfile.TemporaryDirectory(prefix="gridmap-geojson-") as tmp:
        path = Path(tmp) / "body.geojson"
        path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        return read_layer(path, crs=crs)


def _read_layer(
    path: str | Path,
    *,
    layer: str | None,
    crs: str | None,
    force_crs: bool,
    encoding: str | None,
) -> tuple[gpd.GeoDataFrame, list[str]]:
    path = Path(path)
    notes: list[str] = []
    given = _parse_crs(crs) if crs else None
    shifted = shifted_crs(crs) if crs else None
    if force_crs and crs is None:
        raise InvalidInput(
            "--force-crs needs --crs to say which coordinate reference system to use"
        )
    if not path.exists():
        raise InvalidInput(f"{path} does not exist")
    if path.is_dir():
        raise InvalidInput(f"{path} is a folder; give the file itself ({FORMATS_HINT})")
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise InvalidInput(
            f"{path} is not a supported file type ({suffix or 'no extension'}); use {FORMATS_HINT}"
        )
    source: str | Path = path
    if suffix == ".zip":
        source, layer = _zip_source(path, layer)
    if layer is None:
        _only_layer(source, path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # Date/times as text: pyogrio would turn naive values into UTC when a column mixes
            # naive and zoned ones; `_timestamps` reads naive ones as local time instead.
            frame = gpd.read_file(
                source, engine="pyogrio", layer=layer, encoding=encoding, datetime_as_string=True
            )
    except pyogrio.errors.DataLayerError:
        names = ", ".join(str(name) for name in pyogrio.list_layers(source)[:, 0])
        raise InvalidInput(f"{path} has no layer {layer!r}; its layers are: {names}") from None
    except (
        pyogrio.errors.DataSourceError,
        pyogrio.errors.FieldError,
        pyogrio.errors.GeometryError,
    ) as exc:
        raise InvalidInput(f"{path} could not be read: {_gdal_reason(exc, path)}") from None
    except (OSError, ValueError, LookupError) as exc:
        raise InvalidInput(f"{path} could not be read: {_gdal_reason(exc, path)}") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise InvalidInput(f"{path} has no geometry column")
    declared = frame.crs is not None
    if frame.crs is None:
        if given is None:
            raise InvalidInput(
                f"{path} has no coordinate reference system; pass --crs (e.g. EPSG:4490)"
            )
        frame = frame.set_crs(given)
    elif given is not None:
        if force_crs:
            notes.append(
                f"the file declares {_crs_name(frame.crs)}; --force-crs replaced it with "
                f"{SHIFTED_CRS[shifted] if shifted else _crs_name(given)}"
            )
            frame = frame.set_crs(given, allow_override=True)
        elif shifted:
            # A GeoJSON is always "EPSG:4326" to GDAL: ignoring --crs GCJ02 with a note would
            # load every vertex hundreds of metres off.
            raise InvalidInput(
                f"Invalid value for --crs: {path} declares {_crs_name(frame.crs)} and no file can "
                f"declare {SHIFTED_CRS[shifted]}; pass --force-crs to read its coordinates as "
                f"{SHIFTED_CRS[shifted]}"
            )
        elif not frame.crs.equals(given):
            notes.append(
                f"the file declares {_crs_name(frame.crs)}; --crs {crs} was ignored "
                "(pass --force-crs to override the file's CRS)"
            )
    return _to_storage(frame, crs if force_crs or not declared else None), notes


def _only_layer(source: str | Path, path: Path) -> None:
    """Refuse to guess which of several layers to read."""
    try:
        layers = pyogrio.list_layers(source)
    except (pyogrio.errors.DataSourceError, OSError, ValueError) as exc:
        raise InvalidInput(f"{path} could not be read: {_gdal_reason(exc, path)}") from None
    if len(layers) > 1:
        names = ", ".join(str(name) for name in layers[:, 0])
        raise InvalidInput(f"{path} has {len(layers)} layers ({names}); pass --layer to choose one")
    if len(layers) == 0:
        raise InvalidInput(f"{path} has no layers")


def _zip_source(path: Path, layer: str | None) -> tuple[str | Path, str | None]:
    """Where GDAL finds the Shapefile in a zip: the archive itself, or a folder inside it.

    GDAL only looks at the top of an archive; zips made by hand often hold a folder.
    """
    if not zipfile.is_zipfile(path):
        raise InvalidInput(f"{path} is not a zip archive")
    with zipfile.ZipFile(path) as archive:
        members = [n for n in archive.namelist() if n.lower().endswith(".shp")]
    if not members:
        raise InvalidInput(f"{path} holds no Shapefile (.shp)")
    if any("/" not in m for m in members):
        return path, layer
    if layer is not None:
        members = [m for m in members if Path(m).stem == layer]
        if not members:
            raise InvalidInput(f"{path} has no layer {layer!r}")
    if len(members) > 1:
        names = ", ".join(Path(m).stem for m in members)
        raise InvalidInput(
            f"{path} has {len(members)} layers ({names}); pass --layer to choose one"
        )
    return f"/vsizip/{path.resolve()}/{members[0]}", None


def _gdal_reason(exc: BaseException, path: Path) -> str:
    """GDAL's message without the path it repeats and its advice about driver prefixes."""
    reason = _first_line(exc).split("; It might help")[0]
    reason = re.sub(r"'?(/vsizip/)?[^' ]*" + re.escape(path.name) + r"[^' ]*'?", "", reason)
    return reason.strip(" :;.") or "unreadable file"


def _parse_crs(value: str) -> CRS:
    """The pyproj CRS for `--crs`; GCJ-02 / BD-09 are lon/lat in EPSG:4326 plus an offset."""
    if shifted_crs(value):
        return CRS.from_epsg(STORAGE_SRID)
    try:
        return CRS.from_user_input(value)
    except CRSError:
        raise InvalidInput(
            f"Invalid value for --crs: {value!r} is not a coordinate reference system pyproj knows "
            "(try EPSG:4490, EPSG:4326 or EPSG:4548)"
        ) from None


def _crs_name(crs: Any) -> str:
    crs = CRS.from_user_input(crs)
    epsg = crs.to_epsg()
    return f"EPSG:{epsg} ({crs.name})" if epsg else crs.name


def _to_storage(frame: gpd.GeoDataFrame, source: str | None) -> gpd.GeoDataFrame:
    """Reproject to the storage CRS (EPSG:4326).

    `source` is the user's CRS text when it applies; GCJ-02 / BD-09 coordinates are converted
    here, and a feature outside China (where they are not defined) refuses the file.
    """
    shifted = shifted_crs(source)
    if shifted:
        _refuse_outside_china(
            frame, shifted, lambda rows: _rows(rows), advice="check --crs and --force-crs"
        )
        return _shift(frame, to_wgs84, shifted)
    if CRS.from_user_input(frame.crs).equals(CRS.from_epsg(STORAGE_SRID)):
        return frame.set_crs(STORAGE_SRID, allow_override=True)
    try:
        with np.errstate(all="ignore"):
            return frame.to_crs(STORAGE_SRID)
    except CRSError as exc:  # pragma: no cover - pyproj refuses only exotic definitions
        raise InvalidInput(
            f"cannot reproject from {_crs_name(frame.crs)} to EPSG:4326: {exc}"
        ) from None


def _from_storage(frame: gpd.GeoDataFrame, crs: str) -> gpd.GeoDataFrame:
    """Reproject stored geometry to the output CRS.

    GCJ-02 / BD-09 output is written as EPSG:4326 (no CRS code exists for them); a feature
    outside China refuses the export.
    """
    shifted = shifted_crs(crs)
    if shifted:
        _refuse_outside_china(
            frame,
            shifted,
            lambda rows: _feature_names(frame, rows),
            advice="export in EPSG:4326 or EPSG:4490 instead",
        )
        return _shift(frame, from_wgs84, shifted)
    target = _parse_crs(crs)
    if target.equals(CRS.from_epsg(STORAGE_SRID)):
        return frame
    return frame.to_crs(target)


def _refuse_outside_china(
    frame: gpd.GeoDataFrame, crs: str, which: Callable[[np.ndarray], str], *, advice: str
) -> None:
    """Raise when any feature has a vertex outside China (missing/empty geometries are skipped)."""
    bounds = shapely.bounds(np.asarray(frame.geometry.array, dtype=object))
    present = ~np.isnan(bounds).all(axis=1)
    outside = present & (
        outside_china(bounds[:, 0], bounds[:, 1]) | outside_china(bounds[:, 2], bounds[:, 3])
    )
    if outside.any():
        rows = np.flatnonzero(outside)
        verb = "lie" if len(rows) > 1 else "lies"
        raise InvalidInput(
            f"Invalid coordinates for crs {crs}: {len(rows)} of {len(frame)} features {verb} "
            f"outside China, where {SHIFTED_CRS[crs]} is not defined ({which(rows)}); {advice}"
        )


def _shift(frame: gpd.GeoDataFrame, convert: Callable[..., Any], crs: str) -> gpd.GeoDataFrame:
    """Apply a GCJ-02 / BD-09 conversion to every vertex (vectorised, Z dropped)."""

    def coordinates(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(convert(xy[:, 0], xy[:, 1], crs))

    geoms = shapely.transform(np.asarray(frame.geometry.array, dtype=object), coordinates)
    out = frame.copy()
    out[frame.geometry.name] = gpd.GeoSeries(geoms, index=frame.index, crs=STORAGE_SRID)
    return out.set_crs(STORAGE_SRID, allow_override=True)


def _rows(rows: np.ndarray, limit: int = 5) -> str:
    """'row 3' / 'rows 3, 7, 9, …': the first few file rows (1 = the first feature)."""
    shown = ", ".join(str(int(i) + 1) for i in rows[:limit])
    return f"row{'s' if len(rows) > 1 else ''} {shown}" + (", …" if len(rows) > limit else "")


def _feature_names(frame: gpd.GeoDataFrame, rows: np.ndarray, limit: int = 5) -> str:
    """The codes of the first few features at `rows` (their position when a code is missing)."""
    codes = frame["code"].to_numpy(dtype=object) if "code" in frame.columns else None
    names = [
        f"code {codes[i]}" if codes is not None and not pd.isna(codes[i]) else f"feature {i + 1}"
        for i in rows[:limit]
    ]
    return ", ".join(names) + (", …" if len(rows) > limit else "")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Column mapping
# --------------------------------------------------------------------------------------------


def resolve_columns(
    *, layer: LayerName, columns: Sequence[str], mapping: Mapping[str, str] | None, source: str
) -> dict[str, str]:
    """Return target → source column for the targets the file provides.

    Without a mapping a target is taken from the column of the same name (or a known alias),
    matched exactly first and then ignoring case.
    """
    targets = TARGETS[layer]
    mapping = dict(mapping or {})
    known = [t.name for t in targets]
    unknown = [name for name in mapping if name not in known]
    if unknown:
        raise InvalidInput(
            f"Invalid value for --map: {', '.join(unknown)} is not a column of {layer}; "
            f"the columns are: {', '.join(known)}"
        )
    listing = ", ".join(columns) if columns else "(none)"
    resolved: dict[str, str] = {}
    missing: list[str] = []
    missing_required: list[str] = []
    for target in targets:
        if target.name in mapping:
            found = _find_column(columns, [mapping[target.name]])
            if found is None:
                missing.append(f"{mapping[target.name]!r} (mapped to {target.name})")
        else:
            found = _find_column(columns, [target.name, *target.aliases])
            if found is None and target.required:
                missing_required.append(target.name)
        if found is not None:
            resolved[target.name] = found
    if missing:
        raise InvalidInput(
            f"{source} has no column {' or '.join(missing)}; its columns are: {listing}"
        )
    if missing_required:
        wanted = " and ".join(missing_required)
        raise InvalidInput(
            f"{source} has no {wanted} column; map one with --map {missing_required[0]}=COLUMN "
            f"(its columns are: {listing})"
        )
    return resolved


def _find_column(columns: Sequence[str], names: Iterable[str]) -> str | None:
    for name in names:
        if name in columns:
            return name
    for name in names:
        matches = [c for c in columns if c.lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
    return None


# --------------------------------------------------------------------------------------------
# Validation helpers (vectorised; Python loops run over rejected rows only)
# --------------------------------------------------------------------------------------------


class _Problems:
    """Reasons per row, collected from every check; a row may have several."""

    def __init__(self, n: int) -> None:
        self.mask = np.zeros(n, dtype=bool)
        self.reasons: dict[int, list[str]] = {}

    def add(self, mask: Any, reason: str | Callable[[int], str]) -> None:
        mask = np.asarray(mask, dtype=bool)
        for i in np.flatnonzero(mask):
            self.reasons.setdefault(int(i), []).append(
                reason if isinstance(reason, str) else reason(int(i))
            )
        self.mask |= mask

    def rejections(self) -> list[Rejection]:
        return [Rejection(i + 1, "; ".join(self.reasons[i])) for i in sorted(self.reasons)]


def _show(value: Any, limit: int = 40) -> str:
    text_value = str(value)
    return repr(text_value if len(text_value) <= limit else text_value[: limit - 1] + "…")


def _text(series: pd.Series) -> pd.Series:
    """Strings with surrounding blanks removed; empty → missing."""
    out = series.astype("string").str.replace("\x00", "", regex=False).str.strip()
    return out.mask(out == "")


def _codes(series: pd.Series) -> pd.Series:
    """Codes as strings; whole numbers read from numeric columns lose their '.0'."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        whole = values.notna() & np.isfinite(values) & (values == np.floor(values))
        out = series.astype("string")
        out[whole] = values[whole].astype("int64").astype("string")
        return out.mask(values.isna())
    return _text(series)


def _column(frame: pd.DataFrame, columns: Mapping[str, str], target: str) -> pd.Series:
    if target in columns:
        return frame[columns[target]].reset_index(drop=True)
    return pd.Series(pd.NA, index=pd.RangeIndex(len(frame)), dtype="object")


def _digits(codes: pd.Series) -> np.ndarray:
    return np.asarray(codes.str.fullmatch(r"[0-9]+").fillna(False), dtype=bool)


def _whole_numbers(
    raw: pd.Series, problems: _Problems, *, name: str, low: int, high: int, rule: str
) -> pd.Series:
    """Parse whole numbers in [low, high]; blank → missing; anything else is a problem."""
    present = (
        raw.notna().to_numpy() & (raw.astype("string").str.strip() != "").fillna(False).to_numpy()
    )
    numbers = pd.to_numeric(raw.where(present), errors="coerce").astype("float64")
    with np.errstate(invalid="ignore"):
        good = numbers.notna() & np.isfinite(numbers) & (numbers == np.floor(numbers))
        good &= (numbers >= low) & (numbers <= high)
    bad = present & ~good.to_numpy()
    problems.add(bad, lambda i: f"{name} must be {rule}, got {_show(raw.iloc[i])}")
    return numbers.where(good).astype("Int64")


def _duplicates(codes: pd.Series, problems: _Problems, *, what: str) -> None:
    dup = (codes.notna() & codes.duplicated(keep=False)).to_numpy()
    if not dup.any():
        return
    rows: dict[str, list[int]] = {}
    for i in np.flatnonzero(dup):
        rows.setdefault(str(codes.iloc[i]), []).append(int(i) + 1)

    def reason(i: int) -> str:
        code = str(codes.iloc[i])
        shown = rows[code][:5]
        where = ", ".join(str(r) for r in shown) + (", …" if len(rows[code]) > 5 else "")
        return f"{what} {code} appears more than once in this file (rows {where})"

    problems.add(dup, reason)


def _aliases(
    raw: pd.Series,
    problems: _Problems,
    *,
    aliases: Mapping[str, str],
    default: str | None,
    what: str,
    choices: Iterable[str],
    unknown_as: str | None = None,
) -> pd.Series:
    values = _text(raw)
    mapped = values.str.lower().map(dict(aliases)).astype("object")
    unknown = (values.notna() & mapped.isna()).to_numpy()
    if unknown_as is None:
        problems.add(
            unknown,
            lambda i: (
                f"unknown {what} {_show(values.iloc[i])}; expected one of {', '.join(choices)}"
            ),
        )
    else:
        mapped[unknown] = unknown_as
    return mapped.where(values.notna(), default)


# --------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------

TYPE_NAMES = np.array(
    [
        "Point",
        "LineString",
        "LinearRing",
        "Polygon",
        "MultiPoint",
        "MultiLineString",
        "MultiPolygon",
        "GeometryCollection",
    ]
)


def check_geometries(
    geoms: np.ndarray, problems: _Problems, *, repair: bool
) -> tuple[np.ndarray, list[Rejection]]:
    """Validate polygons in EPSG:4326 and return them as MultiPolygons (None where rejected)."""
    geoms = shapely.force_2d(np.asarray(geoms, dtype=object))
    n = len(geoms)
    missing = shapely.is_missing(geoms)
    problems.add(missing, "missing geometry")
    empty = ~missing & shapely.is_empty(geoms)
    problems.add(empty, "empty geometry")
    type_id = shapely.get_type_id(geoms)
    present = ~missing & ~empty
    wrong = present & ~np.isin(type_id, (3, 6))
    problems.add(
        wrong,
        lambda i: f"wrong geometry type {TYPE_NAMES[type_id[i]]}; expected Polygon or MultiPolygon",
    )
    ok = present & ~wrong

    bounds = shapely.bounds(geoms)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(bounds).all(axis=1)
        in_range = (
            finite
            & (bounds[:, 0] >= -180)
            & (bounds[:, 2] <= 180)
            & (bounds[:, 1] >= -90)
            & (bounds[:, 3] <= 90)
        )
    problems.add(ok & ~finite, "coordinates could not be transformed to EPSG:4326; check the CRS")

    def out_of_range(i: int) -> str:
        x0, y0, x1, y1 = bounds[i]
        return (
            f"coordinates outside the longitude/latitude range after reprojection to EPSG:4326 "
            f"(bounds {x0:.6g} {y0:.6g} {x1:.6g} {y1:.6g}); check the CRS"
        )

    problems.add(ok & finite & ~in_range, out_of_range)
    ok &= in_range

    valid = np.zeros(n, dtype=bool)
    valid[ok] = shapely.is_valid(geoms[ok])
    invalid = ok & ~valid
    repaired_rows: list[Rejection] = []
    if invalid.any():
        where = np.flatnonzero(invalid)
        reasons = shapely.is_valid_reason(geoms[where])
        if repair:
            fixed = polygonal_parts(shapely.make_valid(geoms[where]))
            broken = shapely.is_missing(fixed) | shapely.is_empty(fixed)
            broken[~broken] = ~shapely.is_valid(fixed[~broken])
            geoms[where] = fixed
            lost = np.zeros(n, dtype=bool)
            lost[where[broken]] = True
            reason_of = dict(zip(where.tolist(), reasons.tolist(), strict=True))
            problems.add(
                lost, lambda i: f"invalid geometry: {reason_of[i]}; repair left no polygon"
            )
            repaired_rows = [
                Rejection(int(i) + 1, f"repaired: {r}")
                for i, r, b in zip(where, reasons, broken, strict=True)
                if not b
            ]
        else:
            reason_of = dict(zip(where.tolist(), reasons.tolist(), strict=True))
            problems.add(invalid, lambda i: f"invalid geometry: {reason_of[i]}")

    out = np.full(n, None, dtype=object)
    keep = ~problems.mask
    single = keep & (shapely.get_type_id(geoms) == 3)
    out[keep] = geoms[keep]
    if single.any():
        out[single] = shapely.multipolygons(geoms[single], indices=np.arange(int(single.sum())))
    return out, repaired_rows


def polygonal_parts(geoms: np.ndarray) -> np.ndarray:
    """Keep the polygons of each geometry (e.g. of make_valid output) as one MultiPolygon."""
    parts, index = shapely.get_parts(geoms, return_index=True)
    sub, sub_index = shapely.get_parts(parts, return_index=True)  # flattens nested multi-parts
    index = index[sub_index]
    keep = shapely.get_type_id(sub) == 3
    out = np.full(len(geoms), None, dtype=object)
    if keep.any():
        shapely.multipolygons(sub[keep], indices=index[keep], out=out)
    return out


# --------------------------------------------------------------------------------------------
# Layer rules
# --------------------------------------------------------------------------------------------


def _admin_rows(
    session: Session, frame: pd.DataFrame, columns: Mapping[str, str], problems: _Problems
) -> pd.DataFrame:
    code = _codes(_column(frame, columns, "code"))
    name = _text(_column(frame, columns, "name"))
    name_en = _text(_column(frame, columns, "name_en"))
    n = len(code)

    problems.add(code.isna().to_numpy(), "code is empty")
    digits = _digits(code)
    length = code.str.len().fillna(0).astype(int).to_numpy()
    problems.add(
        code.notna().to_numpy() & ~digits,
        lambda i: f"code {_show(code.iloc[i])} must contain digits only",
    )
    form_ok = digits & np.isin(length, list(LEVEL_BY_LENGTH))
    problems.add(
        digits & ~form_ok,
        lambda i: (
            f"code {code.iloc[i]} has {length[i]} digits; admin area codes have "
            "6 (district), 9 (street) or 12 (community)"
        ),
    )
    problems.add(name.isna().to_numpy(), "name is empty")

    derived = pd.Series([LEVEL_BY_LENGTH.get(int(x)) for x in length], dtype="object")
    if "level" in columns:
        raw_level = _text(_column(frame, columns, "level"))
        given = _aliases(
            raw_level,
            problems,
            aliases=LEVEL_ALIASES,
            default=None,
            what="level",
            choices=vocab.ADMIN_LEVELS,
        )
        stated = given.notna().to_numpy() & raw_level.notna().to_numpy()
        mismatch = stated & form_ok & (given.to_numpy() != derived.to_numpy())
        problems.add(
            mismatch,
            lambda i: (
                f"level {given.iloc[i]} needs a {vocab.ADMIN_LEVELS[given.iloc[i]]}-digit code, "
                f"got {code.iloc[i]} ({length[i]} digits)"
            ),
        )
    level = derived

    # GB/T 2260: a street code starts with its district's 6 digits, a community with its street's 9.
    prefix = pd.Series(
        [
            c[: vocab.ADMIN_LEVELS[PARENT_LEVEL[lv]]]
            if lv in PARENT_LEVEL and isinstance(c, str)
            else None
            for c, lv in zip(code.tolist(), level.tolist(), strict=True)
        ],
        dtype="object",
    )
    parent = prefix
    if "parent_code" in columns:
        stated_parent = _codes(_column(frame, columns, "parent_code"))
        parent = stated_parent.astype("object").where(stated_parent.notna(), prefix)
        parent = parent.where(level.isin(list(PARENT_LEVEL)), None)
        parent_len = parent.str.len().fillna(0).astype(int).to_numpy()
        want = np.array(
            [vocab.ADMIN_LEVELS.get(PARENT_LEVEL.get(str(lv), ""), 0) for lv in level.tolist()]
        )
        bad_parent = (
            parent.notna().to_numpy()
            & form_ok
            & ((parent_len != want) | ~_digits(parent.astype("string")))
        )
        problems.add(
            bad_parent,
            lambda i: (
                f"parent_code {_show(parent.iloc[i])} is not a {PARENT_LEVEL[level.iloc[i]]} code "
                f"({vocab.ADMIN_LEVELS[PARENT_LEVEL[level.iloc[i]]]} digits)"
            ),
        )

    _duplicates(code, problems, what="code")

    lookup = sorted(
        {c for c in code.dropna().tolist() + parent.dropna().tolist() if str(c).isdigit()}
    )
    in_db: set[str] = set()
    if lookup:
        in_db = set(
            session.execute(
                text("SELECT code FROM admin_area WHERE code = ANY(:codes)"),
                {"codes": lookup},
            ).scalars()
        )
    exists = code.isin(in_db).to_numpy()
    problems.add(exists, lambda i: f"admin area {code.iloc[i]} already exists in the database")

    # Parents before children: a street is loadable when its district is in the database or is
    # a loadable row of this file, and so on down; rejection cascades to the children.
    row_of = {c: i for i, c in enumerate(code.tolist()) if isinstance(c, str)}
    for lv in ("street", "community"):
        mine = (level == lv).to_numpy() & parent.notna().to_numpy() & ~problems.mask
        if not mine.any():
            continue
        loadable = in_db | {c for c, i in row_of.items() if not problems.mask[i]}
        found = parent.isin(loadable).to_numpy()

        def parent_reason(i: int, lv: str = lv) -> str:
            p = str(parent.iloc[i])
            plevel = PARENT_LEVEL[lv]
            if p in row_of:
                return f"parent {plevel} {p} (row {row_of[p] + 1}) is rejected"
            return f"parent {plevel} {p} not found in the database or in this file"

        problems.add(mine & ~found, parent_reason)

    return pd.DataFrame(
        {
            "src_row": np.arange(1, n + 1),
            "code": code.astype("object"),
            "level": level,
            "name": name.astype("object"),
            "name_en": name_en.astype("object"),
            "parent_code": parent.astype("object"),
        }
    )


def _grid_rows(
    session: Session, frame: pd.DataFrame, columns: Mapping[str, str], problems: _Problems
) -> pd.DataFrame:
    code = _codes(_column(frame, columns, "code"))
    name = _text(_column(frame, columns, "name"))
    n = len(code)
    problems.add(code.isna().to_numpy(), "code is empty")
    form_ok = _digits(code) & (code.str.len().fillna(0).to_numpy() == 15)
    problems.add(
        code.notna().to_numpy() & ~form_ok,
        lambda i: (
            f"grid code {_show(code.iloc[i])} must be 15 digits (12-digit community code + 3-digit serial)"
        ),
    )
    problems.add(name.isna().to_numpy(), "name is empty")
    kind = _aliases(
        _column(frame, columns, "kind"),
        problems,
        aliases=KIND_ALIASES,
        default="general",
        what="kind",
        choices=vocab.GRID_KINDS,
    )

    derived = code.where(form_ok).str.slice(0, 12)
    community = derived
    if "community_code" in columns:
        stated = _codes(_column(frame, columns, "community_code"))
        community = stated.where(stated.notna(), derived)
        bad = stated.notna().to_numpy() & ~(
            _digits(stated) & (stated.str.len().fillna(0).to_numpy() == 12)
        )
        problems.add(bad, lambda i: f"community_code {_show(stated.iloc[i])} must be 12 digits")

    now = session.execute(text("SELECT now()")).scalar_one()
    valid_from = pd.Series(
        pd.Timestamp(now).tz_convert("UTC"), index=pd.RangeIndex(n), dtype="datetime64[us, UTC]"
    )
    if "valid_from" in columns:
        raw = _column(frame, columns, "valid_from")
        parsed = _timestamps(raw)
        given = (
            raw.notna().to_numpy()
            & (raw.astype("string").str.strip() != "").fillna(False).to_numpy()
        )
        problems.add(
            given & parsed.isna().to_numpy(),
            lambda i: f"valid_from {_show(raw.iloc[i])} is not a date/time",
        )
        valid_from = parsed.where(given & parsed.notna().to_numpy(), valid_from)

    _duplicates(code.where(form_ok), problems, what="grid code")

    codes = sorted(set(code[form_ok].tolist()))
    in_force: set[str] = set()
    closed_until: dict[str, dt.datetime] = {}
    if codes:
        for gcode, vt in session.execute(
            text("SELECT code, valid_to FROM grid WHERE code = ANY(:codes)"),
            {"codes": codes},
        ):
            if vt is None:
                in_force.add(gcode)
            elif gcode not in closed_until or vt > closed_until[gcode]:
                closed_until[gcode] = vt
    problems.add(
        code.isin(in_force).to_numpy(),
        lambda i: (
            f"grid {code.iloc[i]} is already in force; boundaries of grids in force change "
            "through a plan, not by import"
        ),
    )
    if closed_until:
        until = code.map(closed_until)
        overlap = until.notna().to_numpy() & ~code.isin(in_force).to_numpy()
        overlap[overlap] = (
            pd.to_datetime(until[overlap], utc=True).to_numpy() > valid_from[overlap].to_numpy()
        )
        problems.add(
            overlap,
            lambda i: (
                f"an earlier version of grid {code.iloc[i]} is valid until "
                f"{pd.Timestamp(until.iloc[i]).isoformat()}; valid_from must not be earlier"
            ),
        )

    communities = sorted({c for c in community.dropna().tolist() if len(c) == 12 and c.isdigit()})
    ids: dict[str, int] = {}
    if communities:
        ids = dict(
            session.execute(
                text(
                    "SELECT code, id FROM admin_area WHERE level = 'community' AND code = ANY(:codes)"
                ),
                {"codes": communities},
            ).all()
        )
    community_id = community.map(ids)
    checkable = (
        community.notna().to_numpy()
        & community.str.fullmatch(r"[0-9]{12}").fillna(False).to_numpy()
    )
    problems.add(
        checkable & community_id.isna().to_numpy(),
        lambda i: f"community {community.iloc[i]} not found in the database",
    )
    return pd.DataFrame(
        {
            "src_row": np.arange(1, n + 1),
            "code": code.astype("object"),
            "name": name.astype("object"),
            "kind": kind,
            "community_id": community_id.astype("Int64"),
            "valid_from": valid_from,
        }
    )


def _timestamps(raw: pd.Series) -> pd.Series:
    """Parse date/times; naive ones are local time (NAIVE_TIME_ZONE), aware ones kept as given."""
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC")
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        return raw.dt.tz_localize(NAIVE_TIME_ZONE).dt.tz_convert("UTC")
    out = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[us, UTC]")
    for i, value in raw.items():  # mixed text formats: grids are few (~15,000 for a city)
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            continue
        try:
            stamp = pd.Timestamp(str(value).strip().replace("/", "-"))
        except (ValueError, TypeError):
            continue
        if stamp is pd.NaT:
            continue
        stamp = stamp.tz_localize(NAIVE_TIME_ZONE) if stamp.tzinfo is None else stamp
        out[i] = stamp.tz_convert("UTC")
    return out


def _building_rows(
    frame: pd.DataFrame, columns: Mapping[str, str], problems: _Problems, *, unknown_use: UnknownUse
) -> pd.DataFrame:
    code = _codes(_column(frame, columns, "code"))
    n = len(code)
    use = _aliases(
        _column(frame, columns, "use"),
        problems,
        aliases=USE_ALIASES,
        default="residential",
        what="use",
        choices=vocab.BUILDING_USES,
        unknown_as="other" if unknown_use == "other" else None,
    )
    floors = _whole_numbers(
        _column(frame, columns, "floors"),
        problems,
        name="floors",
        low=1,
        high=200,
        rule="a whole number from 1 to 200",
    )
    households = _whole_numbers(
        _column(frame, columns, "households"),
        problems,
        name="households",
        low=0,
        high=2**31 - 1,
        rule="a whole number ≥ 0",
    ).fillna(0)
    _duplicates(code, problems, what="building code")
    return pd.DataFrame(
        {
            "src_row": np.arange(1, n + 1),
            "code": code.astype("object"),
            "name": _text(_column(frame, columns, "name")).astype("object"),
            "address": _text(_column(frame, columns, "address")).astype("object"),
            "use": use,
            "floors": floors,
            "households": households,
        }
    )


STAGING_COLUMNS: dict[LayerName, tuple[tuple[str, str], ...]] = {
    "admin-areas": (
        ("src_row", "integer"),
        ("code", "text"),
        ("level", "text"),
        ("name", "text"),
        ("name_en", "text"),
        ("parent_code", "text"),
    ),
    "grids": (
        ("src_row", "integer"),
        ("code", "text"),
        ("name", "text"),
        ("kind", "text"),
        ("community_id", "bigint"),
        ("valid_from", "timestamptz"),
    ),
    "buildings": (
        ("src_row", "integer"),
        ("code", "text"),
        ("name", "text"),
        ("address", "text"),
        ("use", "text"),
        ("floors", "integer"),
        ("households", "integer"),
    ),
}


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------


def import_layer(
    *,
    session: Session,
    layer: LayerName,
    path: str | Path,
    mapping: Mapping[str, str] | None = None,
    source_layer: str | None = None,
    crs: str | None = None,
    force_crs: bool = False,
    encoding: str | None = None,
    skip_invalid: bool = False,
    dry_run: bool = False,
    repair: bool = False,
    unknown_use: UnknownUse = "reject",
    rejects_path: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Read a file, validate every row and load the good ones (see docs/import-export.md).

    Nothing is written unless every row is valid, or `skip_invalid` is set; `dry_run`
    validates only. The caller owns the transaction (the CLI commits it).
    """
    started = time.perf_counter()
    step = progress or _no_progress
    step(f"reading {Path(path).name}", 0, 0)
    frame, notes = _read_layer(
        path, layer=source_layer, crs=crs, force_crs=force_crs, encoding=encoding
    )
    report = import_frame(
        session=session,
        layer=layer,
        frame=frame,
        mapping=mapping,
        source=str(path),
        skip_invalid=skip_invalid,
        dry_run=dry_run,
        repair=repair,
        unknown_use=unknown_use,
        rejects_path=rejects_path,
        progress=progress,
    )
    report.notes[:0] = notes
    report.seconds = time.perf_counter() - started
    return report


def import_frame(
    *,
    session: Session,
    layer: LayerName,
    frame: gpd.GeoDataFrame,
    mapping: Mapping[str, str] | None = None,
    source: str = "the data",
    skip_invalid: bool = False,
    dry_run: bool = False,
    repair: bool = False,
    unknown_use: UnknownUse = "reject",
    rejects_path: str | Path | None = None,
    progress: ProgressFn | None = None,
) -> ImportReport:
    """Validate and load a GeoDataFrame (what `import_layer` does after reading the file).

    A frame without a CRS is taken to be in EPSG:4326; any other CRS is reprojected.
    """
    if layer not in LAYERS:
        raise InvalidInput(
            f"Invalid value for layer: {layer!r}; expected one of {', '.join(LAYERS)}"
        )
    started = time.perf_counter()
    step = progress or _no_progress
    report = ImportReport(
        layer=layer, source=source, read=len(frame), dry_run=dry_run, skip_invalid=skip_invalid
    )
    if frame.crs is not None:
        frame = _to_storage(frame, None)
    geometry_name = frame.geometry.name
    attributes = [str(c) for c in frame.columns if c != geometry_name]
    columns = resolve_columns(layer=layer, columns=attributes, mapping=mapping, source=source)

    step("validating", 0, 0)
    problems = _Problems(len(frame))
    geoms, report.repaired_rows = check_geometries(frame.geometry.array, problems, repair=repair)
    report.repaired = len(report.repaired_rows)
    if layer == "admin-areas":
        rows = _admin_rows(session, frame, columns, problems)
    elif layer == "grids":
        rows = _grid_rows(session, frame, columns, problems)
    else:
        rows = _building_rows(frame, columns, problems, unknown_use=unknown_use)
    rows["geom"] = geoms

    savepoint = session.begin_nested()
    try:
        # Bulk statements outlast the API's statement_timeout; LOCAL ends with the transaction.
        session.execute(text("SET LOCAL statement_timeout = 0"))
        staging = _stage(session, layer, rows[~problems.mask], step)
        if layer == "buildings":
            # Building codes are checked against the table after COPY: a join on its unique
            # index beats shipping millions of codes as a query parameter.
            taken: dict[int, str] = dict(
                session.execute(
                    text(
                        f"SELECT t.src_row - 1, t.code FROM {staging} t JOIN building b USING (code)"
                    )
                ).all()
            )
            if taken:
                mask = np.zeros(len(frame), dtype=bool)
                mask[list(taken)] = True
                problems.add(
                    mask, lambda i: f"building code {taken[i]} already exists in the database"
                )
                session.execute(
                    text(f"DELETE FROM {staging} WHERE src_row = ANY(:rows)"),
                    {"rows": [i + 1 for i in taken]},
                )
        report.rejected = problems.rejections()
        report.valid = report.read - len(report.rejected)
        if not dry_run and (skip_invalid or not report.rejected) and report.valid > 0:
            report.loaded, report.outside_grid = _insert(session, layer, staging, step)
            session.execute(text(f"DROP TABLE {staging}"))
            savepoint.commit()
        else:
            savepoint.rollback()  # drops the staging table too
    except (DBAPIError, psycopg.Error) as exc:  # COPY raises driver errors
        savepoint.rollback()
        raise InvalidInput(
            f"the database refused the import, nothing was written: {_db_reason(exc)}"
        ) from None
    except BaseException:
        savepoint.rollback()
        raise

    if rejects_path is not None and report.rejected:
        write_rejects(frame, report.rejected, rejects_path)
    report.seconds = time.perf_counter() - started
    return report


def _no_progress(step: str, done: int, total: int) -> None:
    del step, done, total


def _db_reason(exc: Exception) -> str:
    """PostgreSQL's primary message and the constraint, without driver context lines."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    message = getattr(diag, "message_primary", None) or _first_line(orig)
    return f"{message} ({constraint})" if constraint else str(message)


def _stage(session: Session, layer: LayerName, rows: pd.DataFrame, step: ProgressFn) -> str:
    """COPY rows into a temporary staging table and return its name."""
    name = f"gridmap_import_{uuid.uuid4().hex[:12]}"
    columns = STAGING_COLUMNS[layer]
    ddl = ", ".join(f'"{c}" {t}' for c, t in columns)
    session.execute(
        text(
            f"CREATE TEMP TABLE {name} ({ddl}, geom geometry(MultiPolygon, {STORAGE_SRID})) ON COMMIT DROP"
        )
    )
    names = [c for c, _ in columns]
    total = len(rows)
    copy_sql = f"COPY {name} ({', '.join(chr(34) + c + chr(34) for c in names)}, geom) FROM STDIN WITH (FORMAT csv)"
    driver = session.connection().connection.driver_connection
    step("loading into staging table", 0, total)
    for start in range(0, total, COPY_CHUNK_ROWS):
        chunk = rows.iloc[start : start + COPY_CHUNK_ROWS]
        out = chunk[names].copy()
        out["geom"] = shapely.to_wkb(
            shapely.set_srid(chunk["geom"].to_numpy(dtype=object), STORAGE_SRID),
            hex=True,
            include_srid=True,
        )
        buffer = _stdio.StringIO()
        out.to_csv(
            buffer,
            header=False,
            index=False,
            quoting=csv.QUOTE_MINIMAL,
            date_format="%Y-%m-%dT%H:%M:%S.%f%z",
        )
        buffer.seek(0)
        copy_in(driver, copy_sql, buffer)
        step("loading into staging table", min(start + COPY_CHUNK_ROWS, total), total)
    session.execute(text(f"ANALYZE {name}"))
    return name


def _insert(
    session: Session, layer: LayerName, staging: str, step: ProgressFn
) -> tuple[int, int | None]:
    """Move staged rows into their table; return (rows loaded, buildings outside every grid)."""
    if layer == "admin-areas":
        loaded = 0
        for level in ("district", "street", "community"):  # parents first, so children find them
            step(f"inserting {level} areas", 0, 0)
            result = session.execute(
                text(
                    f"INSERT INTO admin_area (code, level, name, name_en, parent_id, geom) "
                    f"SELECT t.code, t.level, t.name, t.name_en, p.id, t.geom FROM {staging} t "
                    f"LEFT JOIN admin_area p ON p.code = t.parent_code WHERE t.level = :level ORDER BY t.src_row"
                ),
                {"level": level},
            )
            loaded += result.rowcount  # type: ignore[attr-defined]
        return loaded, None
    if layer == "grids":
        step("inserting grids", 0, 0)
        result = session.execute(
            text(
                f"INSERT INTO grid (code, name, kind, community_id, geom, valid_from) "
                f"SELECT code, name, kind, community_id, geom, valid_from FROM {staging} ORDER BY src_row"
            )
        )
        session.execute(text("ANALYZE grid"))  # buildings are often imported right after grids
        return result.rowcount, None  # type: ignore[attr-defined]
    # The grid of a building is the grid in force containing a point inside its footprint;
    # computed on the staging rows in one set-based UPDATE so each building is written once.
    step("assigning grids by location", 0, 0)
    # Without statistics on freshly loaded grids the planner scans every grid per building
    # (minutes instead of seconds); ANALYZE of ~15,000 grids costs well under a second.
    session.execute(text("ANALYZE grid"))
    session.execute(text(f"ALTER TABLE {staging} ADD COLUMN grid_code varchar(15)"))
    session.execute(
        text(
            f"UPDATE {staging} t SET grid_code = g.code FROM grid g "
            f"WHERE g.valid_to IS NULL AND ST_Contains(g.geom, ST_PointOnSurface(t.geom))"
        )
    )
    step("inserting buildings", 0, 0)
    result = session.execute(
        text(
            f"INSERT INTO building (code, name, address, use, floors, households, grid_code, geom) "
            f"SELECT code, name, address, use, floors, households, grid_code, geom FROM {staging} ORDER BY src_row"
        )
    )
    outside = session.execute(
        text(f"SELECT count(*) FROM {staging} WHERE grid_code IS NULL")
    ).scalar_one()
    return result.rowcount, int(outside)  # type: ignore[attr-defined]


def write_rejects(frame: gpd.GeoDataFrame, rejected: Sequence[Rejection], path: str | Path) -> None:
    """Write the rejected rows, as read (in EPSG:4326), to GeoJSON with `row` and `reason` columns."""
    index = np.array([r.row - 1 for r in rejected], dtype=int)
    out = frame.iloc[index].copy()
    geoms = np.asarray(out.geometry.array, dtype=object)
    unwritable = (
        ~np.isfinite(shapely.bounds(geoms)).all(axis=1)
        & ~shapely.is_missing(geoms)
        & ~shapely.is_empty(geoms)
    )
    geoms[unwritable] = None
    out = out.set_geometry(gpd.GeoSeries(geoms, index=out.index, crs=STORAGE_SRID))
    out["row"] = [r.row for r in rejected]
    out["reason"] = [r.reason for r in rejected]
    try:
        pyogrio.write_dataframe(out, Path(path), driver="GeoJSON")
    except (pyogrio.errors.DataSourceError, OSError) as exc:
        raise InvalidInput(f"cannot write rejected rows to {path}: {_first_line(exc)}") from None


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------

EXPORT_SQL: dict[LayerName, str] = {
    "admin-areas": (
        "SELECT a.code, a.level, a.name, a.name_en, p.code AS parent_code, a.geom FROM admin_area a "
        "LEFT JOIN admin_area p ON p.id = a.parent_id ORDER BY length(a.code), a.code"
    ),
    "grids": (
        "SELECT g.code, g.name, g.kind, c.code AS community_code, g.valid_from, g.valid_to, g.geom "
        "FROM grid g JOIN admin_area c ON c.id = g.community_id WHERE {when} ORDER BY g.code"
    ),
    "buildings": (
        "SELECT b.code, b.name, b.address, b.use, b.floors, b.households, b.grid_code, b.geom "
        "FROM building b ORDER BY b.id"
    ),
}
INTEGER_COLUMNS = ("floors", "households")
GPKG_LAYER_NAMES = {"admin-areas": "admin_areas", "grids": "grids", "buildings": "buildings"}


def export_layer(
    *,
    session_or_connection: Session | Connection,
    layer: LayerName,
    path: str | Path,
    crs: str = "EPSG:4326",
    at: dt.datetime | None = None,
) -> int:
    """Write a layer to a file (format from the extension) and return the features written.

    Grids are those in force now, or at `at` (valid_from <= at < valid_to); a naive `at` is
    local time (NAIVE_TIME_ZONE).
    """
    if layer not in LAYERS:
        raise InvalidInput(
            f"Invalid value for layer: {layer!r}; expected one of {', '.join(LAYERS)}"
        )
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in READ_SUFFIXES:
        raise InvalidInput(
            f"cannot export to {path}: use a file name ending in .geojson, .json, .gpkg, .shp or .zip"
        )
    if at is not None and layer != "grids":
        raise InvalidInput("Invalid value for --at: only grids have versions in time")
    _parse_crs(crs)
    if not path.parent.exists():
        raise InvalidInput(f"cannot export to {path}: folder {path.parent} does not exist")
    conn = (
        session_or_connection.connection()
        if isinstance(session_or_connection, Session)
        else session_or_connection
    )

    conn.execute(text("SET LOCAL statement_timeout = 0"))  # a city's buildings take minutes
    params: dict[str, Any] = {}
    sql = EXPORT_SQL[layer]
    if layer == "grids":
        if at is None:
            sql = sql.format(when="g.valid_to IS NULL")
        else:
            sql = sql.format(when="g.valid_from <= :at AND :at < coalesce(g.valid_to, 'infinity')")
            params["at"] = at if at.tzinfo else at.replace(tzinfo=NAIVE_TIME_ZONE)

    shapefile = suffix in (".shp", ".zip")
    workdir = Path(tempfile.mkdtemp(prefix="gridmap-export-")) if suffix == ".zip" else None
    target = workdir / f"{path.stem.removesuffix('.shp')}.shp" if workdir else path
    written = 0
    try:
        for chunk in _export_chunks(conn, sql, params):
            chunk = _from_storage(chunk, crs)
            if shapefile:
                chunk = _shapefile_frame(chunk)
            _write(chunk, target, layer=layer, append=written > 0)
            written += len(chunk)
        if written == 0:
            empty = _empty_frame(conn, sql, params)
            _write(
                _shapefile_frame(_from_storage(empty, crs))
                if shapefile
                else _from_storage(empty, crs),
                target,
                layer=layer,
                append=False,
            )
        if workdir is not None:
            _zip_shapefile(target, path)
    finally:
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return written


def _export_chunks(
    conn: Connection, sql: str, params: Mapping[str, Any]
) -> Iterator[gpd.GeoDataFrame]:
    chunks = gpd.read_postgis(
        text(sql).execution_options(stream_results=True, max_row_buffer=EXPORT_CHUNK_ROWS),
        conn,
        geom_col="geom",
        params=dict(params),
        crs=STORAGE_SRID,
        chunksize=EXPORT_CHUNK_ROWS,
    )
    for chunk in chunks:
        yield _typed(chunk)


def _empty_frame(conn: Connection, sql: str, params: Mapping[str, Any]) -> gpd.GeoDataFrame:
    frame = gpd.read_postgis(
        text(f"SELECT * FROM ({sql}) q LIMIT 0"),
        conn,
        geom_col="geom",
        params=dict(params),
        crs=STORAGE_SRID,
    )
    return _typed(frame)


def _typed(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    for column in INTEGER_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    for column in ("valid_from", "valid_to"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _shapefile_frame(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Short field names, and date/times as ISO 8601 text (dBASE has dates only)."""
    frame = frame.rename(columns=SHAPEFILE_NAMES)
    for column in frame.columns:
        if isinstance(frame[column].dtype, pd.DatetimeTZDtype):
            frame[column] = (
                frame[column].map(lambda v: v.isoformat() if pd.notna(v) else None).astype("object")
            )
    return frame


def _write(frame: gpd.GeoDataFrame, target: Path, *, layer: LayerName, append: bool) -> None:
    options: dict[str, Any] = {"geometry_type": "MultiPolygon", "append": append}
    suffix = target.suffix.lower()
    if suffix == ".gpkg":
        options["layer"] = GPKG_LAYER_NAMES[layer]
    elif suffix == ".shp":
        options["encoding"] = "UTF-8"
    elif not append and target.exists():
        target.unlink()  # the GeoJSON driver refuses to overwrite
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pyogrio.write_dataframe(frame, target, **options)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError) as exc:
        raise InvalidInput(f"cannot write {target}: {_first_line(exc)}") from None


def _zip_shapefile(shp: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for part in sorted(shp.parent.glob(f"{shp.stem}.*")):
            archive.write(part, arcname=part.name)
