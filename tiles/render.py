"""Rendering a tile and describing a layer (TileJSON); the router in tiles.router is HTTP only."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Engine, text

from gridmap import __version__
from gridmap.access import Scope, scope_filter
from gridmap.errors import Forbidden, GridmapError, NotFound
from tiles.layers import LAYERS, MAX_ZOOM, Layer, cell_m, pixel_m, statement

MAX_DAYS = 366
CHINA = (73.5, 18.0, 135.1, 53.6)  # bounds when no grid is loaded


def layer_named(name: str) -> Layer:
    layer = LAYERS.get(name)
    if layer is None:
        raise NotFound(f"No tile layer {name[:40]!r}; the layers are {', '.join(LAYERS)}")
    return layer


def _number(name: str, value: str, hi: int) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 8 and int(value) <= hi):
        raise GridmapError(f"Invalid tile coordinate {name}={value[:12]!r}: a whole number from 0 to {hi:,}")
    return int(value)


def tile_xyz(z: str, x: str, y: str) -> tuple[int, int, int]:
    """The tile's zoom, column and row, checked (400 problem otherwise)."""
    zi = _number("z", z, MAX_ZOOM)
    top = (1 << zi) - 1
    return zi, _number("x", x, top), _number("y", y, top)


def window(layer: Layer, days: str | None) -> int | None:
    """The layer's history window in days: the `days` parameter, or the layer's default."""
    if layer.days is None:
        return None
    if days is None:
        return layer.days
    if not (days.isascii() and days.isdigit() and 1 <= int(days) <= MAX_DAYS):
        raise GridmapError(f"Invalid value for parameter days: a whole number from 1 to {MAX_DAYS}")
    return int(days)


def check_reach(layer: Layer, scope: Scope) -> None:
    if layer.scope_alias is None and not scope.all_grids:
        raise Forbidden(f"The {layer.en} layer is for city-wide roles: its features cannot be cut to your grids")


def scope_key(scope: Scope) -> str:
    """The part of a cache key that tells callers of different reach apart."""
    if scope.all_grids:
        return "all"
    if scope.area:
        return f"area:{scope.area}"
    return "grids:" + hashlib.blake2b(",".join(scope.grids).encode(), digest_size=12).hexdigest()


def render(engine: Engine, layer: Layer, z: int, x: int, y: int, days: int | None, scope: Scope) -> bytes:
    """The tile's bytes (empty when it has no features)."""
    term, params = scope_filter(layer.scope_alias, scope, layer.scope_column) if layer.scope_alias else ("true", {})
    params |= {"z": z, "x": x, "y": y, "px": pixel_m(z), "cell": cell_m(z), "limit": layer.limit, "days": days or 0}
    with engine.connect() as conn:
        if layer.serial:
            conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        data = conn.execute(text(statement(layer, term, z)), params).scalar()
    return bytes(data or b"")


def etag(data: bytes) -> str:
    return '"' + hashlib.blake2b(data, digest_size=10).hexdigest() + '"'


def tilejson(layer: Layer, base_url: str, bounds: tuple[float, float, float, float] | None,
             days: int | None) -> dict[str, Any]:  # fmt: skip
    """TileJSON 3.0.0 for one layer."""
    west, south, east, north = bounds or CHINA
    query = f"?days={days}" if days is not None and days != layer.days else ""
    return {
        "tilejson": "3.0.0",
        "name": f"gridmap {layer.name}",
        "description": f"{layer.zh} · {layer.en}",
        "version": __version__,
        "attribution": "gridmap",
        "scheme": "xyz",
        "tiles": [f"{base_url.rstrip('/')}/tiles/{layer.name}/{{z}}/{{x}}/{{y}}.mvt{query}"],
        "minzoom": layer.minzoom,
        "maxzoom": layer.maxzoom,
        "bounds": [round(west, 6), round(south, 6), round(east, 6), round(north, 6)],
        "center": [round((west + east) / 2, 6), round((south + north) / 2, 6), max(layer.minzoom, 11)],
        "vector_layers": [{"id": layer.name, "description": f"{layer.zh} · {layer.en}", "minzoom": layer.minzoom,
                           "maxzoom": layer.maxzoom, "fields": layer.fields}],
        "gridmap": {"geometry": layer.geometry, "feature_limit": layer.limit or None, "cache_ttl_s": layer.ttl,
                    "days": days, "city_wide_only": layer.scope_alias is None, "notes": layer.notes},
    }  # fmt: skip
