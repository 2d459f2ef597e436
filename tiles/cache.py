"""A per-process cache of encoded tiles, dropped tile by tile when the data under them changes.

Keys are (layer, z, x, y, the request's options, the caller's reach). A change notice drops
what it touches (`TileCache.notice`):

* a case (``gridmap_incidents``, with its place): the tile under it at every cached zoom in
  the incident layers;
* recounted grids (``gridmap_layers`` with ``grid_case_count:<codes>``, from
  `gridmap.services.casecounts`): in the grids layer every tile over those grids' bounding boxes;
* grids in force (``gridmap_grids``): the grids layer;
* another layer's table (``gridmap_layers``, migration 0013): that layer;
* a reconnect of the listener (anything may have been missed): everything.

Entries also expire after their layer's `ttl`, since some properties move with the clock alone
(a case becomes overdue, leaves the "recent" window). The cache holds at most `max_bytes`,
dropping the least recently used first.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import mercantile

from gridmap.services import casecounts
from tiles.layers import BUFFER, EXTENT, INCIDENT_LAYERS, TABLE_LAYERS

TileId = tuple[str, int, int, int]  # layer, z, x, y
Bounds = tuple[float, float, float, float]


@dataclass
class Entry:
    data: bytes
    etag: str
    expires: float
    tile: TileId


class TileCache:
    def __init__(self, max_bytes: int, grid_bounds: Callable[[str], Bounds | None] | None = None) -> None:
        self.max_bytes = max_bytes
        self.grid_bounds = grid_bounds  # a grid code's lon/lat bounds (from the in-memory grid index)
        self.size = 0
        self.hits = self.misses = self.dropped = 0
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._by_tile: dict[TileId, set[Hashable]] = {}
        self._zooms: dict[str, set[int]] = {}
        self._generation: dict[str, int] = {}  # per layer, raised by every drop
        self._lock = threading.Lock()

    def generation(self, layer: str) -> int:
        """Read before rendering, passed to `put`: a tile rendered while a change to its layer
        came in is not cached (it may predate the change)."""
        return self._generation.get(layer, 0)

    # -- reading and writing -------------------------------------------------------------
    def get(self, key: Hashable) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.expires < time.monotonic():
                if entry is not None:
                    self._remove(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, tile: TileId, data: bytes, etag: str, ttl: float, generation: int) -> None:
        with self._lock:
            if self._generation.get(tile[0], 0) != generation:
                return
            if key in self._entries:
                self._remove(key)
            self._entries[key] = Entry(data, etag, time.monotonic() + ttl, tile)
            self._by_tile.setdefault(tile, set()).add(key)
            self._zooms.setdefault(tile[0], set()).add(tile[1])
            self.size += len(data)
            while self.size > self.max_bytes and self._entries:
                self._remove(next(iter(self._entries)))

    def _remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self.size -= len(entry.data)
        keys = self._by_tile.get(entry.tile)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_tile[entry.tile]

    # -- dropping what changed -----------------------------------------------------------
    def _bump(self, layer: str) -> None:
        self._generation[layer] = self._generation.get(layer, 0) + 1

    def _drop_tile(self, tile: TileId) -> None:
        for key in list(self._by_tile.get(tile, ())):
            self._remove(key)
            self.dropped += 1

    def drop_layer(self, layer: str) -> None:
        with self._lock:
            self._bump(layer)
            for tile in [t for t in self._by_tile if t[0] == layer]:
                self._drop_tile(tile)

    def drop_point(self, layers: tuple[str, ...], lon: float, lat: float) -> None:
        """The tiles under a point (and those whose buffer reaches it), at every zoom cached."""
        with self._lock:
            for layer in layers:
                self._drop_in(layer, (lon, lat, lon, lat))

    def drop_bounds(self, layer: str, bounds: Bounds) -> None:
        """Every cached tile of `layer` that overlaps lon/lat `bounds` (with the tile buffer)."""
        with self._lock:
            self._drop_in(layer, bounds)

    def _drop_in(self, layer: str, bounds: Bounds) -> None:
        self._bump(layer)
        west, south, east, north = bounds
        for z in tuple(self._zooms.get(layer, ())):
            pad = 360.0 / (1 << z) * (BUFFER / EXTENT) * 2  # the buffer, with room for the latitude's stretch
            ul = mercantile.tile(max(west - pad, -180.0), min(north + pad, 85.0), z)
            lr = mercantile.tile(min(east + pad, 179.999999), max(south - pad, -85.0), z)
            for tile in [t for t in self._by_tile if t[0] == layer and t[1] == z
                         and ul.x <= t[2] <= lr.x and ul.y <= t[3] <= lr.y]:  # fmt: skip
                self._drop_tile(tile)

    def clear(self) -> None:
        with self._lock:
            for layer in set(self._zooms) | set(self._generation):
                self._bump(layer)
            self._entries.clear()
            self._by_tile.clear()
            self.size = 0

    def _counts_changed(self, codes: list[str] | None) -> None:
        """The kept case counts of these grids changed (None: of many): the grids tiles over them."""
        bounds = [self.grid_bounds(code) for code in codes] if codes is not None and self.grid_bounds else [None]
        if any(b is None for b in bounds):
            self.drop_layer("grids")
            return
        with self._lock:
            for b in bounds:
                self._drop_in("grids", b)

    def notice(self, notices: list[tuple[str, str | None]]) -> None:
        """React to a burst of PostgreSQL notifications (a GridIndexHolder subscriber)."""
        for channel, payload in notices:
            if payload is None:  # the listener reconnected: anything may have changed
                self.clear()
                return
            if channel == "gridmap_incidents":
                try:
                    case = json.loads(payload)
                    lon, lat = float(case["lon"]), float(case["lat"])
                except (ValueError, KeyError, TypeError):
                    for layer in INCIDENT_LAYERS:
                        self.drop_layer(layer)
                    continue
                self.drop_point(INCIDENT_LAYERS, lon, lat)
            elif channel == "gridmap_layers" and payload.startswith(casecounts.NOTIFY_PREFIX):
                self._counts_changed(casecounts.changed_codes(payload))
            elif channel == "gridmap_grids":
                self.drop_layer("grids")
            elif channel == "gridmap_layers" and payload in TABLE_LAYERS:
                self.drop_layer(TABLE_LAYERS[payload])
