"""Grid plans on a hand-built city (two communities of two 0.01° grids each): every finding type
from one crafted plan, apply then roll back, cases re-homed with an event, locate at a time
before and after, two applies racing, and the API's answers to bad requests."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from gridmap import auth
from gridmap.errors import Conflict
from gridmap.services import plans
from tests.auth_helpers import key_headers
from tests.conftest import own_database
from tests.test_workflow import (
    COMMUNITY_A,
    COMMUNITY_B,
    GRID_A1,
    GRID_A2,
    GRID_B1,
    GRID_B2,
    build_city,
)

NEW_A = COMMUNITY_A + "003"


@dataclass
class World:
    engine: Engine
    client: TestClient
    planner: dict[str, str]
    principal: auth.Principal
    workers: list[int]


def _buildings(s: Session) -> None:
    """A lattice of small buildings over both communities: 5 households each west of 117.014,
    2 east of it (community A: A1 has 500, A2 320); residents in a few."""
    for i in range(20):
        for j in range(20):
            x, y = 117.0005 + 0.001 * i, 31.0004 + 0.001 * j
            households = 5 if x < 117.014 else 2
            bid = s.execute(text("INSERT INTO building (code, use, households, grid_code, geom) VALUES (:c, 'residential', :h, "
                                 "(SELECT code FROM grid WHERE valid_to IS NULL AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:x, :y), 4326))), "
                                 "ST_Multi(ST_Expand(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 0.00005))) RETURNING id, grid_code"),
                            {"c": f"P-{i}-{j}", "h": households, "x": x, "y": y}).one()  # fmt: skip
            people = 10 if (i, j) == (1, 1) else 20 if (i, j) == (2, 1) else 10 if (i, j) == (9, 1) else 5 if (i, j) == (15, 1) else 0
            for k in range(people):
                s.execute(text("INSERT INTO resident (building_id, grid_code, name) VALUES (:b, :g, :n)"),
                          {"b": bid.id, "g": bid.grid_code, "n": f"居民{i}-{j}-{k}"})  # fmt: skip


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    with own_database(database_url_for_tests, "plans") as engine:
        with Session(engine) as s, s.begin():
            city = build_city(s, tag="plans")
            _buildings(s)
            for worker, grid in zip(city.workers, (GRID_A1, GRID_A2), strict=True):
                s.execute(text("INSERT INTO staff_scope (staff_id, level, code) VALUES (:s, 'grid', :g)"), {"s": worker, "g": grid})
            s.execute(text("INSERT INTO staff (username, name, role) VALUES ('plans-planner', '规划员', 'planner')"))
            auth.set_role(s, username="plans-planner", role="planner", scopes=[("city", "")])
            principal = auth.Principal("user", s.execute(text("SELECT id FROM staff WHERE username = 'plans-planner'")).scalar_one(),
                                       "规划员", "planner", (("city", ""),))  # fmt: skip
        planner = key_headers(engine, "planner")
        with TestClient(create_app(engine=engine)) as client:
            yield World(engine, client, planner, principal, city.workers)


def _plan_from(world: World, features: list[dict[str, Any]], scope: str = COMMUNITY_A) -> int:
    frame = gpd.GeoDataFrame([f["properties"] for f in features], geometry=[shapely.from_wkt(f["wkt"]) for f in features], crs=4326)
    with Session(world.engine) as s, s.begin():
        return plans.create(s, world.principal, name="crafted", scope_code=scope, frame=frame)["id"]


def box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"


def test_a_plan_of_the_grids_in_force_is_valid_and_moves_nothing(world: World) -> None:
    r = world.client.post("/v1/plans", json={"name": "as is", "scope": COMMUNITY_A}, headers=world.planner)
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["status"] == "draft" and plan["grids"] == 2 and plan["scope_level"] == "community"
    v = world.client.get(f"/v1/plans/{plan['id']}/validation", headers=world.planner).json()
    assert v["valid"] and v["findings"] == [] and v["status"] == "validated", v
    impact = world.client.get(f"/v1/plans/{plan['id']}/impact", headers=world.planner).json()
    assert impact["moves"] == [] and impact["totals"]["buildings"] == 0 and impact["retired"] == [] and impact["created"] == []
    assert {g["code"]: g["households"] for g in impact["grids"]} == {GRID_A1: 500, GRID_A2: 320}
    assert impact["balance"]["before"]["max_deviation"] == impact["balance"]["after"]["max_deviation"]
    world.client.delete(f"/v1/plans/{plan['id']}", headers=world.planner)


def test_a_crafted_plan_triggers_each_finding_type_exactly_once(world: World) -> None:
    spiked = ("POLYGON((117.000 31.000,117.008 31.000,117.008 31.010,117.000 31.010,117.000 31.005,116.9995 31.005,"
              "117.000 31.005,117.000 31.000),(117.003 31.003,117.003 31.005,117.005 31.005,117.005 31.003,117.003 31.003))")  # fmt: skip
    island = "MULTIPOLYGON(((117.014 31.000,117.020 31.000,117.020 31.0095,117.014 31.0095,117.014 31.000)),((117.0145 31.0097,117.015 31.0097,117.015 31.010,117.0145 31.010,117.0145 31.0097)))"  # fmt: skip
    plan_id = _plan_from(world, [
        {"properties": {"code": GRID_A1, "kind": "general"}, "wkt": spiked},  # invalid (spike), hole, residents over max
        {"properties": {"code": COMMUNITY_B + "777", "kind": "other"}, "wkt": box(117.003, 31.003, 117.005, 31.005)},  # code breaks the rule
        {"properties": {"code": GRID_A2, "kind": "other"}, "wkt": box(117.008, 31.000, 117.00806, 31.010)},  # sliver, not compact
        {"properties": {"code": GRID_A2, "kind": "general"}, "wkt": box(117.00806, 30.9995, 117.0142, 31.010)},  # collision; overhang, overlap
        {"properties": {"code": NEW_A, "kind": "general"}, "wkt": island},  # two pieces; a gap north of it; 120 households
    ])  # fmt: skip
    r = world.client.get(f"/v1/plans/{plan_id}/validation", params={"residents_max": 20}, headers=world.planner)
    assert r.status_code == 200, r.text
    v = r.json()
    assert v["counts"] == {t: 1 for t in ("invalid", "outside_parent", "overlap", "gap", "code_invalid", "code_collision",
                                          "non_contiguous", "sliver", "hole", "households_out_of_range", "residents_over_max",
                                          "compactness_low")}, [f["message"] for f in v["findings"]]  # fmt: skip
    by_type = {f["type"]: f for f in v["findings"]}
    assert "Self-intersection" in by_type["invalid"]["message"] and by_type["invalid"]["geometry"]["type"] == "Point"
    assert by_type["overlap"]["grids"] == [GRID_A2, NEW_A] and 15_000 < by_type["overlap"]["value"] < 25_000  # 19 m × 1,055 m
    assert 25_000 < by_type["outside_parent"]["value"] < 40_000 and 20_000 < by_type["gap"]["value"] < 40_000
    assert by_type["households_out_of_range"]["grids"] == [NEW_A] and by_type["households_out_of_range"]["value"] == 120
    assert by_type["residents_over_max"]["value"] == 30 and f"(grid {COMMUNITY_B}777 lies inside it)" in by_type["hole"]["message"]
    assert all(f["geometry"] for f in v["findings"]) and not v["valid"] and v["status"] == "draft"
    assert by_type["hole"]["message_zh"].startswith("网格 ")
    r = world.client.post(f"/v1/plans/{plan_id}/apply", headers=world.planner)
    assert r.status_code == 422 and "error finding" in r.json()["detail"]


def _locate(world: World, lon: float, lat: float, at: dt.datetime | None = None) -> str:
    params = {"lon": lon, "lat": lat} | ({"at": at.isoformat()} if at else {})
    r = world.client.get("/v1/locate", params=params, headers=world.planner)
    assert r.status_code == 200, r.text
    return r.json()["grid"]["code"] if "grid" in r.json() else r.json()["code"]


def _until(check: Any, seconds: float = 3.0) -> None:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the locate index did not pick the change up"
        time.sleep(0.02)


def test_split_apply_and_roll_back(world: World) -> None:
    c, h = world.client, world.planner
    admin = key_headers(world.engine, "admin")
    case = c.post("/v1/incidents", json={"category": "0102", "source": "patrol", "lon": 117.002, "lat": 31.005}, headers=admin).json()
    assert case["properties"]["grid_code"] == GRID_A1
    plan = c.post("/v1/plans", json={"name": "split A1", "scope": COMMUNITY_A}, headers=h).json()
    grids = c.get(f"/v1/plans/{plan['id']}", headers=h).json()["features"]
    a1 = next(f["id"] for f in grids if f["properties"]["code"] == GRID_A1)
    line = {"type": "LineString", "coordinates": [[117.004, 30.999], [117.004, 31.011]]}
    edited = c.post(f"/v1/plans/{plan['id']}/edits", json={"op": "split", "grid": a1, "line": line}, headers=h)
    assert edited.status_code == 200 and edited.json()["grids"] == 3, edited.text
    v = c.get(f"/v1/plans/{plan['id']}/validation", headers=h).json()
    assert v["valid"] and v["counts"] == {"households_out_of_range": 1}, v["counts"]  # the new west grid: 200 households
    impact = c.get(f"/v1/plans/{plan['id']}/impact", headers=h).json()
    assert impact["created"] == ["new #" + str(max(f["id"] for f in c.get(f"/v1/plans/{plan['id']}", headers=h).json()["features"]))]
    assert impact["totals"]["buildings"] == 40 and impact["totals"]["households"] == 200 and impact["totals"]["open_incidents"] == 1
    assert impact["totals"]["residents"] == 30  # counted for the planner, who sees none of them
    assert any(s["action"] == "flagged" and "has no grid worker" in s["reason"] for s in impact["staff"])
    assert c.get(f"/plans/{plan['id']}/map", headers=h).text.count("L.geoJson") >= 2
    before = dt.datetime.now(dt.UTC)
    applied = c.post(f"/v1/plans/{plan['id']}/apply", json={}, headers=h)
    assert applied.status_code == 200, applied.text
    done = applied.json()
    assert done["grids"]["created"] == [NEW_A] and done["grids"]["new_versions"] == [GRID_A1] and done["grids"]["unchanged"] == [GRID_A2]
    assert done["totals"]["buildings"] == 40 and done["totals"]["residents"] == 30 and done["totals"]["open_incidents"] == 1
    after = dt.datetime.fromisoformat(done["effective_at"])  # the first instant of the new grids
    moved = c.get(f"/v1/incidents/{case['id']}", headers=admin).json()
    assert moved["properties"]["grid_code"] == NEW_A
    last = moved["events"][-1]
    assert last["action"] == "rehome" and last["data"]["from_grid"] == GRID_A1 and last["data"]["to_grid"] == NEW_A
    assert _locate(world, 117.002, 31.005, before) == GRID_A1 and _locate(world, 117.002, 31.005, after) == NEW_A
    _until(lambda: _locate(world, 117.002, 31.005) == NEW_A)  # the in-memory index picked the change up
    with world.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM resident WHERE grid_code = :g"), {"g": NEW_A}).scalar_one() == 30
    again = c.post(f"/v1/plans/{plan['id']}/apply", headers=h)
    assert again.status_code == 409 and "is applied" in again.json()["detail"]

    back = c.post(f"/v1/plans/{plan['id']}/rollback", headers=h)
    assert back.status_code == 200, back.text
    assert back.json()["grids"]["retired"] == [NEW_A] and back.json()["grids"]["new_versions"] == [GRID_A1]
    with world.engine.connect() as conn:
        now = {r[0]: r[1] for r in conn.execute(text("SELECT code, ST_AsText(ST_Normalize(geom)) FROM grid WHERE valid_to IS NULL "
                                                     "AND code LIKE :p"), {"p": COMMUNITY_A + "%"})}  # fmt: skip
        first = {r[0]: r[1] for r in conn.execute(text("SELECT code, ST_AsText(ST_Normalize(geom)) FROM grid WHERE valid_from < "
                                                       "'2021-01-01' AND code LIKE :p"), {"p": COMMUNITY_A + "%"})}  # fmt: skip
        versions = dict(conn.execute(text("SELECT code, count(*) FROM grid WHERE code LIKE :p GROUP BY code"), {"p": COMMUNITY_A + "%"}).all())
        status = conn.execute(text("SELECT status FROM plan WHERE id = :p"), {"p": plan["id"]}).scalar_one()
    assert now == first  # the boundaries are as they were
    assert versions == {GRID_A1: 3, GRID_A2: 1, NEW_A: 1} and status == "rolled_back"  # and the history is all there
    assert c.get(f"/v1/incidents/{case['id']}", headers=admin).json()["properties"]["grid_code"] == GRID_A1
    assert _locate(world, 117.002, 31.005, after) == NEW_A
    _until(lambda: _locate(world, 117.002, 31.005) == GRID_A1)


def _meridian(lon: float) -> dict[str, Any]:
    return {"type": "LineString", "coordinates": [[lon, 30.999], [lon, 31.021]]}


def _edited_plan(world: World, scope: str, op: Any) -> int:
    """A plan of the grids in force with one edit, `op` made from {code: plan grid id}."""
    c, h = world.client, world.planner
    plan = c.post("/v1/plans", json={"name": "edited", "scope": scope}, headers=h).json()
    grids = {f["properties"]["code"]: f["id"] for f in c.get(f"/v1/plans/{plan['id']}", headers=h).json()["features"]}
    r = c.post(f"/v1/plans/{plan['id']}/edits", json=op(grids), headers=h)
    assert r.status_code == 200, r.text
    return int(plan["id"])


def test_two_plans_applied_at_once_on_one_scope_one_wins(world: World) -> None:
    ids = [_edited_plan(world, COMMUNITY_B, lambda g: {"op": "split", "grid": g[GRID_B1], "line": _meridian(117.004)}),
           _edited_plan(world, COMMUNITY_B, lambda g: {"op": "merge", "grids": [g[GRID_B1], g[GRID_B2]]})]
    results: dict[int, str] = {}
    barrier = threading.Barrier(2)

    def run(plan_id: int) -> None:
        with Session(world.engine) as s:
            barrier.wait()
            try:
                with s.begin():
                    plans.apply(s, world.principal, plan_id)
                results[plan_id] = "applied"
            except Conflict as exc:
                results[plan_id] = f"409 {exc.detail}"

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(r[:3] for r in results.values()) == ["409", "app"], results
    loser = next(r for r in results.values() if r.startswith("409"))
    assert f"The grids of {COMMUNITY_B} changed since plan" in loser


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), [
    ("post", "/v1/plans", {"name": "x", "scope": "12"}, 422, "Invalid value for scope: a 12-digit community, 9-digit street or 6-digit district code"),
    ("post", "/v1/plans", {"name": "x", "scope": "349902001999"}, 404, "No community with code 349902001999"),
    ("post", "/v1/plans", {"name": "", "scope": COMMUNITY_A}, 422, "Invalid value for name: 1 to 200 characters"),
    ("post", "/v1/plans", {"name": "x", "scope": COMMUNITY_A, "geojson": {"type": "Point"}}, 422, "Invalid value for geojson: a GeoJSON FeatureCollection"),
    ("get", "/v1/plans/999999", None, 404, "No plan 999999"),
    ("post", "/v1/plans/999999/apply", {}, 404, "No plan 999999"),
])  # fmt: skip
def test_bad_requests_get_problems(world: World, method: str, path: str, body: Any, status: int, detail: str) -> None:
    r = getattr(world.client, method)(path, headers=world.planner, **({"json": body} if body is not None else {}))
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["detail"] == detail


def test_bad_edits_and_applies(world: World) -> None:
    c, h = world.client, world.planner
    plan = c.post("/v1/plans", json={"name": "edits", "scope": COMMUNITY_A}, headers=h).json()
    grids = {f["properties"]["code"]: f["id"] for f in c.get(f"/v1/plans/{plan['id']}", headers=h).json()["features"]}
    far = {"type": "LineString", "coordinates": [[118.0, 31.0], [118.0, 31.01]]}
    cases = [({"op": "split", "grid": grids[GRID_A1], "line": far}, "The line does not split grid"),
             ({"op": "split", "grid": 1_000_000, "line": far}, "Invalid value for grid: the id of one of this plan's grids"),
             ({"op": "merge", "grids": [grids[GRID_A1]]}, "Invalid value for grids: the ids of two or more different grids"),
             ({"op": "replace", "grid": grids[GRID_A1], "geometry": {"type": "Point", "coordinates": [117, 31]}}, "Invalid value for geometry"),
             ({"op": "move", "from": grids[GRID_A1], "to": grids[GRID_A2], "region": {"type": "Polygon", "coordinates": [[[118, 31], [118.01, 31], [118.01, 31.01], [118, 31]]]}},
              "The region does not cover any of grid"),
             ({"op": "fold"}, "op")]  # fmt: skip
    for op, detail in cases:
        r = c.post(f"/v1/plans/{plan['id']}/edits", json=op, headers=h)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", (op, r.text)
        assert detail in r.text, (op, r.text)
    far = (dt.datetime.now(dt.UTC) + dt.timedelta(days=400)).isoformat()
    r = c.post(f"/v1/plans/{plan['id']}/apply", json={"effective_at": far}, headers=h)
    assert r.status_code == 422 and r.json()["detail"] == "Invalid value for effective_at: at most 366 days ahead"
    r = c.post(f"/v1/plans/{plan['id']}/apply", json={"effective_at": "2026-12-01T00:00:00"}, headers=h)
    assert r.status_code == 422 and "give a time zone" in r.json()["detail"]
    worker = key_headers(world.engine, "grid_worker", ("grid", GRID_A1))
    assert c.post(f"/v1/plans/{plan['id']}/apply", json={}, headers=worker).status_code == 403
    assert c.get("/v1/plans", headers=worker).status_code == 403
    assert c.delete(f"/v1/plans/{plan['id']}", headers=h).json()["status"] == "discarded"
    r = c.post(f"/v1/plans/{plan['id']}/edits", json={"op": "remove", "grid": grids[GRID_A2]}, headers=h)
    assert r.status_code == 409 and "is discarded" in r.json()["detail"]


def test_a_plan_from_a_file_and_its_move_edit(world: World, tmp_path: Any) -> None:
    c, h = world.client, world.planner
    frame = gpd.GeoDataFrame({"code": [GRID_A1, GRID_A2], "name": ["西", "东"]},
                             geometry=[shapely.from_wkt(box(117.0, 31.0, 117.01, 31.01)), shapely.from_wkt(box(117.01, 31.0, 117.02, 31.01))],
                             crs=4326).to_crs(4547)  # fmt: skip
    path = tmp_path / "plan.gpkg"
    frame.to_file(path, driver="GPKG")
    with path.open("rb") as f:
        r = c.post("/v1/plans/upload", files={"file": ("plan.gpkg", f)}, data={"name": "from a file", "scope": COMMUNITY_A}, headers=h)
    assert r.status_code == 201, r.text
    plan = r.json()
    grids = {f["properties"]["code"]: f for f in c.get(f"/v1/plans/{plan['id']}", headers=h).json()["features"]}
    assert grids[GRID_A1]["properties"]["source_grid_id"] is not None and grids[GRID_A1]["properties"]["name"] == "西"
    region = {"type": "Polygon", "coordinates": [[[117.008, 30.999], [117.011, 30.999], [117.011, 31.011], [117.008, 31.011], [117.008, 30.999]]]}
    r = c.post(f"/v1/plans/{plan['id']}/edits", json={"op": "move", "from": grids[GRID_A1]["id"], "to": grids[GRID_A2]["id"], "region": region},
               headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    v = c.get(f"/v1/plans/{plan['id']}/validation", headers=h).json()
    assert v["valid"], v["findings"]
    impact = c.get(f"/v1/plans/{plan['id']}/impact", headers=h).json()
    assert impact["moves"] == [{"from": GRID_A1, "to": GRID_A2, "buildings": 20, "households": 100, "residents": 10, "open_incidents": 0}]
    c.delete(f"/v1/plans/{plan['id']}", headers=h)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_suggested_plan_passes_its_own_validation(world: World, seed: int) -> None:
    r = world.client.post("/v1/plans/suggest", json={"scope": COMMUNITY_A, "seed": seed}, headers=world.planner)
    assert r.status_code == 201, r.text
    body = r.json()
    comparison = body["comparison"]
    assert set(comparison) == {"suggested", "kmeans", "current"} and comparison["current"]["n"] == 2
    assert all(300 <= h <= 500 for h in body["households"]) and sum(body["households"]) == 820
    v = world.client.get(f"/v1/plans/{body['plan']['id']}/validation", headers=world.planner).json()
    assert v["valid"] and "households_out_of_range" not in v["counts"], v["counts"]
    assert comparison["suggested"]["max_deviation"] <= comparison["kmeans"]["max_deviation"] + 1e-9
    world.client.delete(f"/v1/plans/{body['plan']['id']}", headers=world.planner)


def test_the_cli_walks_a_plan_through(world: World, tmp_path: Any) -> None:
    from tests.test_cli import one_clear_line, run

    env = {"GRIDMAP_DATABASE_URL": world.engine.url.render_as_string(hide_password=False)}
    made = run("plan", "new", "--scope", COMMUNITY_B, "--name", "cli", env=env)
    assert made.returncode == 0 and "grids, draft" in made.stdout, made.stderr
    plan_id = made.stdout.split()[1]
    checked = run("plan", "validate", plan_id, "--out", str(tmp_path / "findings.geojson"), env=env)
    assert checked.returncode == 0 and "0 errors" in checked.stdout, checked.stdout + checked.stderr
    assert run("plan", "impact", plan_id, env=env).returncode == 0
    drawn = run("plan", "map", plan_id, "--out", str(tmp_path / "plan.html"), env=env)
    assert drawn.returncode == 0 and (tmp_path / "plan.html").read_text().count("L.geoJson") >= 2
    suggested = run("plan", "suggest", "--scope", COMMUNITY_B, env=env)
    assert suggested.returncode == 0 and "suggested" in suggested.stdout and "k-means" in suggested.stdout, suggested.stderr
    assert "No plan 999999" in one_clear_line(run("plan", "apply", "999999", env=env))
    assert "Invalid value for scope" in one_clear_line(run("plan", "new", "--scope", "1", env=env))


def test_a_plan_scheduled_for_a_date_is_applied_when_due_or_fails_with_the_reason(world: World) -> None:
    c, h = world.client, world.planner
    ids = [_edited_plan(world, COMMUNITY_A, lambda g: {"op": "split", "grid": g[GRID_A1], "line": _meridian(117.006)}) for _ in range(2)]
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(days=7)).replace(microsecond=0)
    r = c.post(f"/v1/plans/{ids[0]}/apply", json={"effective_at": when.isoformat()}, headers=h)
    assert r.status_code == 200 and r.json() == {"plan_id": ids[0], "status": "scheduled", "effective_at": when.isoformat()}, r.text
    assert c.post(f"/v1/plans/{ids[0]}/edits", json={"op": "remove", "grid": 1}, headers=h).status_code == 409  # frozen
    assert plans.apply_due(world.engine) == []  # not due yet: nothing changes
    with world.engine.begin() as conn:  # a week passes
        conn.execute(text("UPDATE plan SET effective_at = now() - interval '1 second' WHERE id = :p"), {"p": ids[0]})
    done = plans.apply_due(world.engine)
    assert [d["status"] for d in done] == ["applied"] and done[0]["plan_id"] == ids[0]
    with world.engine.connect() as conn:
        starts = conn.execute(text("SELECT valid_from = (SELECT effective_at FROM plan WHERE id = :p) FROM grid WHERE plan_id = :p"),
                              {"p": ids[0]}).scalars().all()  # fmt: skip
    assert starts and all(starts)  # the grids start at the scheduled time, not when the scheduler ran
    r = c.post(f"/v1/plans/{ids[1]}/apply", json={"effective_at": when.isoformat()}, headers=h)
    assert r.status_code == 409 and "changed since" in r.json()["detail"]  # checked when scheduled, too
    back = c.post(f"/v1/plans/{ids[0]}/rollback", headers=h)
    assert back.status_code == 200, back.text
    third = c.post("/v1/plans", json={"name": "later", "scope": COMMUNITY_A}, headers=h).json()
    assert c.post(f"/v1/plans/{third['id']}/apply", json={"effective_at": when.isoformat()}, headers=h).json()["status"] == "scheduled"
    with world.engine.begin() as conn:  # before it is due, a grid of the scope gets a new version (an edit by hand)
        conn.execute(text("UPDATE plan SET effective_at = now() - interval '1 second' WHERE id = :p"), {"p": third["id"]})
        old = conn.execute(text("SELECT id FROM grid WHERE code = :g AND valid_to IS NULL"), {"g": GRID_A2}).scalar_one()
        conn.execute(text("UPDATE grid SET valid_to = now() WHERE id = :i"), {"i": old})
        conn.execute(text("INSERT INTO grid (code, name, community_id, geom, valid_from) SELECT code, name, community_id, geom, valid_to "
                          "FROM grid WHERE id = :i"), {"i": old})  # fmt: skip
    done = plans.apply_due(world.engine)
    assert [d["status"] for d in done] == ["failed"] and "changed since" in done[0]["reason"]
    got = c.get(f"/v1/plans/{third['id']}", headers=h).json()["plan"]
    assert got["status"] == "failed"


def test_household_ranges_are_set_by_grid_kind(world: World) -> None:
    c, h = world.client, world.planner
    plan_id = _edited_plan(world, COMMUNITY_A, lambda g: {"op": "set", "grid": g[GRID_A2], "kind": "school"})
    url = f"/v1/plans/{plan_id}/validation"
    assert c.get(url, headers=h).json()["counts"] == {}  # a school grid has no household range by default
    found = c.get(url, params={"kind_ranges": "school:400-600"}, headers=h).json()
    assert found["counts"] == {"households_out_of_range": 1} and "a school grid should have 400–600" in found["findings"][0]["message"]
    assert c.get(url, params={"kind_ranges": "school:400-600,general:-"}, headers=h).json()["rules"]["households"] == {"school": [400, 600]}
    r = c.get(url, params={"kind_ranges": "moon:1-2"}, headers=h)
    assert r.status_code == 422 and r.json()["detail"].startswith("Invalid value for kind_ranges: 'moon' is not a grid kind")
    r = c.get(url, params={"kind_ranges": "school:9-1"}, headers=h)
    assert r.status_code == 422 and "write kind:min-max" in r.json()["detail"]
    c.delete(f"/v1/plans/{plan_id}", headers=h)


_coords = st.tuples(st.floats(116.99, 117.03, allow_nan=False), st.floats(30.99, 31.03, allow_nan=False))
_rings = st.lists(_coords, min_size=0, max_size=6).map(lambda pts: [list(p) for p in pts] + ([list(pts[0])] if pts else []))
_geometry = st.one_of(
    st.builds(lambda r: {"type": "Polygon", "coordinates": [r]}, _rings),
    st.builds(lambda pts: {"type": "LineString", "coordinates": [list(p) for p in pts]}, st.lists(_coords, max_size=4)),
    st.sampled_from([None, {}, {"type": "Polygon"}, {"type": "Polygon", "coordinates": [[["a", 1]]]}, {"type": "Point", "coordinates": [1e308, 0]},
                     {"type": "Polygon", "coordinates": [[[0, 0], [1e9, 0], [1e9, 1e9], [0, 0]]]}]),
)  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(op=st.sampled_from(["split", "merge", "replace", "move", "add", "remove", "set"]), geometry=_geometry,
       ids=st.lists(st.integers(-2, 3), max_size=3), text_=st.one_of(st.none(), st.text(max_size=30), st.integers()))
def test_no_edit_makes_a_500_or_a_half_written_plan(world: World, op: str, geometry: Any, ids: list[int], text_: Any) -> None:
    c, h = world.client, world.planner
    plan_id = world.fuzz_plan if getattr(world, "fuzz_plan", None) else None
    if plan_id is None:
        plan_id = c.post("/v1/plans", json={"name": "fuzz", "scope": COMMUNITY_B}, headers=h).json()["id"]
        world.fuzz_plan = plan_id  # type: ignore[attr-defined]
    grids = [f["id"] for f in c.get(f"/v1/plans/{plan_id}", headers=h).json()["features"]]
    pick = [grids[i] if 0 <= i < len(grids) else i for i in ids]
    body = {"op": op, "grid": pick[0] if pick else None, "grids": pick, "from": pick[0] if pick else None,
            "to": pick[-1] if pick else None, "line": geometry, "geometry": geometry, "region": geometry, "name": text_, "code": text_}
    before = c.get(f"/v1/plans/{plan_id}", headers=h).json()
    r = c.post(f"/v1/plans/{plan_id}/edits", json=body, headers=h)
    assert r.status_code in (200, 422), (body, r.status_code, r.text)
    assert r.headers["content-type"] in ("application/json", "application/problem+json")
    if r.status_code == 422:  # refused: nothing of it was written
        assert c.get(f"/v1/plans/{plan_id}", headers=h).json()["features"] == before["features"]
    v = c.get(f"/v1/plans/{plan_id}/validation", headers=h)  # whatever the plan became, it can be checked
    assert v.status_code == 200, v.text


@pytest.mark.parametrize(("name", "body", "detail"), [
    ("grids.geojson", b"", "'grids.geojson' could not be read: not recognized as being in a supported file format"),
    ("grids.gpkg", b"garbage", "'grids.gpkg' could not be read"),
    ("grids.zip", b"PK\x03\x04junk", "'grids.zip' is not a zip archive"),
    ("grids.txt", b"x", "Invalid file: 'grids.txt'; send a .geojson, .gpkg or zipped Shapefile (.zip)"),
    ("grids.geojson", b'{"type": "FeatureCollection", "features": []}', "The file has no features: a plan needs at least one grid polygon"),
    ("grids.geojson", b'{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"code": "3499020010010011"}, '
                      b'"geometry": {"type": "Polygon", "coordinates": [[[117, 31], [117.01, 31], [117.01, 31.01], [117, 31]]]}}]}',
     "Feature 1: Invalid value for code: text of 1 to 15 characters, or null"),
])  # fmt: skip
def test_a_bad_file_is_refused_by_its_own_name(world: World, name: str, body: bytes, detail: str) -> None:
    r = world.client.post("/v1/plans/upload", files={"file": (name, body)}, data={"name": "bad", "scope": COMMUNITY_A}, headers=world.planner)
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["detail"].startswith(detail) and "/tmp" not in r.json()["detail"], r.json()["detail"]
