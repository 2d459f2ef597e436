"""How the demo generator and loader grow with scale: seconds and rows per scale, one run.

    python bench/demo_load.py [--scales small,medium] [--seed 42]

Each scale is generated and loaded into a fresh database beside gridmap's own (created and
dropped here). Results go to bench/results/demo_load.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gridmap import migrate
from gridmap.demo.load import generate_frames, load_demo
from gridmap.pgcluster import Cluster, database_url
from gridmap.settings import db_settings

OUT = Path(__file__).parent / "results"


def admin(url: str) -> dict:
    u = make_url(url)
    return dict(host=u.host, port=u.port, user=u.username, password=u.password, dbname="postgres", autocommit=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="small,medium")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if not db_settings().database_url:
        Cluster().up()
    until = dt.datetime(2026, 11, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    results = []
    for scale in args.scales.split(","):
        url = database_url(f"gridmap_bench_{scale}")
        with psycopg.connect(**admin(url)) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "gridmap_bench_{scale}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "gridmap_bench_{scale}"')
        eng = create_engine(url)
        migrate.upgrade(eng)
        with eng.connect() as conn:
            cats = pd.read_sql(text("SELECT code, name_zh, time_limit, time_unit FROM category"), conn)
        t0 = time.perf_counter()
        generate_frames(args.seed, scale, until, cats)
        gen_s = time.perf_counter() - t0
        res = load_demo(eng, seed=args.seed, scale=scale, until=until, progress=False)
        eng.dispose()
        with psycopg.connect(**admin(url)) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "gridmap_bench_{scale}" WITH (FORCE)')
        rows = sum(res.counts.values())
        results.append({"scale": scale, "generate_s": round(gen_s, 2), "generate_and_load_s": round(res.seconds, 2),
                        "rows": rows, "rows_per_s": round(rows / res.seconds), "counts": res.counts})  # fmt: skip
        print(results[-1])
    OUT.mkdir(exist_ok=True)
    meta = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": platform.machine(),
            "cpus": __import__("os").cpu_count(), "seed": args.seed}  # fmt: skip
    (OUT / "demo_load.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2, ensure_ascii=False))
    lines = ["| scale | grids | buildings | residents | incidents | rows | generate (s) | generate + load (s) | rows/s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        c = r["counts"]
        lines.append(f"| {r['scale']} | {c['grid']:,} | {c['building']:,} | {c['resident']:,} | {c['incident']:,} | "
                     f"{r['rows']:,} | {r['generate_s']} | {r['generate_and_load_s']} | {r['rows_per_s']:,} |")  # fmt: skip
    (OUT / "demo_load.md").write_text(f"Measured {meta['when']} on {meta['cpus']} cores.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
