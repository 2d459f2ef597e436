"""Per-grid case counts kept ahead (migration 0016): open, overdue, and reported in the window.

The grids tiles carry these counts for every grid they draw; counting them as a tile renders
costs a query per grid (95 ms for a cold city-district tile). `CaseCountKeeper` keeps them in
`grid_case_count` instead, in each API process, with a row for every grid in force carrying what
else its tile shows (version, name, kind, area, the boundary in Web Mercator: migration 0020),
so a grids tile reads that one table:

* a case notice (``gridmap_incidents``) names its grid: that grid is recounted, in a batch with
  the others heard within `debounce` seconds;
* every `every` seconds, and when grids change (``gridmap_grids``) or the listener reconnects,
  all grids are recounted, since cases turn overdue and leave the window with the clock alone.

A recount writes only the rows that changed and notifies ``gridmap_layers`` with
``grid_case_count:<codes>`` (or without codes when too many changed), so the tile caches drop the
tiles over exactly those grids. Recounts are serialized by an advisory lock: each one's
statement starts after the previous one committed, so the last recount after a change sees it.

`case_count_refresh` records the last full recount. Tiles use the counts only while it is
recent (`FRESH_SECONDS`) and the window asked for is the kept one; otherwise they count as they
render, so the answer is right even where no API process keeps the counts (see tiles.layers).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable

from sqlalchemy import Connection, Engine, text

WINDOW_DAYS = 30  # the default window of the grids tiles
FRESH_SECONDS = 180  # counts older than this (no keeper running) are not used
NOTIFY_PREFIX = "grid_case_count"
MAX_CODES_PER_NOTICE = 64  # more: the caches drop the whole grids layer (cheaper than a tile hunt per grid)
LOCK_KEY = 0x6772_6964_6363  # pg_advisory_xact_lock key of recounts ("gridcc")

log = logging.getLogger("gridmap.casecounts")


def open_sql(alias: str = "i") -> str:
    """A case still open: anything but closed or rejected (the partial indexes use the same test)."""
    return f"{alias}.status NOT IN ('closed', 'rejected')"


def overdue_sql(alias: str = "i") -> str:
    """A case being handled past its deadline."""
    return f"({alias}.status IN ('dispatched', 'in_progress') AND {alias}.deadline_at < now())"


def _recent(alias: str = "i") -> str:
    return f"{alias}.reported_at >= now() - make_interval(days => {WINDOW_DAYS})"


def _recount_sql(some: bool) -> str:
    only = "c.grid_code = ANY(:codes)" if some else "true"
    return f"""
    WITH fresh AS (
      SELECT i.grid_code, count(*) FILTER (WHERE {open_sql()})::int AS open,
             count(*) FILTER (WHERE {overdue_sql()})::int AS overdue, count(*) FILTER (WHERE {_recent()})::int AS cases
      FROM incident i WHERE {"i.grid_code = ANY(:codes)" if some else "i.grid_code IS NOT NULL"} AND ({open_sql()} OR {_recent()})
      GROUP BY i.grid_code
    )
    UPDATE grid_case_count c SET open = coalesce(f.open, 0), overdue = coalesce(f.overdue, 0), cases = coalesce(f.cases, 0)
    FROM grid_case_count c0 LEFT JOIN fresh f ON f.grid_code = c0.grid_code
    WHERE c.grid_code = c0.grid_code AND {only.replace("c.", "c0.")}
      AND (c.open, c.overdue, c.cases) IS DISTINCT FROM (coalesce(f.open, 0), coalesce(f.overdue, 0), coalesce(f.cases, 0))
    RETURNING c.grid_code"""


# a row per grid in force with what its tile shows (0020): rows of grids no longer in force go,
# redrawn or renamed grids are written again, new grids get a row (counted just after)
SYNC_SQL = text("""
    WITH g AS (SELECT id, code, name, kind, area_m2 / 1e6 AS area_km2, geom FROM grid WHERE valid_to IS NULL),
    gone AS (DELETE FROM grid_case_count c WHERE NOT EXISTS (SELECT FROM g WHERE g.code = c.grid_code) RETURNING c.grid_code),
    redrawn AS (UPDATE grid_case_count c SET grid_id = g.id, name = g.name, kind = g.kind, area_km2 = g.area_km2,
                  geom_m = ST_Transform(g.geom, 3857)
                FROM g WHERE g.code = c.grid_code AND (c.grid_id, c.name, c.kind) IS DISTINCT FROM (g.id, g.name, g.kind)
                RETURNING c.grid_code),
    added AS (INSERT INTO grid_case_count (grid_code, grid_id, name, kind, area_km2, geom_m, open, overdue, cases)
              SELECT g.code, g.id, g.name, g.kind, g.area_km2, ST_Transform(g.geom, 3857), 0, 0, 0 FROM g
              WHERE NOT EXISTS (SELECT FROM grid_case_count c WHERE c.grid_code = g.code) RETURNING grid_code)
    SELECT grid_code FROM gone UNION ALL SELECT grid_code FROM redrawn UNION ALL SELECT grid_code FROM added""")


RECOUNT_ALL = text(_recount_sql(some=False))
RECOUNT_SOME = text(_recount_sql(some=True))
MARK_FULL = text(f"""INSERT INTO case_count_refresh (id, window_days, refreshed_at) VALUES (true, {WINDOW_DAYS}, now())
                     ON CONFLICT (id) DO UPDATE SET window_days = excluded.window_days, refreshed_at = excluded.refreshed_at""")  # fmt: skip
# used by the tiles: are the kept counts current? (a one-row read, evaluated once per tile)
FRESH_SQL = (f"coalesce((SELECT r.refreshed_at > now() - make_interval(secs => {FRESH_SECONDS}) "
             f"AND r.window_days = {WINDOW_DAYS} FROM case_count_refresh r), false)")  # fmt: skip


def recount(conn: Connection, codes: Iterable[str] | None = None) -> list[str]:
    """Recount the given grids (all grids when None, after bringing the rows in line with the
    grids in force) in the caller's transaction; notify the change at its commit. Returns the
    codes whose counts or rows changed."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})
    if codes is None:
        changed = list(conn.execute(SYNC_SQL).scalars())
        changed += [c for c in conn.execute(RECOUNT_ALL).scalars() if c not in set(changed)]
        conn.execute(MARK_FULL)
    else:
        wanted = sorted(set(codes))
        changed = list(conn.execute(RECOUNT_SOME, {"codes": wanted}).scalars()) if wanted else []
    if changed:
        payload = NOTIFY_PREFIX if len(changed) > MAX_CODES_PER_NOTICE else f"{NOTIFY_PREFIX}:{','.join(sorted(changed))}"
        conn.execute(text("SELECT pg_notify('gridmap_layers', :p)"), {"p": payload})
    return changed


def changed_codes(payload: str) -> list[str] | None:
    """The grid codes of a ``grid_case_count`` notice; None for "all of them"; [] if not one."""
    if payload == NOTIFY_PREFIX:
        return None
    if payload.startswith(NOTIFY_PREFIX + ":"):
        return [c for c in payload[len(NOTIFY_PREFIX) + 1:].split(",") if c]
    return []


class CaseCountKeeper:
    """A thread that keeps `grid_case_count` current; a GridIndexHolder subscriber."""

    def __init__(self, engine: Engine, *, every: float = 60.0, debounce: float = 0.05) -> None:
        self.engine = engine
        self.every = every
        self.debounce = debounce
        self.recounts = 0
        self._codes: set[str] = set()
        self._full = True  # the first round counts everything
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._wake.set()
        self._thread = threading.Thread(target=self._run, name="gridmap-case-counts", daemon=True)
        self._thread.start()

    def notice(self, notices: list[tuple[str, str | None]]) -> None:
        with self._lock:
            for channel, payload in notices:
                if payload is None or channel == "gridmap_grids":  # reconnected, or grids redrawn
                    self._full = True
                elif channel == "gridmap_incidents":
                    try:
                        code = json.loads(payload).get("grid_code")
                    except (ValueError, AttributeError):
                        self._full = True
                        continue
                    if code:
                        self._codes.add(str(code))
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self.every)
            if self._stop.is_set():
                return
            if woke:
                self._stop.wait(self.debounce)  # gather a burst into one recount
            self._wake.clear()
            with self._lock:
                full, codes = self._full or not woke, self._codes
                self._full, self._codes = False, set()
            if not full and not codes:
                continue
            try:
                with self.engine.begin() as conn:
                    recount(conn, None if full else codes)
                self.recounts += 1
            except Exception as exc:  # the database went away: the tiles count as they render meanwhile
                log.warning("case counts not kept: %s", str(exc).splitlines()[0] if str(exc) else exc)
                with self._lock:
                    self._full = True
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
