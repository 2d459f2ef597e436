"""Locate on hand-built grids with known answers: edges, vertices, holes, outside, history."""

from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from api.app import create_app
from gridmap import auth, migrate
from gridmap import crs as crs_mod
from tests.auth_helpers import key_headers
from tests.conftest import drop_database, make_database

P = "349990001001"  # community code of the test grids


def box(x0: float, y0: float, x1: float, y1: float, hole: tuple[float, float, float, float] | None = None) -> str:
    ring = f"({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})"
    if hole:
        h0, k0, h1, k1 = hole
        ring += f",({h0} {k0},{h0} {k1},{h1} {k1},{h1} {k0},{h0} {k0})"
    return f"MULTIPOLYGON(({ring}))"


GRIDS = [
    # code serial, wkt, valid_from, valid_to
    ("001", box(117.20, 31.80, 117.21, 31.81, hole=(117.204, 31.804, 117.206, 31.806)), "2024-01-01", None),  # A, unfilled hole
    ("002", box(117.21, 31.80, 117.22, 31.81), "2024-01-01", None),  # B
    ("003", box(117.20, 31.81, 117.21, 31.82), "2024-01-01", None),  # C
    ("004", box(117.21, 31.81, 117.22, 31.82, hole=(117.214, 31.814, 117.216, 31.816)), "2024-01-01", None),  # D
    ("005", box(117.214, 31.814, 117.216, 31.816), "2024-01-01", None),  # E fills D's hole
    ("006", box(117.22, 31.80, 117.23, 31.81), "2020-01-01", "2021-01-01"),  # F, only in the past
]


@pytest.fixture(scope="module")
def locate_engine(database_url_for_tests: str) -> Iterator[Engine]:
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_locate")
    eng = create_engine(url)
    migrate.upgrade(eng)
    with eng.begin() as conn:
        area = box(117.19, 31.79, 117.24, 31.83)
        ids = {}
        for code, level, parent in [("349990", "district", None), ("349990001", "street", "349990"), (P, "community", "349990001")]:
            ids[code] = conn.execute(
                text("INSERT INTO admin_area (code, level, name, parent_id, geom) VALUES (:c, :l, :n, :p, ST_GeomFromText(:g, 4326)) RETURNING id"),
                {"c": code, "l": level, "n": code, "p": ids.get(parent), "g": area},
            ).scalar_one()
        for serial, wkt, vf, vt in GRIDS:
            conn.execute(
                text("INSERT INTO grid (code, name, community_id, geom, valid_from, valid_to) VALUES (:code, :name, :c, ST_GeomFromText(:g, 4326), :vf, :vt)"),
                {"code": P + serial, "name": f"网格{serial}", "c": ids[P], "g": wkt, "vf": vf, "vt": vt},
            )
        conn.execute(text("INSERT INTO staff (username, name, role, duty_status) VALUES ('w1', '张三', 'grid_worker', 'on_duty'), ('w2', '李四', 'grid_worker', 'off_duty'), ('l1', '王五', 'grid_leader', 'on_duty')"))
        conn.execute(text(f"""INSERT INTO staff_scope (staff_id, level, code) SELECT id, CASE role WHEN 'grid_leader' THEN 'community' ELSE 'grid' END,
                              CASE role WHEN 'grid_leader' THEN '{P}' ELSE '{P}001' END FROM staff"""))  # fmt: skip
    yield eng
    eng.dispose()
    drop_database(url)


@pytest.fixture(scope="module")
def client(locate_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=locate_engine), headers=key_headers(locate_engine, "dispatcher")) as c:
        yield c


def locate(client: TestClient, lon: float, lat: float, **params: object) -> httpx.Response:
    return client.get("/v1/locate", params={"lon": lon, "lat": lat, **params})


def test_interior_point_with_hierarchy_staff_and_distance(client: TestClient) -> None:
    body = locate(client, 117.201, 31.8015).json()
    assert body["grid"]["code"] == P + "001" and body["grid"]["kind"] == "general"
    assert (body["community"]["code"], body["street"]["code"], body["district"]["code"]) == (P, "349990001", "349990")
    assert body["distance_to_boundary_m"] == pytest.approx(94.6, abs=1.0)  # 0.001° of longitude at 31.8°N
    assert body["near_boundary"] is False and body["neighbours"] == []
    staff = body["staff"]
    assert [p["name"] for p in staff["grid_workers_on_duty"]] == ["张三"]
    assert [p["name"] for p in staff["grid_workers_off_duty"]] == ["李四"]
    assert [p["name"] for p in staff["grid_leaders"]] == ["王五"]


def test_point_on_shared_edge_goes_to_lowest_code(client: TestClient) -> None:
    body = locate(client, 117.21, 31.805).json()
    assert body["grid"]["code"] == P + "001"
    assert body["near_boundary"] is True
    assert [(n["code"], n["distance_m"]) for n in body["neighbours"]] == [(P + "002", 0.0)]


def test_point_on_shared_vertex_goes_to_lowest_code(client: TestClient) -> None:
    body = locate(client, 117.21, 31.81).json()
    assert body["grid"]["code"] == P + "001"
    assert sorted(n["code"] for n in body["neighbours"]) == [P + "002", P + "003", P + "004"]


def test_near_boundary_names_the_neighbour(client: TestClient) -> None:
    body = locate(client, 117.20995, 31.805).json()  # ~4.7 m west of the A|B edge
    assert body["grid"]["code"] == P + "001"
    assert body["distance_to_boundary_m"] == pytest.approx(4.7, abs=0.3)
    assert body["neighbours"][0]["code"] == P + "002" and body["neighbours"][0]["distance_m"] == pytest.approx(4.7, abs=0.3)
    assert locate(client, 117.20995, 31.805, near=2).json()["near_boundary"] is False


def test_filled_hole_belongs_to_the_grid_inside_it(client: TestClient) -> None:
    assert locate(client, 117.215, 31.815).json()["grid"]["code"] == P + "005"


def test_unfilled_hole_and_outside_are_404_naming_the_nearest(client: TestClient) -> None:
    r = locate(client, 117.205, 31.805)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["nearest"]["code"] == P + "001" and body["nearest"]["distance_m"] == pytest.approx(94.6, abs=1.0)
    assert body["detail"] == (f"Point (lon=117.205, lat=31.805) lies outside every grid in force; the nearest grid is "
                              f"{P}001 (网格001), 95 m away")  # fmt: skip
    r = locate(client, 117.225, 31.805)  # where F was, in the past
    assert r.status_code == 404 and r.json()["nearest"]["code"] == P + "002"


def test_at_answers_with_the_grids_in_force_then(client: TestClient) -> None:
    body = locate(client, 117.225, 31.805, at="2020-06-01T00:00:00+08:00").json()
    assert body["grid"]["code"] == P + "006" and body["at"] == "2020-06-01T00:00:00+08:00"
    assert locate(client, 117.201, 31.8015, at="2020-06-01T00:00:00+08:00").status_code == 404
    assert locate(client, 117.201, 31.8015, at="2025-06-01T00:00:00+08:00").json()["grid"]["code"] == P + "001"
    # the exact path gives the same answer shape and distances as the in-memory one
    now = locate(client, 117.21, 31.805).json()
    then = locate(client, 117.21, 31.805, at="2026-06-01T00:00:00+08:00").json()
    for key in ("grid", "community", "street", "district", "distance_to_boundary_m", "neighbours"):
        assert now[key] == then[key]


def test_phone_map_coordinates_are_converted(client: TestClient) -> None:
    for name in ("GCJ02", "BD09"):
        x, y = crs_mod.from_wgs84(117.201, 31.8015, name)
        assert locate(client, x, y, crs=name).json()["grid"]["code"] == P + "001"


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"lon": 31.805, "lat": 117.201}, 422, "Invalid value for parameter lat: 117.201 is outside [-90, 90]; longitude and latitude look swapped"),
        ({"lon": 190, "lat": 31.8}, 422, "Invalid value for parameter lon: 190 is outside [-180, 180]"),
        ({"lon": 117.2, "lat": 31.8, "crs": "EPSG:3857"}, 422, "Unknown crs 'EPSG:3857': use one of BD09, EPSG:4326, EPSG:4490, GCJ02"),
        ({"lon": "east", "lat": 31.8}, 422, "Invalid value for parameter lon: Input should be a valid number, unable to parse string as a number"),
        ({"lat": 31.8}, 422, "Missing required parameter lon"),
        ({"lon": 117.2, "lat": 31.8, "near": 1000}, 422, "Invalid value for parameter near: Input should be less than or equal to 500"),
        ({"lon": 117.2, "lat": 31.8, "at": "2026-01-01T00:00:00"}, 422, "Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ({"lon": 2.35, "lat": 48.85, "crs": "GCJ02"}, 422, "Invalid coordinates for crs GCJ02: (2.35, 48.85) lies outside China, where GCJ-02 is not defined"),
    ],
)
def test_bad_input_is_a_clear_problem(client: TestClient, params: dict, status: int, detail: str) -> None:
    r = client.get("/v1/locate", params=params)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == detail


def test_far_away_point_is_refused_with_the_extent(client: TestClient) -> None:
    r = locate(client, 121.47, 31.23)  # Shanghai: in range, far from this deployment
    assert r.status_code == 422 and "lies outside the deployment area" in r.json()["detail"]


def test_batch_csv_and_geojson(client: TestClient) -> None:
    csv_body = "id,lon,lat\na,117.201,31.8015\nb,117.21,31.805\nc,117.205,31.805\nd,abc,31.8\ne,117.215,31.815\n"
    r = client.post("/v1/locate/batch", content=csv_body, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = [line.split(",") for line in r.text.strip().splitlines()]
    assert lines[0][:3] == ["id", "status", "grid_code"]
    got = {row[0]: (row[1], row[2]) for row in lines[1:]}
    assert got == {"a": ("ok", P + "001"), "b": ("ok", P + "001"), "c": ("outside", ""),
                   "d": ("invalid: lon and lat must be numbers", ""), "e": ("ok", P + "005")}  # fmt: skip
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "x", "geometry": {"type": "Point", "coordinates": [117.225, 31.805]}, "properties": {}}]}  # fmt: skip
    r = client.post("/v1/locate/batch", json=fc, params={"at": "2020-06-01T00:00:00+08:00"})
    assert r.text.splitlines()[1].split(",")[1:3] == ["ok", P + "006"]
    # ids with commas, quotes and line breaks come back quoted as CSV
    odd = ['a,b', 'say "hi"', "two\nlines", "plain"]
    fc["features"] = [{**fc["features"][0], "id": i} for i in odd]
    rows = list(csv.reader(io.StringIO(client.post("/v1/locate/batch", json=fc).text)))
    assert [row[0] for row in rows[1:]] == odd and all(len(row) == 9 for row in rows)


@pytest.mark.parametrize(
    ("body", "ctype", "status", "detail"),
    [
        ("", "text/csv", 422, "The request body is empty: send CSV with columns id,lon,lat or a GeoJSON FeatureCollection of points"),
        ("a,b\n1,2\n", "text/csv", 422, "The CSV needs a header with lon and lat columns (and optionally id); found: a, b"),
        ('{"type": "Feature"}', "application/geo+json", 422, "The GeoJSON body must be a FeatureCollection of Point features"),
        ("id,lon,lat\n" + "1,117.2,31.8\n" * 100_001, "text/csv", 413, "Too many points: 100,001; at most 100,000 per request"),
    ],
)
def test_batch_bad_input(client: TestClient, body: str, ctype: str, status: int, detail: str) -> None:
    r = client.post("/v1/locate/batch", content=body, headers={"content-type": ctype})
    assert r.status_code == status and r.json()["detail"] == detail


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_boundary_change_and_revocation_reach_every_api_process_within_a_second(locate_engine: Engine) -> None:
    """Two uvicorn workers serve; a plan-like change commits; both answer anew in < 1 s. Then
    the key they both cached is revoked, and both refuse it in < 1 s."""
    key = key_headers(locate_engine, "dispatcher")
    port = _free_port()
    url = locate_engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "GRIDMAP_DATABASE_URL": url}
    proc = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port), "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    point = {"lon": 117.205, "lat": 31.8095}  # in A, near its top edge
    try:
        # a fresh connection per request, so the kernel spreads requests over both workers
        with httpx.Client(base_url=base, timeout=2, headers={"Connection": "close", **key}) as http:
            deadline = time.monotonic() + 30
            pids: set[int] = set()
            while len(pids) < 2 and time.monotonic() < deadline:  # wait until both workers serve
                try:
                    pids.add(http.get("/v1/locate/index").json()["pid"])
                except httpx.HTTPError:
                    time.sleep(0.2)
            assert len(pids) == 2, proc.stderr.read().decode() if proc.poll() is not None else "workers did not start"
            assert http.get("/v1/locate", params=point).json()["grid"]["code"] == P + "001"
            with locate_engine.begin() as conn:  # A ends; C grows over A's top strip, as a plan would do
                conn.execute(text("UPDATE grid SET valid_to = now() WHERE code = :c AND valid_to IS NULL"), {"c": P + "001"})
                conn.execute(text("UPDATE grid SET valid_to = now() WHERE code = :c AND valid_to IS NULL"), {"c": P + "003"})
                conn.execute(text(f"""INSERT INTO grid (code, name, community_id, geom, valid_from)
                    SELECT '{P}003', '网格003', community_id, ST_Multi(ST_GeomFromText('POLYGON((117.20 31.809,117.21 31.809,117.21 31.82,117.20 31.82,117.20 31.809))', 4326)), now()
                    FROM grid WHERE code = '{P}003' LIMIT 1"""))  # fmt: skip
            committed = time.monotonic()
            fresh: dict[int, float] = {}
            while len(fresh) < 2 and time.monotonic() - committed < 5:
                r = http.get("/v1/locate", params=point)
                pid = int(r.headers["x-gridmap-pid"])
                if r.status_code == 200 and r.json()["grid"]["code"] == P + "003":
                    fresh.setdefault(pid, time.monotonic() - committed)
            assert len(fresh) == 2, f"only {fresh} saw the change"
            print(f"boundary change seen by {len(fresh)} processes after {fresh}")
            assert max(fresh.values()) < 1.0, fresh

            with locate_engine.begin() as conn:  # both processes have the key's caller cached now
                conn.execute(text("UPDATE api_key SET revoked_at = now() WHERE key_hash = :h"),
                             {"h": auth._key_hash(key["X-API-Key"])})  # fmt: skip
            revoked = time.monotonic()
            streak, refused_after = 0, None
            while streak < 20 and time.monotonic() - revoked < 5:  # 20 in a row: both processes refuse
                streak = streak + 1 if http.get("/v1/locate", params=point).status_code == 401 else 0
                if streak == 1:
                    refused_after = time.monotonic() - revoked
            print(f"revoked key refused by every process after {refused_after}")
            assert streak == 20 and refused_after is not None and refused_after < 1.0, (streak, refused_after)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        with locate_engine.begin() as conn:  # restore A and C for the other tests
            conn.execute(text(f"DELETE FROM grid WHERE code = '{P}003' AND valid_to IS NULL"))
            conn.execute(text(f"UPDATE grid SET valid_to = NULL WHERE code IN ('{P}001', '{P}003') AND valid_from = '2024-01-01'"))
