"""Vector tile latency: gridmap's /tiles beside tipg (PyPI) serving the same tables, one run.

    GRIDMAP_DATABASE_URL=…/gridmap_city .venv/bin/python bench/tiles.py [--tiles 30] [--warm 3]

Starts `gridmap serve` and tipg (in a venv of its own, .gridmap/tipg-venv, made on first use:
tipg pins its own FastAPI) on the same database, one worker each, and requests the same tiles
from both, alternating which goes first, one client:

* tiles: the tiles over `--tiles` random buildings at z10, z13 and z16 (distinct tiles);
* layers: gridmap `grids` / tipg `public.grid`, gridmap `incidents` / tipg `public.incident`
  (z13 and z16: below z12 gridmap draws cases as density bins, not points), gridmap
  `buildings` / tipg `public.building` (z16: gridmap's buildings start at z14);
* cold: a request of each tile to gridmap with `Cache-Control: no-cache` (rendered again, as
  when its cache is empty; the tiles are asked again until `--cold-samples`) and a request to
  tipg, one at a time on a kept-alive connection, alternating which goes first, after one discarded tipg
  request that brings the rows into PostgreSQL's buffer cache (cold means the tile server's
  cache, not the disk's, nor a new process's: gridmap first renders an empty tile of each case
  in the Atlantic, as tipg's discarded request opens its connection); warm: the same tiles again in a loop for `--warm` seconds
  per server under wrk, one connection (gridmap answers from its cache; tipg has none and
  renders again). wrk measures the server, not a Python client's millisecond.

Targets from the issue: cold no slower than tipg, warm at least 10× faster. Writes
bench/results/tiles.json and .md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import loadtools  # bench/loadtools.py, beside this script
import mercantile
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from gridmap import auth
from gridmap.pgcluster import Cluster, database_url
from gridmap.settings import db_settings

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results"
TIPG_VENV = ROOT / ".gridmap" / "tipg-venv"
PAIRS = [("grids", "public.grid", (10, 13, 16)), ("incidents", "public.incident", (13, 16)),
         ("buildings", "public.building", (16,))]  # fmt: skip


def tipg_python() -> Path:
    python = TIPG_VENV / "bin" / "python"
    if not python.exists():
        print("installing tipg into .gridmap/tipg-venv …", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(TIPG_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "tipg", "uvicorn"], check=True)
    return python


def timed(conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None) -> tuple[float, int, int]:
    """One request on a kept-alive connection (http.client: a fraction of a millisecond of
    client overhead, where httpx adds about one), its seconds, status and size."""
    t0 = time.perf_counter()
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    seconds = time.perf_counter() - t0
    if r.status not in (200, 204):
        sys.exit(f"error: {path} answered {r.status}: {body[:200]!r}")
    return seconds, r.status, len(body)


def wait_for_case_counts(engine: Any, seconds: float = 60.0) -> None:
    """gridmap serve recounts the grids' case counts as it starts (gridmap.services.casecounts)."""
    deadline = time.monotonic() + seconds
    with engine.connect() as conn:
        while not conn.execute(text("SELECT coalesce((SELECT refreshed_at > now() - interval '30 seconds' "
                                    "FROM case_count_refresh), false)")).scalar():  # fmt: skip
            if time.monotonic() > deadline:
                sys.exit("error: gridmap serve did not count the grids' cases within a minute")
            conn.rollback()
            time.sleep(0.2)


def summary(times: list[float]) -> dict[str, Any]:
    ms = np.array(times) * 1000
    return {"n": len(ms), "p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=30, help="random buildings whose tiles are requested, per zoom")
    ap.add_argument("--cold-samples", type=int, default=12, help="cold requests per case at least (tiles asked again)")
    ap.add_argument("--warm", type=int, default=3, help="seconds of warm requests per server and case (wrk)")
    args = ap.parse_args()
    if not db_settings().database_url:
        Cluster().up()
    url = database_url()
    engine = create_engine(url)
    with engine.connect() as conn:
        points = conn.execute(text("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM building "
                                   "TABLESAMPLE BERNOULLI (0.05) REPEATABLE (7) ORDER BY id LIMIT :n) x"), {"n": args.tiles}).all()  # fmt: skip
    if not points:
        sys.exit("error: no buildings in this database — load a demo: gridmap demo --scale city")
    with Session(engine) as session, session.begin():
        key = {"X-API-Key": auth.add_api_key(session, name="bench tiles", role="admin")}
    no_cache = {**key, "Cache-Control": "no-cache"}  # gridmap renders again, as for a tile not in its cache
    pg_url = "postgresql://" + url.split("://", 1)[1]
    gm_port, tp_port = loadtools.free_port(), loadtools.free_port()
    servers = [
        subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(gm_port)],
                         env={**os.environ, "GRIDMAP_DATABASE_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
        subprocess.Popen([str(tipg_python()), "-m", "uvicorn", "tipg.main:app", "--port", str(tp_port), "--log-level", "warning"],
                         env={**os.environ, "DATABASE_URL": pg_url, "TIPG_DB_SCHEMAS": '["public"]',
                              "TIPG_DB_TABLES": '["public.grid", "public.incident", "public.building"]'},
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
    ]  # fmt: skip
    results: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        loadtools.wait_until_up(f"http://127.0.0.1:{gm_port}/healthz", servers[0], warmed=True)
        loadtools.wait_until_up(f"http://127.0.0.1:{tp_port}/collections", servers[1])
        wait_for_case_counts(engine)
        warm_up = http.client.HTTPConnection("127.0.0.1", gm_port, timeout=120)
        for layer, _, zooms in PAIRS:  # the process's first queries (connection, PostGIS, PROJ), on empty tiles at sea
            for z in zooms:
                t = mercantile.tile(-30.0, 0.0, z)
                timed(warm_up, f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt", key)
        tmp = Path(tempfile.mkdtemp(prefix="gridmap-tiles-"))
        for layer, collection, zooms in PAIRS:
            for z in zooms:
                tiles = sorted({mercantile.tile(lon, lat, z) for lon, lat in points})
                paths = {"gridmap": [f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt" for t in tiles],
                         "tipg": [f"/collections/{collection}/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}" for t in tiles]}  # fmt: skip
                # new connections per case: the servers close idle ones while wrk runs
                connections = {"gridmap": http.client.HTTPConnection("127.0.0.1", gm_port, timeout=120),
                               "tipg": http.client.HTTPConnection("127.0.0.1", tp_port, timeout=120)}  # fmt: skip
                cold: dict[str, list[float]] = {s: [] for s in paths}
                sizes: dict[str, list[int]] = {s: [] for s in paths}
                rounds = -(-args.cold_samples // len(tiles))  # a z10 case has one or two tiles: ask them again
                for k in [k for _ in range(rounds) for k in range(len(tiles))]:
                    timed(connections["tipg"], paths["tipg"][k])  # reads the rows into PostgreSQL's cache for both
                    for server in ("gridmap", "tipg") if len(cold["tipg"]) % 2 == 0 else ("tipg", "gridmap"):
                        seconds, _, size = timed(connections[server], paths[server][k], no_cache if server == "gridmap" else None)
                        cold[server].append(seconds)
                        sizes[server].append(size)
                row = {"layer": layer, "tipg": collection, "z": z, "tiles": len(tiles),
                       **{f"{s}_cold": summary(cold[s]) for s in paths}, "bytes": {s: int(np.median(sizes[s])) for s in sizes}}  # fmt: skip
                for server, port in (("gridmap", gm_port), ("tipg", tp_port)):
                    script = tmp / f"{server}.lua"
                    listed = ", ".join(f'"{p}"' for p in paths[server])
                    script.write_text(f"local paths = {{{listed}}}\nlocal i = 0\n"
                                      "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n")  # fmt: skip
                    warm = loadtools.wrk(f"http://127.0.0.1:{port}/", 1, args.warm, script, headers=key if server == "gridmap" else None)
                    if warm["non_2xx"] and any(not s.startswith("204") for s in warm.get("not_2xx", {})):
                        sys.exit(f"error: {server} warm requests failed: {warm}")
                    row[f"{server}_warm"] = {"rps": warm["rps"], "p50_ms": warm["p50_ms"], "p99_ms": warm["p99_ms"]}
                row["cold_ratio"] = round(row["gridmap_cold"]["p50_ms"] / row["tipg_cold"]["p50_ms"], 2)
                row["warm_speedup"] = round(row["tipg_warm"]["p50_ms"] / row["gridmap_warm"]["p50_ms"], 1)
                results.append(row)
                print(f"{layer:9} z{z:2}  cold {row['gridmap_cold']['p50_ms']:7.2f} vs {row['tipg_cold']['p50_ms']:7.2f} ms  "
                      f"warm {row['gridmap_warm']['p50_ms']:6.2f} vs {row['tipg_warm']['p50_ms']:7.2f} ms", flush=True)  # fmt: skip
    finally:
        for proc in servers:
            proc.terminate()
            proc.wait(timeout=15)
        with engine.begin() as conn:
            conn.execute(text("UPDATE api_key SET revoked_at = now() WHERE name = 'bench tiles' AND revoked_at IS NULL"))
    res = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
           "run_s": round(time.monotonic() - started), "warm_passes": args.warm, "cold_samples": args.cold_samples, "results": results}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "tiles.json").write_text(json.dumps(res, indent=2))
    (OUT / "tiles.md").write_text(report(res))
    print(report(res))


def report(res: dict[str, Any]) -> str:
    lines = [f"Measured {res['when']} on {res['cores']} cores; one client; gridmap (`gridmap serve`, 1 worker, an admin API "
             f"key) and tipg (1 worker) on the same database; {res['run_s']} s.", "",
             "p50 / p99 ms per tile (distinct tiles over random buildings). *Cold*: requests to gridmap with `Cache-Control: "
             f"no-cache` (the tile rendered again, as with an empty cache; each case at least {res.get('cold_samples', 1)} "
             "times, its tiles asked again) and to tipg, after a discarded tipg request that warms PostgreSQL's buffers, on a "
             "kept-alive http.client connection (a fraction of a millisecond of client time in both "
             f"columns); *warm*: the same tiles in a loop under wrk for {res['warm_passes']} s per server, one connection "
             "(gridmap from its cache, tipg renders again — it has none). Targets: cold ≤ tipg, warm ≥ 10× faster.", "",
             "| layer (tipg collection) | z | tiles | gridmap cold | tipg cold | cold ratio | gridmap warm | tipg warm | warm speed-up | median bytes gridmap / tipg |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in res["results"]:
        def cell(m: dict[str, Any]) -> str:
            return f"{m['p50_ms']:.2f} / {m['p99_ms']:.2f}"

        lines.append(f"| {r['layer']} ({r['tipg']}) | {r['z']} | {r['tiles']} | {cell(r['gridmap_cold'])} | {cell(r['tipg_cold'])} | "
                     f"{r['cold_ratio']} | {cell(r['gridmap_warm'])} | {cell(r['tipg_warm'])} | {r['warm_speedup']}× | "
                     f"{r['bytes']['gridmap']:,} / {r['bytes']['tipg']:,} |")  # fmt: skip
    lines += ["", "The layers are not byte-for-byte the same work: gridmap's `grids` tiles carry each grid's open, overdue and "
              "recent case counts (kept ahead with the grid's shape in Web Mercator in `grid_case_count`, which the tile reads alone: gridmap.services.casecounts) and only the grids in force; tipg's `public.grid` carries every "
              "column of every grid version. gridmap's `incidents` are open and recent cases with their category names; tipg's "
              "`public.incident` every case. Both simplify to the tile's resolution."]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
