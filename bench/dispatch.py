"""Dispatch benchmarks, all in one run against the API started as users start it.

    GRIDMAP_DATABASE_URL=…/gridmap_city python bench/dispatch.py [--seconds 10] [--workers 2]

Measures, on whatever demo is in the database (the `city` demo is the reference):

* a trivial endpoint of the same app (`/v1/ping`), single `/v1/locate`, and the same lookup as
  raw SQL from a client (pgbench, prepared statements) — requests/s, p50 and p99 at 1 and 16
  concurrent clients (wrk for HTTP);
* batch locate, CSV in and CSV out, points/s end to end, against shapely `STRtree.query` in
  bulk in this process (the in-memory limit);
* incident create/s with an Idempotency-Key per request (grid lookup, duplicate check, event log).

Needs `wrk` and `pgbench` (Debian: `apt-get install wrk postgresql-client`). Writes
bench/results/dispatch.json and .md. Created incidents stay in the database (it is a demo).
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import loadtools  # bench/loadtools.py, beside this script
import numpy as np
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from gridmap import auth
from gridmap.pgcluster import Cluster, database_url
from gridmap.settings import db_settings

OUT = Path(__file__).parent / "results"
PGBENCH = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"))), None)


KEY: dict[str, str] = {}  # the API key of this run (every endpoint but health needs one)


def wrk(url: str, clients: int, seconds: int, script: Path | None = None) -> dict:
    return loadtools.wrk(url, clients, seconds, script, headers=KEY)


def pgbench(url: str, script: str, clients: int, seconds: int, tmp: Path) -> dict:
    u = httpx.URL(url.replace("postgresql+psycopg", "postgresql"))
    env = {**os.environ, "PGPASSWORD": u.password or ""}
    path = tmp / f"script{abs(hash(script))}.sql"
    path.write_text(script)
    prefix = tmp / f"pgb{clients}"
    for old in tmp.glob(f"pgb{clients}*"):
        old.unlink()
    cmd = [str(PGBENCH), "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(seconds),
           "-h", u.host, "-p", str(u.port), "-U", u.username, "-f", str(path), "--log", f"--log-prefix={prefix}",
           u.path.lstrip("/")]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
    lat = np.concatenate([np.loadtxt(f, usecols=2, ndmin=1) for f in tmp.glob(f"pgb{clients}*")]) / 1000.0
    return {"rps": round(tps), "p50_ms": round(float(np.percentile(lat, 50)), 3), "p99_ms": round(float(np.percentile(lat, 99)), 3)}


def purge_reports(engine, after_id: int) -> None:  # type: ignore[no-untyped-def]
    """Remove the incidents this run reported, so that runs do not pile up duplicates for the
    next. The event log is append-only; its trigger is switched off for this one transaction."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE incident_event DISABLE TRIGGER incident_event_append_only"))
        conn.execute(text("DELETE FROM incident_event WHERE incident_id > :id"), {"id": after_id})
        n = conn.execute(text("DELETE FROM incident WHERE id > :id"), {"id": after_id}).rowcount
        conn.execute(text("ALTER TABLE incident_event ENABLE TRIGGER incident_event_append_only"))
        conn.execute(text("DELETE FROM idempotency_key WHERE caller = 'bench' OR key LIKE 'bench-%'"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE incident, incident_event, idempotency_key"))
    print(f"removed the {n:,} incidents this run reported", flush=True)


def summarize(runs: list[dict]) -> dict:
    """Medians over the rounds (req/s, p50, p99); each round's req/s kept; non-2xx summed."""
    out = {"rps": round(float(np.median([r["rps"] for r in runs]))),
           "p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 3),
           "p99_ms": round(float(np.median([r["p99_ms"] for r in runs])), 3),
           "rounds_rps": [r["rps"] for r in runs]}  # fmt: skip
    if any("non_2xx" in r for r in runs):
        out["non_2xx"] = sum(r.get("non_2xx", 0) for r in runs)
        named: collections.Counter = collections.Counter()
        for r in runs:
            named.update(r.get("not_2xx", {}))
        if named:
            out["not_2xx"] = dict(named.most_common(5))
    return out


def settle(engine, after_id: int) -> None:  # type: ignore[no-untyped-def]
    """Before a round of reports: remove the previous round's, so that every round starts from
    the same table (no checkpoint is forced: right after one, every first write of a page logs
    the whole page, which is not the steady state)."""
    purge_reports(engine, after_id)


def measure_create(base: str, url: str, tmp: Path, args: argparse.Namespace, n_points: int, n_categories: int,
                   engine, after_id: int) -> dict:  # type: ignore[no-untyped-def]  # fmt: skip
    """Reports at 1 and 16 clients, the raw-SQL reference, and the trivial endpoint, interleaved."""
    runs: dict[str, list[dict]] = {"trivial_c16": [], "c1": [], "c16": [], "raw_sql_c16": []}
    script = report_script(n_points, n_categories)
    for _ in range(args.rounds):
        settle(engine, after_id)
        runs["trivial_c16"].append(wrk(base + "/v1/ping", 16, args.seconds))
        runs["c1"].append(wrk(base, 1, args.seconds, tmp / "create.lua"))
        runs["c16"].append(wrk(base, 16, args.seconds, tmp / "create.lua"))
        settle(engine, after_id)
        runs["raw_sql_c16"].append(pgbench(url, script, 16, args.seconds, tmp))
    return {name: summarize(r) for name, r in runs.items()}


def report_script(n_points: int, n_categories: int) -> str:
    """pgbench: the statements the API runs for one keyed report (claim + REPORT_SQL), with one
    transaction per report — the per-request way, measured in the same run as the reference."""
    from gridmap import vocab
    from gridmap.services import reports

    item = ("(SELECT json_build_array(json_build_object('ord', 0, 'category', "
            "(SELECT code FROM category WHERE level = 2 ORDER BY code OFFSET :c LIMIT 1), 'severity', 2, "
            "'source', 'hotline', 'status', 'reported', 'level', 'grid', 'title', NULL, 'description', 'bench', "
            "'address', NULL, 'lon', p.lon + (random() - 0.5) * 0.001, 'lat', p.lat + (random() - 0.5) * 0.001, "
            "'reporter_id', NULL, 'reported_at', now(), 'day', (now() AT TIME ZONE 'Asia/Shanghai')::date, "
            "'version', 1, 'seq', 1, 'action', 'report', 'to_status', 'reported', 'note', 'reported', "
            "'caller', 'bench', 'key', :k))::text FROM bench_point p WHERE p.i = :i)")  # fmt: skip
    sql = reports.REPORT_PG
    for name, value in {"items": item, "now": "now()", "channel": "'gridmap_incidents'", "radius": "50.0",
                        "window": "interval '24 hours'", "max": "20",
                        "open": "ARRAY[" + ",".join(f"'{s}'" for s in vocab.OPEN_STATUSES) + "]"}.items():  # fmt: skip
        sql = sql.replace(f"%({name})s", value)
    return (f"\\set i random(0, {n_points - 1})\n\\set c random(0, {n_categories - 1})\n"
            "\\set k random(1, 1000000000000)\n"
            "BEGIN;\nINSERT INTO idempotency_key (caller, key, request_hash) VALUES ('bench', 'pgb-' || :k, 'h') "
            "ON CONFLICT DO NOTHING;\n" + sql.replace("'key', :k", "'key', 'pgb-' || :k") + ";\nCOMMIT;\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="runs per measurement, interleaved; medians are reported")
    ap.add_argument("--only", choices=("create", "single", "batch"), help="measure one part, print it, write no results")
    args = ap.parse_args()
    for tool in ("wrk",):
        if not shutil.which(tool):
            sys.exit(f"error: {tool} is not installed — apt-get install {tool}")
    if PGBENCH is None:
        sys.exit("error: pgbench is not installed — apt-get install postgresql-client")
    if not db_settings().database_url:
        Cluster().up()
    url = database_url()
    engine = create_engine(url)
    with engine.begin() as conn:
        grids = conn.execute(text("SELECT count(*) FROM grid WHERE valid_to IS NULL")).scalar_one()
        last_incident = conn.execute(text("SELECT coalesce(max(id), 0) FROM incident")).scalar_one()
        pts = np.array(conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM building TABLESAMPLE SYSTEM (2) LIMIT 5000) x"
        )).all())  # fmt: skip
        conn.execute(text("DROP TABLE IF EXISTS bench_point"))
        conn.execute(text("CREATE TABLE bench_point (i int PRIMARY KEY, lon float8, lat float8)"))
        conn.execute(text("INSERT INTO bench_point SELECT i - 1, lon, lat FROM unnest(CAST(:x AS float8[]), CAST(:y AS float8[])) WITH ORDINALITY AS t(lon, lat, i)"),
                     {"x": pts[:, 0].tolist(), "y": pts[:, 1].tolist()})  # fmt: skip
        cats = [c for c in conn.execute(text("SELECT code FROM category WHERE level = 2")).scalars()]
    with Session(engine) as session, session.begin():  # a dispatcher's key, as the hotline system would have
        KEY["X-API-Key"] = auth.add_api_key(session, name="bench dispatch", role="dispatcher")
    tmp = Path(tempfile.mkdtemp(prefix="gridmap-bench-"))
    port = loadtools.free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port), "--workers", str(args.workers)],
                              env={**os.environ, "GRIDMAP_DATABASE_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    results: dict = {"grids_in_force": grids, "seconds_per_run": args.seconds, "api_workers": args.workers}
    try:
        results["api_start_s"] = round(loadtools.wait_until_up(base + "/healthz", server), 1)
        loadtools.wait_until_up(base + "/healthz", server, warmed=True)  # its background warm-up holds the GIL for seconds
        lua_points = ",".join(f"{{{x:.7f},{y:.7f}}}" for x, y in pts)
        (tmp / "locate.lua").write_text(
            f"local pts = {{{lua_points}}}\nlocal i = 0\n"
            "request = function()\n  i = i % #pts + 1\n"
            "  return wrk.format('GET', string.format('/v1/locate?lon=%.7f&lat=%.7f', pts[i][1], pts[i][2]))\nend\n"
        )
        # reports around sampled buildings (±50 m), categories in turn, a new Idempotency-Key each
        (tmp / "create.lua").write_text(
            f"local pts = {{{lua_points}}}\nlocal cats = {{{','.join(repr(c) for c in cats)}}}\nlocal n = 0\nlocal tid = 0\n"
            "local counter = 1\nsetup = function(thread) thread:set('tid', counter); counter = counter + 1 end\n"
            "init = function() tid = tid end\n"
            "request = function()\n  n = n + 1\n  local p = pts[(n % #pts) + 1]\n"
            "  local body = string.format('{\"category\": \"%s\", \"severity\": 2, \"source\": \"hotline\", \"lon\": %.7f, \"lat\": %.7f, \"description\": \"bench\"}', cats[(n % #cats) + 1], p[1] + (math.random() - 0.5) * 0.001, p[2] + (math.random() - 0.5) * 0.001)\n"
            "  return wrk.format('POST', '/v1/incidents', {['Content-Type'] = 'application/json', ['Idempotency-Key'] = string.format('bench-%d-%d-%d', os.time(), tid, n), ['X-API-Key'] = '" + KEY["X-API-Key"] + "'}, body)\nend\n"
            "response = function(status, headers, body)\n"
            "  if status ~= 201 then io.stderr:write(status .. ' ' .. string.sub(body, 1, 160) .. '\\n') end\nend\n"
        )
        sql = (f"\\set i random(0, {len(pts) - 1})\n"
               "SELECT g.id, g.code FROM grid g, bench_point p WHERE p.i = :i AND g.valid_to IS NULL "
               "AND ST_Covers(g.geom, ST_SetSRID(ST_MakePoint(p.lon, p.lat), 4326)) ORDER BY g.code LIMIT 1;\n")  # fmt: skip
        single: dict = {}
        for clients in (1, 16) if args.only in (None, "single") else ():
            httpx.get(base + "/v1/locate", params={"lon": pts[0][0], "lat": pts[0][1]}, headers=KEY)  # warm
            runs: dict[str, list[dict]] = {"trivial": [], "locate": [], "raw_sql": []}
            for _ in range(args.rounds):  # interleaved, so that all three see the same machine
                runs["trivial"].append(wrk(base + "/v1/ping", clients, args.seconds))
                runs["locate"].append(wrk(base, clients, args.seconds, tmp / "locate.lua"))
                runs["raw_sql"].append(pgbench(url, sql, clients, args.seconds, tmp))
            single[f"c{clients}"] = {name: summarize(r) for name, r in runs.items()}
            print(clients, single[f"c{clients}"], flush=True)
        results["single"] = single
        if args.only == "create":
            create = measure_create(base, url, tmp, args, len(pts), len(cats), engine, last_incident)
            print({**create, "ratio_c16": round(create["c16"]["rps"] / create["trivial_c16"]["rps"], 3)}, flush=True)
            return
        if args.only == "single":
            return
        # batch: 100,000 points, CSV in and out, against STRtree.query in bulk here
        rng = np.random.default_rng(5)
        pick = pts[rng.integers(len(pts), size=100_000)] + rng.normal(0, 0.0005, (100_000, 2))
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["id", "lon", "lat"])
        w.writerows((i, f"{x:.7f}", f"{y:.7f}") for i, (x, y) in enumerate(pick))
        payload = buf.getvalue().encode()
        times = []
        for _ in range(max(args.rounds, 3)):
            t0 = time.perf_counter()
            r = httpx.post(base + "/v1/locate/batch", content=payload, headers={"content-type": "text/csv", **KEY}, timeout=300)
            n_out = r.text.count("\n") - 1
            times.append(time.perf_counter() - t0)
        with engine.connect() as conn:
            geoms = shapely.from_wkb([bytes(g) for g in conn.execute(text("SELECT ST_AsBinary(geom) FROM grid WHERE valid_to IS NULL")).scalars()])
        tree = shapely.STRtree(geoms)
        points = shapely.points(pick)
        ref = []
        for _ in range(3):
            t0 = time.perf_counter()
            tree.query(points, predicate="intersects")
            ref.append(time.perf_counter() - t0)
        batch_rate = 100_000 / float(np.median(times))
        ref_rate = 100_000 / float(np.median(ref))
        results["batch"] = {"points": 100_000, "rows_out": n_out, "api_points_per_s": round(batch_rate),
                            "strtree_points_per_s": round(ref_rate), "ratio": round(batch_rate / ref_rate, 3),
                            "api_median_s": round(float(np.median(times)), 3)}  # fmt: skip
        print(results["batch"], flush=True)
        if args.only == "batch":
            return
        try:
            create = measure_create(base, url, tmp, args, len(pts), len(cats), engine, last_incident)
        except subprocess.CalledProcessError as exc:
            create = {"error": f"{exc}: {(exc.stderr or '')[-300:]}"}
        results["create"] = create
        print(create, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=15)
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_point"))
        purge_reports(engine, last_incident)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_key WHERE name = 'bench dispatch'"))
        shutil.rmtree(tmp, ignore_errors=True)
    c16 = results["single"]["c16"]
    results["targets"] = {
        "locate_vs_trivial_c16": round(c16["locate"]["rps"] / c16["trivial"]["rps"], 3),
        "locate_p99_c16_ms": c16["locate"]["p99_ms"],
        "batch_vs_strtree": results["batch"]["ratio"],
        "create_vs_trivial_c16": round(results["create"]["c16"]["rps"] / c16["trivial"]["rps"], 3) if "c16" in results["create"] else None,
        "create_vs_raw_sql_c16": round(results["create"]["c16"]["rps"] / results["create"]["raw_sql_c16"]["rps"], 3) if "c16" in results["create"] else None,
    }  # fmt: skip
    results["when"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    OUT.mkdir(exist_ok=True)
    (OUT / "dispatch.json").write_text(json.dumps(results, indent=2))
    lines = [f"Measured {results['when']} on {os.cpu_count()} cores, {grids:,} grids in force, API with {args.workers} workers; "
             f"medians of {args.rounds} interleaved runs of {args.seconds} s.", "",
             "| clients | endpoint | req/s | p50 ms | p99 ms |", "|---:|---|---:|---:|---:|"]  # fmt: skip
    for c in (1, 16):
        for name in ("trivial", "locate", "raw_sql"):
            m = results["single"][f"c{c}"][name]
            lines.append(f"| {c} | {name} | {m['rps']:,} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
        if f"c{c}" in results["create"]:
            m = results["create"][f"c{c}"]
            lines.append(f"| {c} | incident create | {m['rps']:,} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    if "raw_sql_c16" in results["create"]:
        m = results["create"]["raw_sql_c16"]
        lines.append(f"| 16 | incident create as raw SQL (pgbench, a transaction per report) | {m['rps']:,} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} |")
    b = results["batch"]
    lines += ["", f"Batch locate, 100,000 points CSV in/out: {b['api_points_per_s']:,} points/s end to end vs "
              f"{b['strtree_points_per_s']:,} points/s for STRtree.query in process (ratio {b['ratio']}).", "",
              "Targets: " + json.dumps(results["targets"])]  # fmt: skip
    (OUT / "dispatch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
