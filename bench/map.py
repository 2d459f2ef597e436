"""The command-center map at scale: build time and page size, as /map serves it.

    GRIDMAP_DATABASE_URL=…/gridmap_city .venv/bin/python bench/map.py [--builds 5]

Builds the page for a city-wide reader several times in one process (the first build also
imports PySAL and builds the grids' contiguity; later ones reuse it, as a serving process does)
and the standalone file (`gridmap map --out`, grids inlined) once. Targets from the issue: under
3 s and under 5 MB at city scale. Writes bench/results/map.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap import maps
from gridmap.access import Scope
from gridmap.db import make_engine
from gridmap.pgcluster import Cluster
from gridmap.services import stats
from gridmap.settings import db_settings

OUT = Path(__file__).parent / "results"
CITY = Scope(clear=False, all_grids=True, grids=())


def build(session: Session, tiles: bool) -> tuple[float, int]:
    t0 = time.perf_counter()
    page = maps.render(maps.build_map(session, CITY, tiles=tiles))
    return time.perf_counter() - t0, len(page.encode())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--builds", type=int, default=5)
    args = ap.parse_args()
    if not db_settings().database_url:
        Cluster().up()
    maps.ensure_assets()
    engine = make_engine()
    with Session(engine) as session:
        grids, open_cases = session.execute(text(
            "SELECT (SELECT count(*) FROM grid WHERE valid_to IS NULL), "
            "(SELECT count(*) FROM incident WHERE status NOT IN ('closed', 'rejected'))")).one()  # fmt: skip
        t0 = time.perf_counter()
        stats.warm_up(session)  # what `gridmap serve` does in the background at startup
        warm_s = time.perf_counter() - t0
        served = [build(session, tiles=True) for _ in range(args.builds)]
        standalone = build(session, tiles=False)
    later = [s for s, _ in served[1:]] or [served[0][0]]
    res = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(), "grids": grids,
           "open_cases": open_cases, "warm_up_s": round(warm_s, 2), "first_build_s": round(served[0][0], 2), "build_s_median": round(statistics.median(later), 2),
           "build_s_max": round(max(later), 2), "page_mb": round(served[-1][1] / 1e6, 2),
           "standalone_s": round(standalone[0], 2), "standalone_mb": round(standalone[1] / 1e6, 2)}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "map.json").write_text(json.dumps(res, indent=2))
    md = (f"Measured {res['when']} on {res['cores']} cores: {grids:,} grids in force, {open_cases:,} open cases.\n\n"
          "| page | build (s) | size (MB) | target |\n|---|---:|---:|---|\n"
          f"| `/map` (tiles), first build after the server's start-up warm-up ({res['warm_up_s']} s in the background) "
          f"| {res['first_build_s']} | {res['page_mb']} | < 3 s, < 5 MB |\n"
          f"| `/map` (tiles), later builds: median / max of {len(later)} | {res['build_s_median']} / {res['build_s_max']} | "
          f"{res['page_mb']} | < 3 s, < 5 MB |\n"
          f"| `gridmap map --out` (grids inlined) | {res['standalone_s']} | {res['standalone_mb']} | — |\n\n"
          "At start-up `gridmap serve` imports PySAL and builds the grids' queen contiguity in the background (kept "
          "per set of grid versions); the bench does the same before its first build.\n")  # fmt: skip
    (OUT / "map.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
