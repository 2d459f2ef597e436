"""Who to send, and GPS positions, on the demo city."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from gridmap import crs as crs_mod
from tests.auth_helpers import key_headers


@pytest.fixture(scope="module")
def client(demo_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(engine=demo_engine), headers=key_headers(demo_engine, "admin")) as c:
        yield c


def one(engine: Engine, sql: str, **params: object):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text(sql), params).first()


def test_candidates_grid_workers_first_then_nearest_by_knn(client: TestClient, demo_engine: Engine) -> None:
    inc = one(demo_engine, "SELECT id, grid_code FROM incident WHERE status NOT IN ('closed', 'rejected') ORDER BY id LIMIT 1")
    body = client.get(f"/v1/incidents/{inc.id}/candidates", params={"limit": 5}).json()
    own = body["grid_workers"]
    assert own and all(inc.grid_code in p["scope"] for p in own)
    assert [p["duty_status"] == "on_duty" for p in own] == sorted([p["duty_status"] == "on_duty" for p in own], reverse=True)
    nearest = body["nearest"]
    assert 0 < len(nearest) <= 5 and not {p["id"] for p in nearest} & {p["id"] for p in own}
    assert [p["distance_m"] for p in nearest] == sorted(p["distance_m"] for p in nearest)
    # the same answer by brute force over every eligible staff member
    with demo_engine.connect() as conn:
        brute = conn.execute(text("""
            SELECT s.id FROM staff s, incident i WHERE i.id = :id AND s.active AND s.duty_status = 'on_duty'
              AND s.last_position IS NOT NULL AND s.role IN ('grid_worker', 'grid_leader')
              AND s.id <> ALL(:own)
            ORDER BY ST_Distance(s.last_position::geography, i.geom::geography), s.id LIMIT 5"""),
            {"id": inc.id, "own": [p["id"] for p in own]}).scalars().all()  # fmt: skip
    assert [p["id"] for p in nearest] == brute
    p = nearest[0]
    assert p["eta_min"] == pytest.approx(2.0 + p["distance_m"] * 1.3 / 4.2 / 60, abs=0.1)


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/v1/incidents/999999999/candidates", 404, "No incident 999999999"),
        ("/v1/incidents/1/candidates?limit=0", 422, "Invalid value for parameter limit: must be between 1 and 100"),
        ("/v1/incidents/abc/candidates", 422, "Invalid value for parameter incident_id: Input should be a valid integer, unable to parse string as an integer"),
    ],
)
def test_candidates_bad_input(client: TestClient, path: str, status: int, detail: str) -> None:
    r = client.get(path)
    assert r.status_code == status and r.json()["detail"] == detail


def test_candidates_for_a_closed_case_is_a_conflict(client: TestClient, demo_engine: Engine) -> None:
    inc = one(demo_engine, "SELECT id, code FROM incident WHERE status = 'closed' LIMIT 1")
    r = client.get(f"/v1/incidents/{inc.id}/candidates")
    assert r.status_code == 409 and r.json()["detail"] == f"Incident {inc.code} is closed: there is no one to send"


def test_positions_batch_in_phone_coordinates_moves_the_last_position(client: TestClient, demo_engine: Engine) -> None:
    sid = one(demo_engine, "SELECT id FROM staff WHERE role = 'grid_worker' ORDER BY id DESC LIMIT 1").id
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    wgs = [(117.2601, 31.8471), (117.2605, 31.8474), (117.2610, 31.8478)]
    gcj = [crs_mod.from_wgs84(x, y, "GCJ02") for x, y in wgs]
    body = {"crs": "GCJ02", "positions": [
        {"lon": x, "lat": y, "at": (now - dt.timedelta(minutes=3 - k)).isoformat(), "accuracy_m": 5} for k, (x, y) in enumerate(gcj)]}  # fmt: skip
    before = one(demo_engine, "SELECT count(*) n FROM patrol_ping WHERE staff_id = :s", s=sid).n
    r = client.post(f"/v1/staff/{sid}/positions", json=body)
    assert r.status_code == 200 and r.json()["accepted"] == 3 and r.json()["last_position_updated"] is True
    row = one(demo_engine, "SELECT ST_X(last_position) x, ST_Y(last_position) y FROM staff WHERE id = :s", s=sid)
    assert (row.x, row.y) == (pytest.approx(117.2610, abs=1e-7), pytest.approx(31.8478, abs=1e-7))
    assert one(demo_engine, "SELECT count(*) n FROM patrol_ping WHERE staff_id = :s", s=sid).n == before + 3


@pytest.mark.parametrize(
    ("positions", "status", "detail"),
    [
        ([{"lon": 117.26, "lat": 31.84, "at": "2999-01-01T00:00:00+08:00"}, {"lon": 117.26, "lat": 95, "at": "2026-01-01T00:00:00+08:00"}],
         422, "2 of 2 positions are invalid; nothing was stored: positions[0].at: 2999-01-01T00:00:00+08:00 is in the future; positions[1]: lon must lie in [-180, 180] and lat in [-90, 90]"),
        ([{"lon": 117.26, "lat": 31.84, "at": "NOW-NAIVE"}], 422, "positions[0].at: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ([], 422, "Invalid value for positions: send at least one position"),
        ([{"lon": 117.26, "lat": 31.84, "at": "2026-11-01T00:00:00+08:00", "speed": 3}], 422, "Invalid value for parameter positions.0.speed: Extra inputs are not permitted"),
    ],
)
def test_positions_bad_batches_store_nothing(client: TestClient, demo_engine: Engine, positions: list, status: int, detail: str) -> None:
    naive = dt.datetime.now().replace(microsecond=0).isoformat()
    positions = [{**p, "at": naive} if p.get("at") == "NOW-NAIVE" else p for p in positions]
    before = one(demo_engine, "SELECT count(*) n FROM patrol_ping").n
    r = client.post("/v1/staff/1/positions", json={"positions": positions})
    assert r.status_code == status
    assert detail in r.json()["detail"]
    assert one(demo_engine, "SELECT count(*) n FROM patrol_ping").n == before


def test_positions_for_unknown_staff(client: TestClient) -> None:
    r = client.post("/v1/staff/999999/positions", json={"positions": [{"lon": 117.26, "lat": 31.84, "at": "2026-11-01T00:00:00+08:00"}]})
    assert r.status_code == 404 and r.json()["detail"] == "No staff member 999999"
