"""Which grid — and who — is responsible for a point, now or at a moment.

Two paths, one answer shape:

* **now**: an in-memory index of the grids in force (a shapely STRtree over polygons in a local
  metric frame), versioned and reloaded when PostgreSQL NOTIFYs a change to ``grid`` or
  ``staff`` (see ``GridIndexHolder``). No database round trip per request.
* **at a moment** (``at=``): always answered exactly from the database, with the grid versions
  whose ``valid_from <= at < valid_to``.

Rule for points on a shared edge or vertex: the point belongs to the grid with the **lowest
code** among the grids whose closed polygon covers it; the others are listed as neighbours.
Distances are metres in a local equirectangular frame centred on the deployment (error under
1 % within a degree of the centre), computed identically on both paths.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gridmap.errors import NotFound

log = logging.getLogger("gridmap.locate")
NEAR_M = 30.0  # default distance within which a neighbouring grid is reported
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQ = 111_320.0

def covering_grid_sql(point: str, at: str) -> str:
    """SELECT id, code of the grid version responsible for `point` at `at` (SQL expressions).

    The rule of this module in SQL: among the grid versions in force at `at` whose closed
    polygon covers the point, the one with the lowest code. Reporting uses it as a LATERAL
    subquery so that a whole batch is looked up in one statement.
    """
    return f"""
    SELECT g.id, g.code FROM grid g
    WHERE ST_Covers(g.geom, {point})
      AND g.valid_from <= {at} AND (g.valid_to IS NULL OR g.valid_to > {at})
    ORDER BY g.code LIMIT 1
    """


GRIDS_SQL = """
SELECT g.id, g.code, g.name, g.kind, g.valid_from, c.code, c.name, s.code, s.name, d.code, d.name,
       ST_AsBinary(g.geom)
FROM grid g
JOIN admin_area c ON c.id = g.community_id
JOIN admin_area s ON s.id = c.parent_id
JOIN admin_area d ON d.id = s.parent_id
WHERE {where}
"""

STAFF_SQL = text(
    """
    SELECT sc.code, st.id, st.name, st.role, st.duty_status, st.phone
    FROM staff st JOIN staff_scope sc ON sc.staff_id = st.id
    WHERE st.active AND (
      (st.role = 'grid_worker' AND sc.level = 'grid') OR
      (st.role = 'grid_leader' AND sc.level IN ('grid', 'community')))
    ORDER BY st.role DESC, st.id
    """
)


@dataclass(frozen=True)
class Frame:
    """A local equirectangular frame: metres east and north of lon/lat 0, scaled at `lat0`."""

    lat0: float

    @property
    def kx(self) -> float:
        return M_PER_DEG_LON_EQ * math.cos(math.radians(self.lat0))

    def xy(self, lon: Any, lat: Any) -> tuple[Any, Any]:
        return np.asarray(lon) * self.kx, np.asarray(lat) * M_PER_DEG_LAT

    def geoms(self, geoms: np.ndarray) -> np.ndarray:
        kx = self.kx
        return shapely.transform(geoms, lambda c: c * np.array([kx, M_PER_DEG_LAT]))


@dataclass
class GridTable:
    """Grid versions with their hierarchy and polygons in a metric frame."""

    frame: Frame
    ids: np.ndarray
    codes: np.ndarray
    names: np.ndarray
    kinds: np.ndarray
    valid_from: list[dt.datetime]
    hierarchy: np.ndarray  # (n, 6): community code, name, street code, name, district code, name
    geoms: np.ndarray
    boundaries: np.ndarray
    tree: shapely.STRtree = field(init=False)
    rank: np.ndarray = field(init=False)  # position of each grid in code order: the tie-break
    extent: tuple[float, float, float, float] | None = field(init=False)  # lon/lat bounds, computed once
    _by_code: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tree = shapely.STRtree(self.geoms)
        if len(self.geoms):
            minx, miny, maxx, maxy = shapely.total_bounds(self.geoms)
            self.extent = (minx / self.frame.kx, miny / M_PER_DEG_LAT, maxx / self.frame.kx, maxy / M_PER_DEG_LAT)
        else:
            self.extent = None
        self._by_code = {str(code): k for k, code in enumerate(self.codes.tolist())}
        order = np.argsort(self.codes, kind="stable")
        self.rank = np.empty(len(order), dtype=np.int64)
        self.rank[order] = np.arange(len(order))
        shapely.prepare(self.geoms)

    @classmethod
    def from_rows(cls, rows: list[Any], frame: Frame | None = None) -> GridTable:
        geoms = shapely.from_wkb([bytes(r[11]) for r in rows]) if rows else np.empty(0, dtype=object)
        if frame is None:
            lat0 = float(np.mean(shapely.bounds(geoms)[:, [1, 3]])) if len(geoms) else 30.0
            frame = Frame(round(lat0, 3))
        metric = frame.geoms(np.asarray(geoms, dtype=object))
        return cls(
            frame=frame,
            ids=np.array([r[0] for r in rows], dtype=np.int64),
            codes=np.array([r[1] for r in rows], dtype=object),
            names=np.array([r[2] for r in rows], dtype=object),
            kinds=np.array([r[3] for r in rows], dtype=object),
            valid_from=[r[4] for r in rows],
            hierarchy=np.array([r[5:11] for r in rows], dtype=object).reshape(-1, 6),
            geoms=metric,
            boundaries=shapely.boundary(metric),
        )

    def lonlat_extent(self) -> tuple[float, float, float, float] | None:
        return self.extent

    def lonlat_bounds(self, code: str) -> tuple[float, float, float, float] | None:
        """The lon/lat bounds of the grid in force with this code (None if there is none)."""
        index = self._by_code.get(code)
        if index is None:
            return None
        minx, miny, maxx, maxy = shapely.bounds(self.geoms[index])
        return minx / self.frame.kx, miny / M_PER_DEG_LAT, maxx / self.frame.kx, maxy / M_PER_DEG_LAT

    # -- single point --------------------------------------------------------------------
    def locate(self, lon: float, lat: float, near_m: float = NEAR_M) -> dict[str, Any]:
        pt = shapely.Point(lon * self.frame.kx, lat * M_PER_DEG_LAT)
        hits = self.tree.query(pt, predicate="intersects")
        if len(hits) == 0:
            raise self._outside(pt, lon, lat)
        k = int(hits[np.argmin(self.rank[hits])])
        to_boundary = float(shapely.distance(self.boundaries[k], pt))
        neighbours: list[tuple[str, str, float]] = []
        # grids do not overlap, so no other grid is nearer than the point's own boundary: only a
        # point within near_m of it (or covered twice, on an edge) needs the neighbour search
        if to_boundary <= near_m or len(hits) > 1:
            near = self.tree.query(pt, predicate="dwithin", distance=near_m)
            others = near[near != k]
            dists = shapely.distance(self.geoms[others], pt).tolist() if len(others) else []
            neighbours = sorted(((self.codes[n], self.names[n], d) for n, d in zip(others.tolist(), dists, strict=True)),
                                key=lambda t: (t[2], t[0]))  # fmt: skip
        return self._answer(k, to_boundary, near_m, neighbours)

    def _outside(self, pt: shapely.Point, lon: float, lat: float) -> NotFound:
        if not len(self.geoms):
            return NotFound("No grids are in force: load or import grids first")
        idx, dist = self.tree.query_nearest(pt, return_distance=True, all_matches=False)
        n = int(idx[0])
        d = float(dist[0])
        return NotFound(
            f"Point (lon={lon}, lat={lat}) lies outside every grid in force; the nearest grid is "
            f"{self.codes[n]} ({self.names[n]}), {d:.0f} m away",
            nearest={"code": self.codes[n], "name": self.names[n], "distance_m": round(d, 1)},
        )

    def _answer(self, k: int, to_boundary: float, near_m: float, neighbours: list[tuple[str, str, float]]) -> dict[str, Any]:
        h = self.hierarchy[k]
        return {
            "grid": {"code": self.codes[k], "name": self.names[k], "kind": self.kinds[k], "version": int(self.ids[k]),
                     "valid_from": self.valid_from[k].isoformat()},
            "community": {"code": h[0], "name": h[1]},
            "street": {"code": h[2], "name": h[3]},
            "district": {"code": h[4], "name": h[5]},
            "distance_to_boundary_m": round(to_boundary, 1),
            "near_boundary": bool(neighbours),
            "near_distance_m": near_m,
            "neighbours": [{"code": c, "name": nm, "distance_m": round(d, 1)} for c, nm, d in neighbours],
        }  # fmt: skip

    # -- many points ---------------------------------------------------------------------
    def locate_many(self, lon: np.ndarray, lat: np.ndarray, threads: int = 2) -> tuple[np.ndarray, np.ndarray]:
        """Index of the responsible grid per point (-1 outside) and distance to its boundary (m).

        Big batches are split over `threads`: shapely releases the GIL inside GEOS.
        """
        n = len(lon)
        if n >= 20_000 and threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            bounds = np.linspace(0, n, threads + 1).astype(int)
            with ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(lambda ab: self._locate_many(lon[ab[0]:ab[1]], lat[ab[0]:ab[1]]), zip(bounds[:-1], bounds[1:], strict=True)))
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        return self._locate_many(lon, lat)

    def _locate_many(self, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.frame.xy(lon, lat)
        pts = shapely.points(x, y)
        result = np.full(len(pts), -1, dtype=np.int64)
        dist = np.full(len(pts), np.nan)
        if not len(pts) or not len(self.geoms):
            return result, dist
        pi, gi = self.tree.query(pts, predicate="intersects")
        if len(pi):
            order = np.lexsort((self.rank[gi], pi))  # per point, lowest code first
            pi, gi = pi[order], gi[order]
            first = np.r_[True, pi[1:] != pi[:-1]]
            result[pi[first]] = gi[first]
            inside = result >= 0
            dist[inside] = shapely.distance(self.boundaries[result[inside]], pts[inside])
        return result, dist


class GridIndexHolder:
    """The per-process index of grids in force and their staff, kept fresh by LISTEN/NOTIFY.

    A change to ``grid``, ``staff`` or ``staff_scope`` commits → PostgreSQL notifies → the
    listener thread reloads and swaps the index atomically. Requests read ``self.current``
    (one reference), so they never see a half-built index. A slow poll (``verify_every``
    seconds) compares a fingerprint in case a notification was lost while reconnecting.

    The process has this one listening connection, so others hear it too: `subscribers` are
    called with each burst of notifications as (channel, payload) pairs — ``gridmap_auth``
    (account and key changes, migration 0011), ``gridmap_incidents`` (every case change, with
    its place) and ``gridmap_layers`` (map layers, migration 0013) included — and with
    (channel, None) for every channel after a reconnect, when anything may have been missed.
    """

    CHANNELS = ("gridmap_grids", "gridmap_staff", "gridmap_auth", "gridmap_incidents", "gridmap_layers")
    INDEX_CHANNELS = frozenset({"gridmap_grids", "gridmap_staff"})

    def __init__(self, engine: Engine, *, listen: bool = True, verify_every: float = 30.0) -> None:
        self.engine = engine
        self.version = 0
        self.loaded_at = 0.0
        self.table: GridTable
        self.staff: dict[str, list[dict[str, Any]]] = {}
        self.fingerprint: tuple | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.verify_every = verify_every
        self.subscribers: list[Callable[[list[tuple[str, str | None]]], None]] = []
        self.reload()
        if listen:
            self._thread = threading.Thread(target=self._listen, name="gridmap-grid-listener", daemon=True)
            self._thread.start()

    def reload(self) -> None:
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(text(GRIDS_SQL.format(where="g.valid_to IS NULL"))).all()
            staff_rows = conn.execute(STAFF_SQL).all()
            fingerprint = self._fingerprint(conn)
        table = GridTable.from_rows(rows)
        staff: dict[str, list[dict[str, Any]]] = {}
        for code, sid, name, role, duty, phone in staff_rows:
            staff.setdefault(code, []).append({"id": sid, "name": name, "role": role, "duty_status": duty, "phone": phone})
        self.table, self.staff, self.fingerprint = table, staff, fingerprint
        self.version += 1
        self.loaded_at = time.time()
        log.info("grid index v%d: %d grids in force", self.version, len(rows))

    @staticmethod
    def _fingerprint(conn: Any) -> tuple:
        return tuple(conn.execute(text(
            "SELECT (SELECT count(*) FROM grid WHERE valid_to IS NULL), (SELECT max(id) FROM grid), "
            "(SELECT count(*) FROM grid WHERE valid_to IS NOT NULL), (SELECT max(id) FROM staff), "
            "(SELECT count(*) FROM staff WHERE duty_status = 'on_duty')"
        )).one())  # fmt: skip

    def _listen(self) -> None:
        import psycopg

        url = self.engine.url
        while not self._stop.is_set():
            try:
                with psycopg.connect(host=url.host, port=url.port, user=url.username, password=url.password,
                                     dbname=url.database, autocommit=True, connect_timeout=5) as conn:  # fmt: skip
                    for channel in self.CHANNELS:
                        conn.execute(f"LISTEN {channel}")
                    self._check_fingerprint()  # changes made while we were not listening
                    self._tell([(channel, None) for channel in self.CHANNELS])
                    last_verify = time.monotonic()
                    while not self._stop.is_set():
                        heard = [(n.channel, n.payload) for n in conn.notifies(timeout=0.5, stop_after=1)]  # the first one
                        if heard:
                            heard += [(n.channel, n.payload) for n in conn.notifies(timeout=0.02)]  # one reload per burst
                            if {channel for channel, _ in heard} & self.INDEX_CHANNELS:
                                self.reload()
                            self._tell(heard)
                        elif time.monotonic() - last_verify > self.verify_every:
                            self._check_fingerprint()
                            last_verify = time.monotonic()
            except Exception as exc:  # keep serving the last index; reconnect
                log.warning("grid index listener: %s; reconnecting", str(exc).splitlines()[0] if str(exc) else exc)
                self._stop.wait(1.0)

    def _tell(self, notices: list[tuple[str, str | None]]) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(notices)
            except Exception:  # one subscriber's bug must not stop the index or the others
                log.exception("a subscriber of %s failed", sorted({c for c, _ in notices}))

    def _check_fingerprint(self) -> None:
        with self.engine.connect() as conn:
            fp = self._fingerprint(conn)
        if fp != self.fingerprint:
            self.reload()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    # -- answers -------------------------------------------------------------------------
    def locate(self, lon: float, lat: float, near_m: float = NEAR_M) -> dict[str, Any]:
        table = self.table  # one read: a reload swaps the reference, never mutates it
        answer = table.locate(lon, lat, near_m)
        answer["staff"] = self.responsible_staff(answer["grid"]["code"])
        answer["index_version"] = self.version
        return answer

    def responsible_staff(self, grid_code: str) -> dict[str, list[dict[str, Any]]]:
        people = self.staff.get(grid_code, []) + self.staff.get(grid_code[:12], [])
        return {
            "grid_workers_on_duty": [p for p in people if p["role"] == "grid_worker" and p["duty_status"] == "on_duty"],
            "grid_workers_off_duty": [p for p in people if p["role"] == "grid_worker" and p["duty_status"] != "on_duty"],
            "grid_leaders": [p for p in people if p["role"] == "grid_leader"],
        }


def locate_at(session: Session, *, lon: float, lat: float, at: dt.datetime, frame: Frame,
              near_m: float = NEAR_M) -> dict[str, Any]:  # fmt: skip
    """The exact answer for the grids in force at `at`, from the database."""
    x, y = frame.xy(lon, lat)
    span_lon = near_m / frame.kx * 1.5
    span_lat = near_m / M_PER_DEG_LAT * 1.5
    rows = session.execute(
        text(GRIDS_SQL.format(where="g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at) "
                              "AND g.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326)")),
        {"at": at, "x0": lon - span_lon, "y0": lat - span_lat, "x1": lon + span_lon, "y1": lat + span_lat},
    ).all()  # fmt: skip
    table = GridTable.from_rows(rows, frame)
    if not rows or len(table.tree.query(shapely.Point(float(x), float(y)), predicate="intersects")) == 0:
        nearest = session.execute(
            text(GRIDS_SQL.format(where="g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)")
                 + " ORDER BY g.geom <-> ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) LIMIT 1"),
            {"at": at, "lon": lon, "lat": lat},
        ).all()  # fmt: skip
        if not nearest:
            raise NotFound(f"No grids were in force at {at.isoformat()}")
        raise GridTable.from_rows(nearest, frame)._outside(shapely.Point(float(x), float(y)), lon, lat)
    return table.locate(lon, lat, near_m) | {"at": at.isoformat()}


def grids_in_force_at(session: Session, *, at: dt.datetime, frame: Frame) -> GridTable:
    """All grid versions in force at `at`, as a table for batch answers."""
    rows = session.execute(
        text(GRIDS_SQL.format(where="g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)")), {"at": at}
    ).all()
    return GridTable.from_rows(rows, frame)
