"""Planning at city scale: validation + impact of a street, apply of a district, suggest for a
community, each beside a reference measured in the same run.

    GRIDMAP_DATABASE_URL=…/gridmap_city .venv/bin/python bench/plans.py [--rounds 3]

* validation + impact: the street whose grid count is nearest 50 among those with the most
  buildings; a plan made from its grids with one grid split, so something moves. Reference: the
  core of validation in one PostGIS statement (pairwise overlaps, the gap, households per grid).
* apply: a plan for the district with the most grids, every 10th grid split in two through its
  centre; applied in a transaction that is rolled back at the end (the city stays as it was;
  the commit itself is not timed). Reference: the bare writes of the same apply in plain SQL
  (end and insert grid versions, re-home buildings, households and residents), no checks.
* suggest: the community whose households are nearest 5,000; the suggestion's balance and
  compactness beside k-means on the building centroids and the grids in force (same call).

Targets from the issue: validation + impact < 2 s, apply < 30 s, suggest < 10 s.
Writes bench/results/plans.json and .md. Plans made here are discarded at the end.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from gridmap.auth import Principal
from gridmap.pgcluster import Cluster, database_url
from gridmap.services import plans
from gridmap.settings import db_settings

OUT = Path(__file__).resolve().parent.parent / "bench" / "results"
BENCH = Principal("cli", 0, "bench", "admin", (("city", ""),))

REFERENCE_VALIDATION_SQL = text("""
    WITH g AS (SELECT id, geom FROM plan_grid WHERE plan_id = :p),
    s AS (SELECT ST_Union(geom) AS geom FROM admin_area WHERE level = 'community' AND code LIKE :scope),
    pairs AS (SELECT count(*) AS n FROM g a JOIN g b ON a.id < b.id AND ST_Intersects(a.geom, b.geom)
                 WHERE ST_Area(ST_Intersection(a.geom, b.geom)::geography) > 1),
    gap AS (SELECT ST_Area(ST_Difference(s.geom, (SELECT ST_Union(geom) FROM g))::geography) AS m2 FROM s),
    households AS (SELECT g.id, sum(b.households) AS n FROM g JOIN building b ON b.geom && g.geom
                   AND ST_Intersects(g.geom, ST_PointOnSurface(b.geom)) GROUP BY g.id)
    SELECT (SELECT n FROM pairs), (SELECT m2 FROM gap), (SELECT count(*) FROM households)""")


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def split_through_centre(session: Session, plan_id: int, grid_ids: list[int]) -> None:
    """Split each plan grid in two along the meridian through its centre (an edit of the plan)."""
    for gid in grid_ids:
        wkt = session.execute(text("SELECT ST_AsText(ST_Envelope(geom)) FROM plan_grid WHERE id = :i"), {"i": gid}).scalar_one()
        box = shapely.from_wkt(wkt)
        x = box.centroid.x
        line = {"type": "LineString", "coordinates": [[x, box.bounds[1] - 0.01], [x, box.bounds[3] + 0.01]]}
        plans.edit(session, BENCH, plan_id, {"op": "split", "grid": gid, "line": line})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="timed repetitions of each step (median reported)")
    args = ap.parse_args()
    if not db_settings().database_url:
        Cluster().up()
    engine = create_engine(database_url())
    results: dict[str, Any] = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cores": os.cpu_count()}
    made: list[int] = []
    with engine.connect() as conn:
        street = conn.execute(text("""
            WITH g AS (SELECT left(code, 9) AS s, count(*) AS grids FROM grid WHERE valid_to IS NULL GROUP BY 1),
                 b AS (SELECT left(grid_code, 9) AS s, count(*) AS buildings FROM building WHERE grid_code IS NOT NULL GROUP BY 1)
            SELECT g.s, g.grids, b.buildings FROM g JOIN b USING (s)
            ORDER BY abs(g.grids - 50) + abs(b.buildings - 20000) / 1000.0 LIMIT 1""")).one()  # fmt: skip
        district = conn.execute(text("SELECT left(code, 6), count(*) FROM grid WHERE valid_to IS NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1")).one()
        community = conn.execute(text("""SELECT left(grid_code, 12), sum(households), count(*) FROM building WHERE grid_code IS NOT NULL
                                         GROUP BY 1 ORDER BY abs(sum(households) - 5000) LIMIT 1""")).one()  # fmt: skip
    if street is None:
        sys.exit("error: no grids in this database — load a demo: gridmap demo --scale city")
    try:
        # -- validation + impact of a street ------------------------------------------------
        with Session(engine) as session, session.begin():
            plan = plans.create(session, BENCH, name="bench street", scope_code=street.s)
            made.append(plan["id"])
            first = session.execute(text("SELECT id FROM plan_grid WHERE plan_id = :p ORDER BY code LIMIT 1"), {"p": plan["id"]}).scalar_one()
            split_through_centre(session, plan["id"], [first])
        steps: dict[str, list[float]] = {"validation": [], "impact": [], "reference_sql": []}
        for _ in range(args.rounds):
            with Session(engine) as session, session.begin():
                t, v = timed(lambda: plans.validation(session, BENCH, plan["id"]))
                steps["validation"].append(t)
                t, imp = timed(lambda: plans.impact(session, BENCH, plan["id"]))
                steps["impact"].append(t)
                t, _ = timed(lambda: session.execute(REFERENCE_VALIDATION_SQL, {"p": plan["id"], "scope": street.s + "%"}).one())
                steps["reference_sql"].append(t)
        both = median(steps["validation"]) + median(steps["impact"])
        results["street"] = {"scope": street.s, "grids": int(street.grids), "buildings": int(street.buildings),
                             **{f"{k}_s": round(median(v), 3) for k, v in steps.items()}, "validation_plus_impact_s": round(both, 3),
                             "ratio_to_reference": round(both / median(steps["reference_sql"]), 2), "findings": v["counts"],
                             "moved_buildings": imp["totals"]["buildings"], "target_s": 2.0}  # fmt: skip
        print(f"street {street.s}: {street.grids} grids, {street.buildings:,} buildings — validation {median(steps['validation']):.2f} s "
              f"+ impact {median(steps['impact']):.2f} s (reference SQL {median(steps['reference_sql']):.2f} s)", flush=True)  # fmt: skip

        # -- apply of a district ------------------------------------------------------------
        with Session(engine) as session, session.begin():
            dplan = plans.create(session, BENCH, name="bench district", scope_code=district[0])
            made.append(dplan["id"])
            ids = list(session.execute(text("SELECT id FROM plan_grid WHERE plan_id = :p ORDER BY code"), {"p": dplan["id"]}).scalars())
            split_through_centre(session, dplan["id"], ids[::10])
        applied: list[float] = []
        reference: list[float] = []
        report: dict[str, Any] = {}
        for _ in range(args.rounds):
            with Session(engine) as session:
                session.begin()
                t, report = timed(lambda: plans.apply(session, BENCH, dplan["id"]))
                applied.append(t)
                session.rollback()
            with Session(engine) as session:
                session.begin()
                t, _ = timed(lambda: reference_apply(session, district[0], dplan["id"]))
                reference.append(t)
                session.rollback()
        results["district"] = {"scope": district[0], "grids": int(district[1]), "split": len(ids[::10]), "apply_s": round(median(applied), 2),
                               "reference_updates_s": round(median(reference), 2), "ratio_to_reference": round(median(applied) / median(reference), 2),
                               "totals": report["totals"], "target_s": 30.0, "note": "in a transaction rolled back at the end; commit not timed"}  # fmt: skip
        print(f"district {district[0]}: {district[1]:,} grids, {len(ids[::10])} split — apply {median(applied):.1f} s "
              f"(bare SQL writes {median(reference):.1f} s); moved {report['totals']}", flush=True)  # fmt: skip

        # -- suggest for a community ---------------------------------------------------------
        suggest_times: list[float] = []
        last: dict[str, Any] = {}
        for _ in range(args.rounds):
            with Session(engine) as session, session.begin():
                t, last = timed(lambda: plans.suggest(session, BENCH, scope_code=community[0], follow_roads=True))
                suggest_times.append(t)
                made.append(last["plan"]["id"])
        results["suggest"] = {"scope": community[0], "households": int(community[1]), "buildings": int(community[2]),
                              "suggest_s": round(median(suggest_times), 2), "comparison": last["comparison"], "target_s": 10.0}  # fmt: skip
        print(f"community {community[0]}: {community[1]:,} households, {community[2]:,} buildings — suggest {median(suggest_times):.1f} s",
              flush=True)  # fmt: skip
    finally:
        with engine.begin() as conn:
            conn.execute(text("UPDATE plan SET status = 'discarded' WHERE id = ANY(:ids) AND status IN ('draft', 'validated')"), {"ids": made})
    OUT.mkdir(exist_ok=True)
    (OUT / "plans.json").write_text(json.dumps(plans.finite(results), indent=2, ensure_ascii=False))
    (OUT / "plans.md").write_text(report_md(plans.finite(results)))
    print(report_md(plans.finite(results)))


def reference_apply(session: Session, district: str, plan_id: int) -> None:
    """The bare writes of an apply as plain SQL, with no checks, events, staff or audit: end the
    grids the plan changes, insert its new versions (new codes numbered per community), and
    re-home the buildings, households and residents whose grid changed."""
    p = {"p": plan_id, "s": district + "%"}
    session.execute(text("""UPDATE grid g SET valid_to = now() WHERE g.valid_to IS NULL AND g.code LIKE :s AND NOT EXISTS (
                              SELECT FROM plan_grid pg WHERE pg.plan_id = :p AND pg.code = g.code AND ST_Equals(pg.geom, g.geom))"""), p)  # fmt: skip
    session.execute(text("""
        INSERT INTO grid (code, name, kind, community_id, geom, valid_from, plan_id)
        SELECT coalesce(pg.code, pg.community_code || lpad((coalesce(m.mx, 0) + row_number() OVER (PARTITION BY pg.community_code
                 ORDER BY pg.id))::text, 3, '0')), coalesce(pg.name, '新网格'), pg.kind, a.id, pg.geom, now(), :p
        FROM plan_grid pg JOIN admin_area a ON a.code = pg.community_code AND a.level = 'community'
        LEFT JOIN (SELECT left(code, 12) AS c, max(right(code, 3)::int) AS mx FROM grid WHERE code LIKE :s GROUP BY 1) m ON m.c = pg.community_code
        WHERE pg.plan_id = :p AND NOT EXISTS (SELECT FROM grid g WHERE g.valid_to IS NULL AND g.code = pg.code)"""), p)  # fmt: skip
    session.execute(text("""UPDATE building b SET grid_code = g.code FROM grid g WHERE g.valid_to IS NULL AND g.code LIKE :s
                            AND ST_Intersects(g.geom, ST_PointOnSurface(b.geom)) AND b.grid_code LIKE :s
                            AND b.grid_code IS DISTINCT FROM g.code"""), p)  # fmt: skip
    session.execute(text("UPDATE household h SET grid_code = b.grid_code FROM building b WHERE h.building_id = b.id AND b.grid_code LIKE :s "
                         "AND h.grid_code IS DISTINCT FROM b.grid_code"), p)  # fmt: skip
    session.execute(text("UPDATE resident r SET grid_code = b.grid_code FROM building b WHERE r.building_id = b.id AND b.grid_code LIKE :s "
                         "AND r.grid_code IS DISTINCT FROM b.grid_code"), p)  # fmt: skip


def report_md(res: dict[str, Any]) -> str:
    s, d, g = res["street"], res["district"], res["suggest"]
    lines = [f"Measured {res['when']} on {res['cores']} cores, city demo; medians of the rounds.", "",
             "| step | scale | gridmap | reference (same run) | ratio | target |", "|---|---|---:|---:|---:|---:|",
             f"| validation + impact | street {s['scope']}: {s['grids']} grids, {s['buildings']:,} buildings | {s['validation_plus_impact_s']:.2f} s "
             f"({s['validation_s']:.2f} + {s['impact_s']:.2f}) | {s['reference_sql_s']:.2f} s (overlaps, gap, households in one SQL) | "
             f"{s['ratio_to_reference']}× | < 2 s |",
             f"| apply | district {d['scope']}: {d['grids']:,} grids, {d['split']} split | {d['apply_s']:.1f} s | {d['reference_updates_s']:.1f} s "
             f"(the bare writes in plain SQL: grid versions, buildings, households, residents) | {d['ratio_to_reference']}× | < 30 s |",
             f"| suggest | community {g['scope']}: {g['households']:,} households, {g['buildings']:,} buildings | {g['suggest_s']:.1f} s | — | — | < 10 s |",
             "", f"Apply moved: {d['totals']} ({d['note']}).", "", "Suggestion beside k-means and the grids in force (households per grid):", "",
             "| plan | grids | max deviation | std | in 300–500 | Polsby–Popper mean | Reock mean |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for label, m in g["comparison"].items():
        if m:
            lines.append(f"| {label} | {m['n']} | {(m['max_deviation'] or 0):.0%} | {(m['std'] or 0):.0f} | {(m['in_range'] or 0):.0%} | "
                         f"{(m['polsby_popper_mean'] or 0):.2f} | {(m['reock_mean'] or 0):.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
