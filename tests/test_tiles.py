"""Vector tiles on a hand-built city: decoded and checked against the database, cached and
dropped when the data under them changes, cut to the caller's reach, and bad requests refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mapbox_vector_tile
import mercantile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from tests.auth_helpers import key_headers
from tests.conftest import own_database
from tests.test_workflow import GRID_A1, GRID_A2, GRID_B1, GRID_B2, IN_A1, build_city
from tiles.layers import LAYERS

IN_A2, IN_B1 = (IN_A1[0] + 0.01, IN_A1[1]), (IN_A1[0], IN_A1[1] + 0.01)
CITY_TILE = mercantile.tile(117.01, 31.01, 12)  # the four grids fit in it


@dataclass
class World:
    engine: Engine
    client: TestClient
    admin: dict[str, str]
    worker: dict[str, str]  # a grid worker of A1
    incidents: dict[str, int]


def report(client: TestClient, headers: dict[str, str], point: tuple[float, float], **kw: Any) -> dict:
    r = client.post("/v1/incidents", json={"category": "0102", "source": "patrol", "lon": point[0], "lat": point[1], **kw},
                    headers=headers)  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    with own_database(database_url_for_tests, "tiles") as engine:
        with Session(engine) as s, s.begin():
            city = build_city(s, tag="tiles")
            for grid, (x, y) in ((GRID_A1, IN_A1), (GRID_B1, IN_B1)):
                s.execute(text("INSERT INTO building (code, use, floors, grid_code, geom) VALUES (:c, 'residential', 6, :g, "
                               "ST_Multi(ST_Expand(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 0.0002)))"),
                          {"c": f"B-{grid}", "g": grid, "x": x + 0.001, "y": y + 0.001})  # fmt: skip
                s.execute(text("INSERT INTO camera (code, name, kind, grid_code, geom) VALUES (:c, :n, 'community', :g, "
                               "ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), {"c": f"CAM-{grid}", "n": f"监控{grid[-3:]}", "g": grid, "x": x, "y": y - 0.001})  # fmt: skip
            s.execute(text("INSERT INTO service_point (name, kind, grid_code, geom) VALUES ('站', 'grid_station', :g, "
                           "ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), {"g": GRID_A1, "x": IN_A1[0] + 0.002, "y": IN_A1[1]})  # fmt: skip
            s.execute(text("INSERT INTO patrol_track (staff_id, started_at, ended_at, ping_count, length_m, geom) VALUES "
                           "(:w, now() - interval '2 hours', now() - interval '1 hour', 30, 1100, "
                           "ST_GeomFromText('LINESTRING(117.001 31.001, 117.009 31.001, 117.009 31.009)', 4326))"),
                      {"w": city.workers[0]})  # fmt: skip
        admin = key_headers(engine, "admin")
        worker = key_headers(engine, "grid_worker", ("grid", GRID_A1))
        with TestClient(create_app(engine=engine)) as client:
            incidents = {"a1": report(client, admin, IN_A1)["id"], "a2": report(client, admin, IN_A2, severity=4)["id"],
                         "b1": report(client, admin, IN_B1)["id"]}  # fmt: skip
            yield World(engine, client, admin, worker, incidents)


def get_tile(world: World, layer: str, t: mercantile.Tile, headers: dict[str, str] | None = None, **params: Any) -> Any:
    return world.client.get(f"/tiles/{layer}/{t.z}/{t.x}/{t.y}.mvt", params=params, headers=headers or world.admin)


def features(world: World, layer: str, t: mercantile.Tile, headers: dict[str, str] | None = None, **params: Any) -> list[dict]:
    r = get_tile(world, layer, t, headers, **params)
    if r.status_code == 204:
        return []
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.mapbox-vector-tile", r.text
    decoded = mapbox_vector_tile.decode(r.content)
    assert set(decoded) == {layer}
    return decoded[layer]["features"]


def scalar_rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def test_layers_and_tilejson(world: World) -> None:
    listed = world.client.get("/tiles", headers=world.admin).json()
    assert [lay["name"] for lay in listed] == list(LAYERS)
    tj = world.client.get("/tiles/incidents.json", headers=world.admin).json()
    assert tj["tilejson"] == "3.0.0" and tj["tiles"][0].endswith("/tiles/incidents/{z}/{x}/{y}.mvt")
    assert tj["vector_layers"][0]["id"] == "incidents" and "overdue" in tj["vector_layers"][0]["fields"]
    west, south, east, north = tj["bounds"]
    assert (west, south) == (117.0, 31.0) and abs(east - 117.02) < 1e-6 and abs(north - 31.02) < 1e-6
    assert world.client.get("/tiles/density.json", params={"days": 90}, headers=world.admin).json()["tiles"][0].endswith("?days=90")


def _grid_counts(world: World, **params: Any) -> dict[str, dict]:
    return {f["properties"]["code"]: f["properties"] for f in features(world, "grids", CITY_TILE, **params)}


def _counted(world: World, days: int = 30) -> dict[str, tuple[int, int, int]]:
    with world.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT g.code, count(i.id) FILTER (WHERE i.status NOT IN ('closed', 'rejected')), "
            "count(i.id) FILTER (WHERE i.status IN ('dispatched', 'in_progress') AND i.deadline_at < now()), "
            "count(i.id) FILTER (WHERE i.reported_at >= now() - make_interval(days => :d)) "
            "FROM grid g LEFT JOIN incident i ON i.grid_code = g.code WHERE g.valid_to IS NULL GROUP BY g.code"), {"d": days}).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_the_grid_tile_is_the_database(world: World) -> None:
    def as_counted() -> bool:
        got = _grid_counts(world)
        return {c: (p["open"], p["overdue"], p["cases"]) for c, p in got.items()} == _counted(world)

    wait_until(as_counted)  # the kept counts follow the reports within a fraction of a second
    got = _grid_counts(world)
    assert set(got) == {GRID_A1, GRID_A2, GRID_B1, GRID_B2}
    assert all(props["community"] == code[:12] for code, props in got.items())
    assert got[GRID_A1]["open"] >= 1 and got[GRID_A1]["name"] == "第001网格"
    low = features(world, "grids", mercantile.tile(117.01, 31.01, 11))  # below zoom 12: no labels, a third lighter
    assert {f["properties"]["code"] for f in low} == set(got) and not any("name" in f["properties"] for f in low)
    assert all(f["properties"]["open"] == got[f["properties"]["code"]]["open"] for f in low)
    week = _grid_counts(world, days=7)  # another window: counted as the tile renders
    assert {c: p["cases"] for c, p in week.items()} == {c: n[2] for c, n in _counted(world, 7).items()}


def test_grid_counts_are_kept_ahead_and_fall_back_when_stale(world: World) -> None:
    from gridmap.services import casecounts

    wait_until(lambda: scalar(world.engine, "SELECT count(*) FROM case_count_refresh") == 1)
    kept = dict(scalar_rows(world.engine, "SELECT grid_code, open FROM grid_case_count"))
    assert kept == {c: n[0] for c, n in _counted(world).items()}  # a row per grid in force, with its shape
    assert scalar(world.engine, "SELECT count(*) FROM grid_case_count WHERE geom_m IS NULL OR ST_SRID(geom_m) <> 3857 OR name IS NULL") == 0
    with world.engine.begin() as conn:  # nothing changed: a recount writes nothing and notifies nothing
        assert casecounts.recount(conn) == [] and casecounts.recount(conn, [GRID_A1, "999999999999999"]) == []
    keeper = world.client.app.state.case_counts
    keeper.close()  # no keeper: the counts go stale, and tiles count as they render again
    try:
        with world.engine.begin() as conn:
            conn.execute(text("UPDATE grid_case_count SET open = open + 100"))
            conn.execute(text("UPDATE case_count_refresh SET refreshed_at = now() - interval '1 hour'"))
            conn.execute(text("SELECT pg_notify('gridmap_layers', 'grid_case_count')"))
        wait_until(lambda: {c: p["open"] for c, p in _grid_counts(world).items()} == {c: n[0] for c, n in _counted(world).items()})
        with world.engine.begin() as conn:  # a full recount repairs the rows and names them
            changed = casecounts.recount(conn)
        assert sorted(changed) == sorted(kept)
    finally:
        world.client.app.state.case_counts = casecounts.CaseCountKeeper(world.engine)
        world.client.app.state.grid_index.subscribers.append(world.client.app.state.case_counts.notice)


def test_case_count_notices_name_the_grids() -> None:
    from gridmap.services.casecounts import changed_codes

    assert changed_codes("grid_case_count") is None
    assert changed_codes("grid_case_count:340104001001001,340104001001002") == ["340104001001001", "340104001001002"]
    assert changed_codes("building") == []


def test_incident_tiles_carry_cases_without_personal_data(world: World) -> None:
    t = mercantile.tile(*IN_A1, 15)
    found = features(world, "incidents", t)
    assert world.incidents["a1"] in {f["id"] for f in found}
    allowed = set(LAYERS["incidents"].fields)
    assert all(set(f["properties"]) <= allowed for f in found)  # no title, description or address
    one = next(f for f in found if f["id"] == world.incidents["a1"])
    assert one["properties"]["status"] == "reported" and one["properties"]["grid_code"] == GRID_A1
    assert one["geometry"]["type"] == "Point"


def test_density_bins_count_every_case_once(world: World) -> None:
    for z in (0, 6, 10, 12):
        t = mercantile.tile(117.01, 31.01, z)
        bins = features(world, "density", t)
        in_window = scalar(world.engine, "SELECT count(*) FROM incident WHERE reported_at >= now() - interval '30 days'")
        assert sum(b["properties"]["n"] for b in bins) == in_window, z
    points = features(world, "density_points", mercantile.tile(*IN_A1, 14))
    assert points and all(p["properties"]["n"] == 1 for p in points)
    assert get_tile(world, "density", mercantile.tile(*IN_A1, 14)).status_code == 204  # above its maxzoom


def test_other_layers(world: World) -> None:
    t = mercantile.tile(*IN_A1, 14)
    assert {f["properties"]["grid_code"] for f in features(world, "buildings", t)} == {GRID_A1}
    assert [f["properties"]["kind"] for f in features(world, "service_points", t)] == ["grid_station"]
    assert sorted(f["properties"]["code"] for f in features(world, "cameras", t)) == ["CAM-" + GRID_A1, "CAM-" + GRID_B1]
    tracks = features(world, "patrols", mercantile.tile(*IN_A1, 13))
    assert len(tracks) == 1 and tracks[0]["geometry"]["type"] == "LineString" and tracks[0]["properties"]["length_m"] == 1100


@pytest.mark.parametrize(("path", "status", "detail"), [
    ("/tiles/grids/23/0/0.mvt", 400, "Invalid tile coordinate z='23': a whole number from 0 to 22"),
    ("/tiles/grids/2/4/0.mvt", 400, "Invalid tile coordinate x='4': a whole number from 0 to 3"),
    ("/tiles/grids/2/0/-1.mvt", 400, "Invalid tile coordinate y='-1': a whole number from 0 to 3"),
    ("/tiles/grids/a/0/0.mvt", 400, "Invalid tile coordinate z='a': a whole number from 0 to 22"),
    ("/tiles/grids/12/0/0.mvt?days=0", 400, "Invalid value for parameter days: a whole number from 1 to 366"),
    ("/tiles/rivers/12/0/0.mvt", 404, None),
    ("/tiles/rivers.json", 404, None),
])  # fmt: skip
def test_bad_tiles_are_refused(world: World, path: str, status: int, detail: str | None) -> None:
    r = world.client.get(path, headers=world.admin)
    assert r.status_code == status and r.headers["content-type"] == "application/problem+json", r.text
    assert detail is None or r.json()["detail"] == detail


def test_empty_and_out_of_zoom_tiles_are_204(world: World) -> None:
    assert get_tile(world, "grids", mercantile.tile(100.0, 40.0, 12)).status_code == 204  # nothing there
    assert get_tile(world, "buildings", mercantile.tile(*IN_A1, 12)).status_code == 204  # below its minzoom


def test_etag_and_conditional_requests(world: World) -> None:
    t = mercantile.tile(*IN_A1, 14)
    first = get_tile(world, "buildings", t)
    again = get_tile(world, "buildings", t)
    assert first.headers["etag"] == again.headers["etag"] and again.headers["x-tile-cache"] == "hit"
    assert first.headers["cache-control"].startswith("private, max-age=")
    unchanged = get_tile(world, "buildings", t, {**world.admin, "If-None-Match": first.headers["etag"]})
    assert unchanged.status_code == 304 and unchanged.content == b""
    again = get_tile(world, "buildings", t, {**world.admin, "Cache-Control": "no-cache"})  # rendered again
    assert again.headers["x-tile-cache"] == "miss" and again.headers["etag"] == first.headers["etag"]


def wait_until(check: Any, seconds: float = 2.0) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "the cached tile outlived the change"
        time.sleep(0.02)
    return time.monotonic() - started


def test_a_new_case_drops_the_tiles_under_it(world: World) -> None:
    spot = (IN_A1[0] + 0.002, IN_A1[1] + 0.003)
    t = mercantile.tile(*spot, 16)
    before = {f["id"] for f in features(world, "incidents", t)}
    assert get_tile(world, "incidents", t).headers.get("x-tile-cache") in ("hit", None)
    grid_open = {f["properties"]["code"]: f["properties"]["open"] for f in features(world, "grids", CITY_TILE)}
    new = report(world.client, world.admin, spot)
    seconds = wait_until(lambda: new["id"] in {f["id"] for f in features(world, "incidents", t)})
    assert before <= {f["id"] for f in features(world, "incidents", t)}
    wait_until(lambda: {f["properties"]["code"]: f["properties"]["open"] for f in features(world, "grids", CITY_TILE)}[GRID_A1]
               == grid_open[GRID_A1] + 1)  # fmt: skip
    far = mercantile.tile(*IN_B1, 16)
    features(world, "incidents", far)
    assert get_tile(world, "incidents", far).headers["x-tile-cache"] == "hit"  # a tile elsewhere stays cached
    print(f"new case visible in its tile after {seconds * 1000:.0f} ms")


def test_a_new_building_drops_the_building_layer(world: World) -> None:
    t = mercantile.tile(*IN_A1, 15)
    count = len(features(world, "buildings", t))
    with world.engine.begin() as conn:
        conn.execute(text("INSERT INTO building (code, use, grid_code, geom) VALUES ('B-late', 'office', :g, "
                          "ST_Multi(ST_Expand(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 0.0001)))"),
                     {"g": GRID_A1, "x": IN_A1[0] + 0.003, "y": IN_A1[1] + 0.001})  # fmt: skip
    wait_until(lambda: len(features(world, "buildings", t)) == count + 1)


def test_tiles_are_cut_to_the_callers_reach(world: World) -> None:
    mine = {f["properties"]["grid_code"] for f in features(world, "incidents", mercantile.tile(117.01, 31.01, 13), world.worker)}
    assert mine == {GRID_A1}
    assert {f["properties"]["code"] for f in features(world, "grids", CITY_TILE, world.worker)} == {GRID_A1}
    r = get_tile(world, "patrols", mercantile.tile(*IN_A1, 13), world.worker)
    assert r.status_code == 403 and r.json()["detail"] == "The patrol tracks layer is for city-wide roles: its features cannot be cut to your grids"
    auditor = key_headers(world.engine, "auditor")
    assert get_tile(world, "grids", CITY_TILE, auditor).status_code == 403
    assert world.client.get(f"/tiles/grids/{CITY_TILE.z}/{CITY_TILE.x}/{CITY_TILE.y}.mvt").status_code == 401


def test_the_gap_layer_shows_the_coverage_snapshot(world: World) -> None:
    from gridmap.services import stats

    t = mercantile.tile(*IN_A1, 14)
    assert get_tile(world, "gaps", t).status_code == 204  # nothing computed yet
    with Session(world.engine) as s, s.begin():
        done = stats.refresh_coverage(s, days=1)
    assert done["grids"] == 4
    wait_until(lambda: get_tile(world, "gaps", t).status_code == 200)  # the refresh dropped the cached empty tile
    gaps = {f["properties"]["grid_code"]: f["properties"] for f in features(world, "gaps", t)}
    assert 0 < gaps[GRID_A1]["covered_share"] < 1 and gaps[GRID_A1]["tracks"] == 1
    assert {f["properties"]["grid_code"] for f in features(world, "gaps", t, world.worker)} == {GRID_A1}  # cut to his grid


def test_a_redrawn_grid_reaches_the_low_zoom_tiles(world: World) -> None:
    low = mercantile.tile(117.01, 31.01, 11)
    before = {f["properties"]["code"]: f["properties"]["area_km2"] for f in features(world, "grids", low)}
    with world.engine.begin() as conn:  # B2 gives up its northern tenth (a new version, as a plan would write it)
        old = conn.execute(text("SELECT id FROM grid WHERE code = :g AND valid_to IS NULL"), {"g": GRID_B2}).scalar_one()
        conn.execute(text("UPDATE grid SET valid_to = now() WHERE id = :i"), {"i": old})
        conn.execute(text("INSERT INTO grid (code, name, community_id, geom, valid_from) SELECT code, name, community_id, "
                          "ST_Multi(ST_GeomFromText('POLYGON((117.01 31.01, 117.02 31.01, 117.02 31.019, 117.01 31.019, 117.01 31.01))', 4326)), "
                          "valid_to FROM grid WHERE id = :i"), {"i": old})  # fmt: skip
    wait_until(lambda: {f["properties"]["code"]: f["properties"]["area_km2"] for f in features(world, "grids", low)}[GRID_B2]
               == pytest.approx(before[GRID_B2] * 0.9, rel=1e-3))  # fmt: skip
    assert scalar(world.engine, "SELECT grid_id FROM grid_case_count WHERE grid_code = :g", g=GRID_B2) != old
    with world.engine.begin() as conn:  # a grid renamed in place: its kept row follows
        conn.execute(text("UPDATE grid SET name = '更名网格' WHERE code = :g AND valid_to IS NULL"), {"g": GRID_A2})
    wait_until(lambda: _grid_counts(world)[GRID_A2]["name"] == "更名网格")
