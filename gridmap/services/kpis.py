"""Case KPIs (考核指标) per grid, community, street or staff member, in one set-based query.

Cases count where they were reported: by the grid version responsible at report time
(``incident.grid_id`` / ``grid_code``), never by today's boundaries, so a redraw does not move
history from one grid's figures to another's.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.access import Scope, scope_filter
from gridmap.errors import InvalidInput

DEFAULT_PERIOD = dt.timedelta(days=30)
KPI_LEVELS = ("grid", "community", "street", "staff")

# group key and the join that names it, per level (identifiers from this whitelist only)
GROUPS: dict[str, tuple[str, str, str]] = {
    "grid": (
        "i.grid_id",
        "JOIN grid g ON g.id = k.key",
        "g.code AS code, g.name AS name, k.key AS grid_version, g.valid_from, g.valid_to",
    ),
    "community": (
        "left(i.grid_code, 12)",
        "LEFT JOIN admin_area a ON a.code = k.key",
        "k.key AS code, a.name AS name",
    ),
    "street": (
        "left(i.grid_code, 9)",
        "LEFT JOIN admin_area a ON a.code = k.key",
        "k.key AS code, a.name AS name",
    ),
    "staff": (
        "i.assignee_id",
        "JOIN staff s ON s.id = k.key",
        "k.key AS staff_id, s.name AS name, s.role",
    ),
}

KPI_SQL = """
WITH k AS (
  SELECT {key} AS key,
    count(*) AS reported,
    count(*) FILTER (WHERE i.status = 'rejected') AS rejected,
    count(*) FILTER (WHERE i.status <> 'rejected') AS cases,
    count(*) FILTER (WHERE i.status = 'closed') AS closed,
    count(*) FILTER (WHERE i.status = 'closed' AND i.resolved_at <= i.deadline_at) AS closed_on_time,
    count(*) FILTER (WHERE i.status <> 'rejected' AND i.rework_count > 0) AS reworked,
    count(*) FILTER (WHERE i.status <> 'rejected' AND i.escalation_count > 0) AS escalated,
    count(*) FILTER (WHERE i.status IN ('dispatched', 'in_progress') AND i.deadline_at < :now) AS overdue_open,
    avg(extract(epoch FROM i.closed_at - i.reported_at) / 3600.0)
      FILTER (WHERE i.status = 'closed') AS avg_handling_hours
  FROM incident i
  WHERE i.reported_at >= :reported_from AND i.reported_at < :reported_to
    AND {key} IS NOT NULL {area}
  GROUP BY 1
)
SELECT {label}, k.reported, k.rejected, k.cases, k.closed, k.closed_on_time, k.reworked,
  k.escalated, k.overdue_open,
  round(k.closed::numeric / nullif(k.cases, 0), 4)::float AS closure_rate,
  round(k.closed_on_time::numeric / nullif(k.cases, 0), 4)::float AS on_time_closure_rate,
  round(k.reworked::numeric / nullif(k.cases, 0), 4)::float AS rework_rate,
  round(k.avg_handling_hours::numeric, 2)::float AS avg_handling_hours
FROM k {join}
ORDER BY k.key
"""

DEFINITIONS = {
    "reported": "incidents reported in the period (上报数)",
    "rejected": "of those, rejected at registration (不予立案)",
    "cases": "reported minus rejected: the cases (立案数) every rate divides by",
    "closed": "cases closed (结案数)",
    "closure_rate": "closed / cases (结案率)",
    "closed_on_time": "closed cases whose (last) resolution came by the deadline (按期结案数)",
    "on_time_closure_rate": "closed_on_time / cases (按期结案率)",
    "avg_handling_hours": "mean of closed_at − reported_at over closed cases, calendar hours (平均处置时长)",
    "reworked": "cases reopened at least once (返工)",
    "rework_rate": "reworked / cases (返工率)",
    "escalated": "cases escalated at least once (升级)",
    "overdue_open": "cases dispatched or in progress with the deadline passed now (超期未结)",
}


def kpis(
    session: Session,
    *,
    level: str,
    reported_from: dt.datetime | None = None,
    reported_to: dt.datetime | None = None,
    area: str | None = None,
    now: dt.datetime | None = None,
    scope: Scope | None = None,
) -> dict[str, Any]:
    """KPIs of the cases reported in [reported_from, reported_to) (default: the last 30 days),
    grouped by `level`; `area` (a district, street, community or grid code) narrows them, and so
    does `scope` (the caller's grids: the cases of other grids are not counted)."""
    if level not in GROUPS:
        raise InvalidInput(f"Invalid value for parameter level: {level[:32]!r} is not one of {', '.join(KPI_LEVELS)}")
    now = now or dt.datetime.now(dt.UTC)
    for name, value in (("from", reported_from), ("to", reported_to)):
        if value is not None and value.tzinfo is None:
            raise InvalidInput(f"Invalid value for parameter {name}: give a time zone, e.g. 2026-11-23T10:00:00+08:00")
    to = reported_to or now
    try:
        start = reported_from or to - DEFAULT_PERIOD
    except OverflowError:  # `to` within 30 days of year 1
        raise InvalidInput("Invalid value for parameter to: too early; give from as well") from None
    if start >= to:
        raise InvalidInput("Invalid value for parameter to: must be later than from")
    params: dict[str, Any] = {"reported_from": start, "reported_to": to, "now": now}
    area_sql = ""
    if area is not None:
        if not (area.isascii() and area.isdigit() and len(area) in (6, 9, 12, 15)):
            raise InvalidInput("Invalid value for parameter area: a 6-, 9-, 12- or 15-digit district, street, community or grid code")
        area_sql = "AND i.grid_code LIKE :area"
        params["area"] = area + "%"
    if scope is not None:
        term, scope_params = scope_filter("i", scope)
        area_sql += f" AND {term}"
        params |= scope_params
    key, join, label = GROUPS[level]
    sql = KPI_SQL.format(key=key, join=join, label=label, area=area_sql)
    rows = session.execute(text(sql), params).mappings().all()
    return {
        "level": level,
        "from": start.isoformat(),
        "to": to.isoformat(),
        "area": area,
        "items": [dict(r) for r in rows],
        "definitions": DEFINITIONS,
    }
