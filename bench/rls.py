"""Row-level security overhead on residents: the same calls with and without RLS in one run.

    GRIDMAP_DATABASE_URL=…/gridmap_city .venv/bin/python bench/rls.py [--iterations 100] [--rounds 3] [--budget 1]

Measures, on whatever demo is in the database (the `city` demo is the reference), for four
scopes taken from the data (a grid with the median number of residents, its community, street
and district, each read by a staff member of that level):

* the scoped resident list the API serves (`services.residents.list_residents`): the first page
  of 100 and a page deep in the list (`after` = the cursor of the scope's median resident);
* the grid-level count (residents per grid over the scope's grids), as a statistic would do it.

"With RLS" is what the API does: `access.open_scope` (SET LOCAL ROLE gridmap_api and the
caller's code range as context, migrations 0008 and 0012) before the service's statements. "Without RLS" is
the same statements in the same kind of transaction as the connecting role (the table owner).
Each call is one transaction, timed end to end in Python; calls alternate between the two
variants (each on its own connection, as an API process keeps one), after a warm-up pass.
A call that passes the API's statement timeout counts as timed out and is not repeated; a case
stops its round after --budget seconds, so slow cases get fewer calls.
Writes bench/results/rls.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import loadtools  # bench/loadtools.py, beside this script
import numpy as np
import psycopg
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from gridmap.access import (
    Scope,
    cursor,
    open_scope,
    page_filter,
    page_order,
    resident_scope,
    scope_filter,
)
from gridmap.auth import Principal
from gridmap.db import make_engine
from gridmap.pgcluster import Cluster, database_url
from gridmap.services.residents import list_residents
from gridmap.settings import db_settings

OUT = Path(__file__).parent / "results"
LEVELS = {"grid": ("grid_worker", 15), "community": ("community_admin", 12), "street": ("street_admin", 9),
          "district": ("district_admin", 6)}  # fmt: skip
EXPLAIN_LEVEL = "street"  # the largest scope whose calls finish within the timeout on the city demo
TARGET = 1.2  # the issue: RLS makes these calls less than 20 % slower


@dataclasses.dataclass
class Case:
    level: str
    call: str
    scope: Scope
    run: Callable[[Session], Any]  # returns what both variants must agree on
    times: dict[str, list[float]] = dataclasses.field(default_factory=lambda: {"plain": [], "rls": []})
    answer: dict[str, Any] = dataclasses.field(default_factory=dict)  # None: timed out


def principal_for(session: Session, level: str, grid: str) -> Principal:
    """The first staff member of the level's role whose scope covers `grid`."""
    role, digits = LEVELS[level]
    row = session.execute(text("SELECT s.id, s.name FROM staff s JOIN staff_scope c ON c.staff_id = s.id "
                               "WHERE s.role = :role AND c.level = :level AND c.code = :code ORDER BY s.id LIMIT 1"),
                          {"role": role, "level": level, "code": grid[:digits]}).first()  # fmt: skip
    return Principal("user", row.id if row else 0, row.name if row else "bench", role, ((level, grid[:digits]),))


def cases_for(session: Session, level: str, grid: str) -> tuple[list[Case], dict[str, Any]]:
    """The three calls of one scope, read by a staff member of that level (masked: see the .md)."""
    principal = principal_for(session, level, grid)
    scope = dataclasses.replace(resident_scope(session, principal), clear=False)
    where, params = page_filter("r", scope, grid=None, limit=1, after=None, max_page=1)
    count_sql = text(f"SELECT r.grid_code, count(*) FROM resident r WHERE {' AND '.join(where)} GROUP BY 1 ORDER BY 1")
    term, in_scope = scope_filter("r", scope)
    residents = session.execute(text(f"SELECT count(*) FROM resident r WHERE {term}"), in_scope).scalar_one()
    row = session.execute(text(f"SELECT r.grid_code, r.id FROM resident r WHERE {term} ORDER BY {page_order('r')} "
                               "OFFSET :half LIMIT 1"), {**in_scope, "half": residents // 2}).one()  # fmt: skip
    middle = cursor(row)
    grids = session.execute(text(f"SELECT count(*) FROM grid r WHERE r.valid_to IS NULL AND {term.replace('grid_code', 'code')}"),
                            in_scope).scalar_one()  # fmt: skip

    def page(after: str | None) -> Callable[[Session], Any]:
        def run(session: Session) -> Any:
            out = list_residents(session, principal, scope, limit=100, after=after)
            return out["total"], [item["id"] for item in out["items"]], out["next_after"]

        return run

    def count(session: Session) -> Any:
        return [tuple(row) for row in session.execute(count_sql, params)]

    info = {"role": principal.role, "staff_id": principal.id, "scope": principal.scopes[0][1],
            "grids": grids, "residents": residents, "after": middle}  # fmt: skip
    return [Case(level, "list, first page", scope, page(None)), Case(level, "list, deep page", scope, page(middle)),
            Case(level, "grid-level count", scope, count)], info  # fmt: skip


def timed(engine: Engine, case: Case, rls: bool) -> tuple[float, Any]:
    """One call in one transaction: seconds, and its answer (None when it timed out)."""
    t0 = time.perf_counter()
    try:
        with Session(engine) as session, session.begin():
            if rls:
                open_scope(session, case.scope)
            answer = case.run(session)
    except OperationalError as exc:
        if not isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise
        answer = None
    return time.perf_counter() - t0, answer


def measure(engines: dict[str, Engine], cases: list[Case], iterations: int, rounds: int, budget: float) -> None:
    """Warm-up (every answer checked equal between the variants), then interleaved rounds."""
    for case in cases:
        for variant, engine in engines.items():
            case.answer[variant] = timed(engine, case, variant == "rls")[1]
        if None not in case.answer.values() and case.answer["plain"] != case.answer["rls"]:
            sys.exit(f"error: {case.level} {case.call}: the answers with and without RLS differ")
        print(f"warm {case.level:9} {case.call:17} timed out: {[v for v, a in case.answer.items() if a is None]}", flush=True)
    for r in range(rounds):
        for case in cases:
            variants = [v for v in engines if case.answer[v] is not None]
            started = time.perf_counter()
            for i in range(iterations):
                for variant in variants if (i + r) % 2 == 0 else variants[::-1]:
                    seconds, answer = timed(engines[variant], case, variant == "rls")
                    if answer != case.answer[variant]:
                        sys.exit(f"error: {case.level} {case.call} {variant}: the answer changed during the run")
                    case.times[variant].append(seconds)
                if time.perf_counter() - started > budget:
                    break
        print(f"round {r + 1} of {rounds} done", flush=True)


def stats(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"n": 0}
    ms = np.array(times) * 1000
    return {"n": len(ms), "median_ms": round(float(np.median(ms)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3)}


def short(plan: list[str]) -> list[str]:
    """A plan without its literal lists of grid codes (thousands of characters)."""
    return [re.sub(r"'\{[^}]{40,}\}'", lambda m: f"'{{…{m.group(0).count(',') + 1} codes…}}'", line) for line in plan]


def plans(engine: Engine, case: Case) -> dict[str, list[dict[str, Any]]]:
    """EXPLAIN (ANALYZE, BUFFERS) of the statements one call runs, with and without RLS (a plain
    EXPLAIN where ANALYZE passes the statement timeout)."""
    seen: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        with Session(engine) as session, session.begin():
            case.run(session)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    out: dict[str, list[dict[str, Any]]] = {}
    for variant in ("plain", "rls"):
        out[variant] = []
        with Session(engine) as session, session.begin():
            if variant == "rls":
                open_scope(session, case.scope)
            for statement, parameters in seen:
                for explain in ("EXPLAIN (ANALYZE, BUFFERS) ", "EXPLAIN "):
                    try:
                        with session.begin_nested():
                            lines = session.connection().exec_driver_sql(explain + statement, parameters).scalars().all()
                        break
                    except DBAPIError as exc:
                        if not isinstance(exc.orig, psycopg.errors.QueryCanceled):
                            raise
                out[variant].append({"statement": statement.split(" WHERE ")[0], "explain": explain.strip(),
                                     "plan": short(list(lines))})  # fmt: skip
    return out


# an API process as `gridmap serve` runs it; with "off", open_scope does nothing (no role, no
# context: the connecting superuser bypasses row-level security) — for this measurement only
SERVER = """import sys
import uvicorn
if sys.argv[2] == "off":
    import gridmap.access
    gridmap.access.open_scope = lambda session, scope: None
uvicorn.run("api.app:create_app", factory=True, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
HTTP_CALLS = {"list, first page": ("/v1/residents", {"limit": "100"}),
              "grid-level count": ("/v1/residents/counts", {"by": "grid"})}  # fmt: skip


def measure_http(url: str, grid: str, iterations: int, rounds: int, budget: float) -> list[dict[str, Any]]:
    """The same two reads through the API (`gridmap serve`, one worker each, keep-alive, one
    client), one server with row-level security and one without, each reader with an API key."""
    import subprocess

    import httpx

    from gridmap import auth

    engine = make_engine(url)
    keys: dict[str, str] = {}
    with Session(engine) as session, session.begin():
        for level, (role, digits) in LEVELS.items():
            keys[level] = auth.add_api_key(session, name="bench rls", role=role, scope=(level, grid[:digits]))
    servers, clients = {}, {}
    try:
        for variant, mode in (("plain", "off"), ("rls", "on")):
            port = loadtools.free_port()
            servers[variant] = subprocess.Popen([sys.executable, "-c", SERVER, str(port), mode],
                                                env={**os.environ, "GRIDMAP_DATABASE_URL": url})  # fmt: skip
            clients[variant] = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        for variant, client in clients.items():
            loadtools.wait_until_up(f"{client.base_url}healthz", servers[variant], warmed=True)
        rows = []
        for level in LEVELS:
            for call, (path, params) in HTTP_CALLS.items():
                headers = {"X-API-Key": keys[level]}
                answers = {v: c.get(path, params=params, headers=headers) for v, c in clients.items()}  # warm, and checked
                if any(r.status_code != 200 for r in answers.values()) or answers["plain"].json() != answers["rls"].json():
                    sys.exit(f"error: http {level} {call}: the answers with and without RLS differ or failed")
                times: dict[str, list[float]] = {"plain": [], "rls": []}
                for r in range(rounds):
                    started = time.perf_counter()
                    for i in range(iterations):
                        for variant in ("plain", "rls") if (i + r) % 2 == 0 else ("rls", "plain"):
                            t0 = time.perf_counter()
                            clients[variant].get(path, params=params, headers=headers).raise_for_status()
                            times[variant].append(time.perf_counter() - t0)
                        if time.perf_counter() - started > budget:
                            break
                plain, rls = stats(times["plain"]), stats(times["rls"])
                rows.append({"level": level, "call": f"{call} (HTTP)", "plain": plain, "rls": rls, "timed_out": [],
                             "ratio_median": round(rls["median_ms"] / plain["median_ms"], 2),
                             "ratio_p99": round(rls["p99_ms"] / plain["p99_ms"], 2)})  # fmt: skip
                print(f"http {level:9} {call:17} {plain['median_ms']:.2f} / {rls['median_ms']:.2f} ms", flush=True)
        return rows
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.terminate()
            server.wait(timeout=15)
        with engine.begin() as conn:  # the keys end; the audit rows of their reads stay (the log is append-only)
            conn.execute(text("UPDATE api_key SET revoked_at = now() WHERE name = 'bench rls' AND revoked_at IS NULL"))
        engine.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=100, help="calls per variant, case and round (at most)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians over all timings")
    ap.add_argument("--budget", type=float, default=1.0, help="seconds a case may take per round (slow cases get fewer calls)")
    args = ap.parse_args()
    started = time.monotonic()
    if not db_settings().database_url:
        Cluster().up()
    url = database_url()
    engines = {"plain": make_engine(url), "rls": make_engine(url)}  # a connection each, like an API process
    timeout_ms = db_settings().statement_timeout_ms
    with Session(engines["plain"]) as session, session.begin():
        try:
            has_residents = session.execute(text("SELECT EXISTS (SELECT FROM resident)")).scalar_one()
        except DBAPIError:
            has_residents = False
        if not has_residents:
            sys.exit(f"error: no residents in {engines['plain'].url.database} — load a demo: gridmap demo --scale city")
        who = session.execute(text("SELECT current_user, rolsuper, rolbypassrls, pg_get_userbyid(c.relowner) AS owner, "
                                   "c.relforcerowsecurity AS forced, current_setting('server_version') AS version "
                                   "FROM pg_roles r, pg_class c WHERE r.rolname = current_user AND c.oid = 'resident'::regclass")).one()  # fmt: skip
        per_grid = sorted((n, code) for code, n in session.execute(
            text("SELECT grid_code, count(*) FROM resident WHERE grid_code IS NOT NULL GROUP BY 1")))  # fmt: skip
        grid = per_grid[len(per_grid) // 2][1]
        cases, scopes = [], {}
        for level in LEVELS:
            level_cases, scopes[level] = cases_for(session, level, grid)
            cases += level_cases
    print(f"median grid {grid}; scopes {scopes}", flush=True)
    measure(engines, cases, args.iterations, args.rounds, args.budget)
    http_rows = measure_http(url, grid, args.iterations, args.rounds, args.budget)
    cached = {}  # custom or generic plans of the timed statements (psycopg prepares them after 5 runs)
    for variant, engine in engines.items():
        with engine.connect() as conn:
            cached[variant] = [dict(r._mapping) for r in conn.execute(text(
                "SELECT statement, generic_plans AS generic, custom_plans AS custom FROM pg_prepared_statements "
                "WHERE statement LIKE '%FROM resident r %' ORDER BY statement"))]  # fmt: skip
    explained = {c.call: plans(engines["plain"], c) for c in cases if c.level == EXPLAIN_LEVEL}
    rows = []
    for c in cases:
        plain, rls = stats(c.times["plain"]), stats(c.times["rls"])
        row = {"level": c.level, "call": c.call, "plain": plain, "rls": rls,
               "timed_out": [v for v, a in c.answer.items() if a is None]}  # fmt: skip
        if plain["n"] and rls["n"]:
            row["ratio_median"] = round(rls["median_ms"] / plain["median_ms"], 2)
            row["ratio_p99"] = round(rls["p99_ms"] / plain["p99_ms"], 2)
        rows.append(row)
    rows += http_rows
    results = {"when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "cores": os.cpu_count(),
               "postgres": who.version, "median_grid": grid, "scopes": scopes, "iterations": args.iterations,
               "rounds": args.rounds, "budget_s": args.budget, "statement_timeout_ms": timeout_ms,
               "run_s": round(time.monotonic() - started), "target_ratio": TARGET, "prepared_plans": cached,
               "connecting_role": {"name": who.current_user, "superuser": who.rolsuper, "bypassrls": who.rolbypassrls,
                                   "table_owner": who.owner, "force_rls": who.forced},
               "results": rows, "plans": {EXPLAIN_LEVEL: explained}}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "rls.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (OUT / "rls.md").write_text(report(results))
    print(report(results))


def report(res: dict[str, Any]) -> str:
    role = res["connecting_role"]
    bypass = ("a superuser, which bypasses row-level security even with FORCE ROW LEVEL SECURITY" if role["superuser"]
              else "a BYPASSRLS role" if role["bypassrls"] else
              "subject to the policies: FORCE applies them to the owner, whose own policy admits every row")  # fmt: skip
    lines = [
        f"Measured {res['when']} on {res['cores']} cores, PostgreSQL {res['postgres']}; {res['rounds']} interleaved rounds "
        f"of at most {res['iterations']} calls per variant and case (fewer when a case passes {res['budget_s']} s in a "
        f"round: n below); statement timeout {res['statement_timeout_ms'] / 1000:g} s as in the API; {res['run_s']} s.", "",
        "## What this measures", "",
        "The cost of the second wall (migrations 0008 and 0012) on two reads of personal data. *With RLS* is what the "
        "API does: `access.open_scope` (one statement: the role `gridmap_api` and the caller's code range — or grid "
        "list — as transaction-local settings), "
        "then the service's statements, which the restrictive policy filters again. *Without RLS* is the same "
        f"statements in the same kind of transaction as the connecting role `{role['name']}` (owner of `resident`: "
        f"`{role['table_owner']}`, FORCE {'on' if role['force_rls'] else 'off'}), which is {bypass}. Both keep the "
        "service's own filter (`access.scope_filter`: the area's code range); their answers (total, page ids, next cursor; counts per "
        "grid) were checked equal wherever both finished, and every timed call against its variant's first answer. "
        "Each call is one transaction timed end to end from Python (begin, `open_scope` where it applies, "
        "statements, commit), warm cache, the two variants alternating "
        "call by call on a connection each. The *list* is `services.residents.list_residents` (a count of the whole "
        "scope for `total`, then a keyset page of 100 by (grid_code, id)), the *grid-level count* is `SELECT grid_code, count(*) … "
        "GROUP BY 1` over the scope's grids (`access.page_filter`). The scope is the reader's (`access.resident_scope`) "
        "made masked (`clear=False`): the SQL is the same, and a clear read would add an audit insert to every call "
        "— a write, the same in both variants, that would dilute the ratio and leave thousands of rows in the "
        "append-only audit log. Scope resolution (`access.reach`) is outside the timing: it is the same in both variants.", "",
        "Rows marked *(HTTP)* are the same two reads as a user gets them: `GET /v1/residents?limit=100` and "
        "`GET /v1/residents/counts?by=grid` with the reader's API key, against two `gridmap serve` processes (one "
        "worker each) on the same database, one as shipped and one whose `open_scope` does nothing (so its "
        "transactions run as the connecting superuser); one keep-alive client, calls alternating. The list is a "
        "clear read there, so each call also writes its audit row (they stay: the log is append-only; the keys, "
        "named `bench rls`, are revoked at the end).", "",
        f"Scopes, around the grid with the median number of residents ({res['median_grid']}):", "",
        "| scope | reader | grids | residents | deep page after |", "|---|---|---:|---:|---:|",
    ]  # fmt: skip
    for level, s in res["scopes"].items():
        lines.append(f"| {level} {s['scope']} | {s['role']} (staff {s['staff_id']}) | {s['grids']:,} | {s['residents']:,} | {s['after']} |")

    def cell(m: dict[str, Any], timed_out: bool) -> str:
        if timed_out:
            return f"> {res['statement_timeout_ms'] / 1000:g} s (timed out)"
        return f"{m['median_ms']:,.2f} / {m['p99_ms']:,.2f} ({m['n']})"

    lines += ["", f"Times in ms, median / p99 (n calls). Target: with RLS less than {round((TARGET - 1) * 100)} % slower "
              "(ratio < 1.2).", "",
              "| scope | call | without RLS | with RLS | ratio median | ratio p99 | target |", "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
    for r in res["results"]:
        ratio = r.get("ratio_median")
        verdict = "met" if ratio is not None and ratio < TARGET else "missed"
        lines.append(f"| {r['level']} | {r['call']} | {cell(r['plain'], 'plain' in r['timed_out'])} | "
                     f"{cell(r['rls'], 'rls' in r['timed_out'])} | {ratio if ratio is not None else '—'} | "
                     f"{r.get('ratio_p99', '—')} | {verdict} |")  # fmt: skip
    plans_used = ", ".join(f"{'with' if v == 'rls' else 'without'} RLS {sum(c['custom'] for c in cs):,} custom and "
                           f"{sum(c['generic'] for c in cs):,} generic" for v, cs in res["prepared_plans"].items())
    lines += ["", "Plans of the timed statements (psycopg prepares them after 5 runs; `pg_prepared_statements`, per "
              f"statement in rls.json): {plans_used}. A generic plan skips planning; the EXPLAINs below are custom plans."]
    if any(r.get("ratio_median", 1) < 0.8 for r in res["results"]):
        lines += ["", "A ratio well below 1 is not the policy being cheap: the two variants run different plans "
                  "(see rls.json); the count for `total` dominates the first page at district scale."]  # fmt: skip
    lines += ["", f"## Plans ({EXPLAIN_LEVEL} scope, one call each)", "",
              "`EXPLAIN (ANALYZE, BUFFERS)` of the statements one call runs, with literal parameters (custom plans), "
              "top lines; lists of grid codes shortened. Full plans in rls.json."]  # fmt: skip
    for call, variants in next(iter(res["plans"].values())).items():
        for variant, statements in variants.items():
            for s in statements:
                plan = s["plan"]
                top = plan[:9] + [line for line in plan[9:] if line.startswith(("Execution Time", "Planning Time"))]
                lines += ["", f"**{call}, {'with' if variant == 'rls' else 'without'} RLS** — `{s['statement']} …`"
                          + ("" if s["explain"].endswith(")") else " (plain EXPLAIN: ANALYZE timed out)"), "", "```", *top, "```"]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
