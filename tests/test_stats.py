"""Command-center analytics against answers known by construction: coverage of a grid with one
hand-laid track, Gi* on a planted cluster, the three zeros, counts and rates per grid; and the
endpoints that serve them."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import shapely
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.app import create_app
from gridmap.access import Scope
from gridmap.crs import metric_epsg_for
from gridmap.services import stats
from tests.auth_helpers import key_headers
from tests.conftest import own_database
from tests.test_workflow import GRID_A1, GRID_A2, GRID_B1, IN_A1, T0, build_city, report, square

LATTICE = "349903001001"  # a community of 7 × 7 grids of 0.005° for the hotspot test
SIDE, CELL, ORIGIN = 7, 0.005, (118.0, 31.0)
CENTRE = f"{LATTICE}{3 * SIDE + 3 + 1:03d}"  # the middle cell
TRACK = ((117.003, 31.005), (117.003 + 500 / (111_320 * math.cos(math.radians(31.005))), 31.005))  # 500 m east
SINCE, UNTIL = T0 - dt.timedelta(days=10), T0 + dt.timedelta(days=1)
CITY = Scope(clear=False, all_grids=True, grids=())


@dataclass
class World:
    engine: Engine
    client: TestClient
    headers: dict[str, str]


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    with own_database(database_url_for_tests, "stats") as engine:
        with Session(engine) as s, s.begin():
            city = build_city(s, tag="stats")
            ids = {}
            for code, level, parent in (("349903", "district", None), ("349903001", "street", "349903"), (LATTICE, "community", "349903001")):
                ids[code] = s.execute(text("INSERT INTO admin_area (code, level, name, parent_id, geom) VALUES "
                                           "(:c, :l, :n, :p, ST_GeomFromText(:g, 4326)) RETURNING id"),
                                      {"c": code, "l": level, "n": f"区域{code}", "p": ids.get(parent or ""),
                                       "g": square(*ORIGIN, SIDE * CELL, SIDE * CELL)}).scalar_one()  # fmt: skip
            for row in range(SIDE):
                for col in range(SIDE):
                    s.execute(text("INSERT INTO grid (code, name, community_id, geom, valid_from) VALUES "
                                   "(:c, :n, :cm, ST_GeomFromText(:g, 4326), '2020-01-01')"),
                              {"c": f"{LATTICE}{row * SIDE + col + 1:03d}", "n": f"格{row}{col}", "cm": ids[LATTICE],
                               "g": square(ORIGIN[0] + col * CELL, ORIGIN[1] + row * CELL, CELL, CELL)})  # fmt: skip
            # a cluster: 24 cases in the centre cell, 12 in each of its 8 neighbours, 1 in each other cell
            for row in range(SIDE):
                for col in range(SIDE):
                    n = 24 if (row, col) == (3, 3) else 12 if abs(row - 3) <= 1 and abs(col - 3) <= 1 else 1
                    point = (ORIGIN[0] + (col + 0.5) * CELL, ORIGIN[1] + (row + 0.5) * CELL)
                    for _ in range(n):
                        report(s, point=point)
            report(s, point=IN_A1, category="1501")  # a petition in A1
            report(s, point=(IN_A1[0] + 0.01, IN_A1[1]))  # an ordinary case in A2
            s.execute(text("INSERT INTO resident (grid_code, name) SELECT :g, 'r' || i FROM generate_series(1, 400) i"), {"g": GRID_A1})
            s.execute(text("INSERT INTO patrol_track (staff_id, started_at, ended_at, ping_count, length_m, geom) VALUES "
                           "(:w, :at, :at + interval '1 hour', 20, 500, ST_MakeLine(ST_MakePoint(:x0, :y0), ST_MakePoint(:x1, :y1)))"),
                      {"w": city.workers[0], "at": T0 - dt.timedelta(days=1), "x0": TRACK[0][0], "y0": TRACK[0][1],
                       "x1": TRACK[1][0], "y1": TRACK[1][1]})  # fmt: skip
            s.execute(text("UPDATE patrol_track SET geom = ST_SetSRID(geom, 4326)"))
            s.execute(text("INSERT INTO road (name, kind, geom) VALUES ('纵路', 'local', "
                           "ST_GeomFromText('LINESTRING(117.005 31.0, 117.005 31.01)', 4326))"))  # fmt: skip
        with TestClient(create_app(engine=engine)) as client:
            yield World(engine, client, key_headers(engine, "command_center"))


def test_coverage_of_a_hand_laid_track(world: World) -> None:
    with Session(world.engine) as s:
        got = stats.coverage(s, CITY, since=SINCE, until=UNTIL, buffer_m=50).set_index("code")
    to_m = Transformer.from_crs(4326, metric_epsg_for(117.005), always_xy=True)
    a1 = shapely.Polygon([to_m.transform(x, y) for x, y in [(117.0, 31.0), (117.01, 31.0), (117.01, 31.01), (117.0, 31.01)]])
    expected = (2 * 50 * 500 + math.pi * 50**2) / a1.area  # a 500 m track's 50 m buffer, wholly inside A1
    assert got.loc[GRID_A1, "covered_share"] == pytest.approx(expected, rel=0.01)
    assert got.loc[GRID_A1, "tracks"] == 1 and got.loc[GRID_A2, "covered_share"] == 0 and got.loc[GRID_A2, "tracks"] == 0
    assert got.loc[GRID_A1, "road_covered_share"] == pytest.approx(100 / got.loc[GRID_A1, "road_m"], rel=0.02)  # 100 m of road inside the buffer
    assert math.isnan(got.loc[GRID_A2, "road_covered_share"])  # no road there
    uncovered = got.loc[GRID_A1, "uncovered"]
    assert uncovered.geom_type == "Polygon" and len(uncovered.interiors) == 1  # the grid with the patrolled strip cut out


def test_hotspots_find_the_planted_cluster(world: World) -> None:
    with Session(world.engine) as s:
        frame = stats.grid_stats(s, CITY, since=SINCE, until=UNTIL)
    lattice = frame[frame["community"] == LATTICE]
    spots = stats.hotspots(lattice, value="cases").set_index("code")
    assert spots.loc[CENTRE, "spot"] == "hot_99" and spots.loc[CENTRE, "gi_p"] < 0.01
    corners = [f"{LATTICE}{k:03d}" for k in (1, SIDE, SIDE * (SIDE - 1) + 1, SIDE * SIDE)]
    assert all(spots.loc[c, "spot"] in ("none", "cold_90", "cold_95", "cold_99") for c in corners)
    hot = {int(code[-3:]) - 1 for code in spots.index[spots["spot"].str.startswith("hot")]}
    cluster = {r * SIDE + c for r in (2, 3, 4) for c in (2, 3, 4)}
    assert cluster <= hot and all(abs(k // SIDE - 3) <= 2 and abs(k % SIDE - 3) <= 2 for k in hot)  # around it, not beyond
    permuted = stats.hotspots(lattice, value="cases", permutations=499).set_index("code")
    assert permuted.loc[CENTRE, "gi_p"] <= 0.01


def test_counts_rates_and_the_three_zeros(world: World) -> None:
    with Session(world.engine) as s:
        frame = stats.grid_stats(s, CITY, since=SINCE, until=UNTIL).set_index("code")
        zeros = stats.three_zeros(s, CITY, since=SINCE, until=UNTIL).set_index("code")
        communities = stats.three_zeros(s, CITY, since=SINCE, until=UNTIL, level="community").set_index("code")
    assert frame.loc[GRID_A1, "cases"] == 1 and frame.loc[GRID_A1, "residents"] == 400
    assert frame.loc[GRID_A1, "per_1000"] == pytest.approx(2.5)
    assert frame.loc[CENTRE, "cases"] == 24 and frame.loc[CENTRE, "per_km2"] == pytest.approx(24 / frame.loc[CENTRE, "area_km2"])
    assert frame.loc[GRID_A1, "open"] == 1 and math.isnan(frame.loc[GRID_B1, "per_1000"])  # nobody lives in B1
    assert not zeros.loc[GRID_A1, "zero_petitions"] and zeros.loc[GRID_A2, "all_zero"]
    assert communities.loc[GRID_A1[:12], "petitions"] == 1 and communities.loc[LATTICE, "all_zero"]


def test_the_patrol_gap_ranking(world: World) -> None:
    with Session(world.engine) as s:
        frame = stats.grids(s, CITY)
        ranked = stats.patrol_gaps(stats.grid_stats(s, CITY, since=SINCE, until=UNTIL),
                                   stats.coverage(s, CITY, since=SINCE, until=UNTIL, frame=frame))  # fmt: skip
    assert ranked.iloc[0]["code"] == CENTRE  # the densest grid, never patrolled
    a1 = ranked.set_index("code").loc[GRID_A1]
    assert a1["gap_index"] < ranked.iloc[0]["gap_index"] and 0 < a1["covered_share"] < 1


def test_the_endpoints(world: World) -> None:
    window = {"from": SINCE.isoformat(), "to": UNTIL.isoformat()}
    r = world.client.get("/v1/stats/grids", params=window, headers=world.headers)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert len(body["features"]) == 4 + SIDE * SIDE and body["meta"]["since"] == SINCE.isoformat()
    assert {f["properties"]["code"]: f["properties"]["cases"] for f in body["features"]}[CENTRE] == 24
    hot = world.client.get("/v1/stats/hotspots", params={**window, "value": "cases", "format": "json"}, headers=world.headers).json()
    assert {row["code"]: row["spot"] for row in hot["items"]}[CENTRE] == "hot_99"
    cov = world.client.get("/v1/stats/coverage", params=window, headers=world.headers).json()
    assert {f["properties"]["code"] for f in cov["features"]} >= {GRID_A1, GRID_A2}
    gaps = world.client.get("/v1/stats/gaps", params={**window, "limit": 3}, headers=world.headers).json()
    assert [row["gap_rank"] for row in gaps["items"]] == [1, 2, 3] and gaps["items"][0]["code"] == CENTRE
    zeros = world.client.get("/v1/stats/three-zeros", params={**window, "level": "community"}, headers=world.headers).json()
    assert {row["code"] for row in zeros["items"]} == {GRID_A1[:12], GRID_B1[:12], LATTICE}
    worker = key_headers(world.engine, "grid_worker", ("grid", GRID_A1))
    mine = world.client.get("/v1/stats/grids", params={**window, "format": "json"}, headers=worker).json()
    assert [row["code"] for row in mine["items"]] == [GRID_A1]  # cut to the caller's reach
    lattice = world.client.get("/v1/stats/grids", params={**window, "area": LATTICE, "format": "json"}, headers=world.headers).json()
    assert len(lattice["items"]) == SIDE * SIDE
    beyond = world.client.get("/v1/stats/grids", params={**window, "area": LATTICE, "format": "json"}, headers=worker).json()
    assert beyond["items"] == []  # an area outside one's reach has no grids
    with Session(world.engine) as s, pytest.raises(Exception, match="narrow it with area="):
        stats.coverage(s, CITY, since=SINCE, until=UNTIL, max_grids=10)
    for params, detail in [({"from": "2026-01-01T00:00:00"}, "Invalid value for parameter from: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
                           ({"category": "9999"}, "Unknown category '9999'"),
                           ({"format": "xml"}, "Invalid value for parameter format: geojson or json")]:  # fmt: skip
        bad = world.client.get("/v1/stats/grids", params=params, headers=world.headers)
        assert bad.status_code == 422 and bad.json()["detail"] == detail
    assert world.client.get("/v1/stats/coverage", params={"buffer_m": 0}, headers=world.headers).status_code == 422
    assert world.client.get("/v1/stats/hotspots", params={"value": "name"}, headers=world.headers).status_code == 422
    assert world.client.get("/v1/stats/grids", headers=key_headers(world.engine, "auditor")).status_code == 403


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(["/v1/stats/grids", "/v1/stats/hotspots", "/v1/stats/coverage", "/v1/stats/gaps", "/v1/stats/three-zeros"]),
       params=st.dictionaries(st.sampled_from(["from", "to", "category", "value", "buffer_m", "format", "geometry", "level",
                                               "permutations", "limit"]),
                              st.one_of(st.text(max_size=12), st.sampled_from(["2026-11-01T00:00:00+08:00", "0", "-1", "1e9", "nan",
                                                                               "geojson", "json", "cases", "community", "0102"])),
                              max_size=4))  # fmt: skip
def test_no_stats_query_gives_a_500(world: World, path: str, params: dict[str, str]) -> None:
    r = world.client.get(path, params=params, headers=world.headers)
    assert r.status_code in (200, 422), (params, r.text)
