"""Which grid is responsible for a point, now or at a moment.

Rule for points on a shared edge or vertex: the point belongs to the grid with the lowest code
among the grids whose closed polygon covers it; the others are reported as neighbours.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

# grid versions in force at :at, covering the point (boundary included), lowest code first
GRID_AT_SQL = text(
    """
    SELECT g.id, g.code FROM grid g
    WHERE ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326))
      AND g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)
    ORDER BY g.code LIMIT 1
    """
)


@dataclass(frozen=True)
class GridRef:
    id: int  # the grid version
    code: str


def grid_at(session: Session, *, lon: float, lat: float, at: dt.datetime | None = None) -> GridRef | None:
    """The grid version responsible for a WGS84 point at `at` (default now), exactly, from the database."""
    when = at or dt.datetime.now(dt.UTC)
    row = session.execute(GRID_AT_SQL, {"lon": lon, "lat": lat, "at": when}).first()
    return GridRef(int(row[0]), str(row[1])) if row else None
