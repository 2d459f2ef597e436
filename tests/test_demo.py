"""The demo city is realistic where it matters and deterministic for a seed."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from sqlalchemy import text

from gridmap import idnumber
from gridmap.demo.city import HH_MAX, HH_MIN
from gridmap.demo.load import generate_frames
from gridmap.errors import InvalidInput, SetupError


def scalar(engine, sql: str):  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def test_every_layer_is_populated(demo_engine) -> None:  # type: ignore[no-untyped-def]
    for table in ["admin_area", "grid", "road", "building", "household", "resident", "staff", "staff_scope",
                  "duty_roster", "incident", "incident_event", "patrol_track", "patrol_ping", "camera", "service_point"]:  # fmt: skip
        assert scalar(demo_engine, f"SELECT count(*) FROM {table}") > 0, table


def test_grids_cover_their_community_exactly_without_overlap(demo_engine) -> None:  # type: ignore[no-untyped-def]
    worst = scalar(demo_engine, """
        SELECT max(ST_Area(ST_SymDifference(c.geom, u.geom)::geography))
        FROM admin_area c JOIN (SELECT community_id, ST_Union(geom) geom FROM grid GROUP BY 1) u ON u.community_id = c.id
        WHERE c.level = 'community'""")  # fmt: skip
    assert worst < 1.0  # square metres
    assert scalar(demo_engine, "SELECT count(*) FROM grid a JOIN grid b ON a.id < b.id AND ST_Overlaps(a.geom, b.geom)") == 0
    assert scalar(demo_engine, """SELECT count(*) FROM grid a JOIN grid b ON a.id < b.id
        AND ST_Area(ST_Intersection(a.geom, b.geom)::geography) > 0.01""") == 0  # fmt: skip


def test_hierarchy_nests_and_codes_follow_the_rule(demo_engine) -> None:  # type: ignore[no-untyped-def]
    assert scalar(demo_engine, "SELECT count(*) FROM grid g JOIN admin_area c ON c.id = g.community_id WHERE left(g.code, 12) <> c.code") == 0
    assert scalar(demo_engine, """SELECT count(*) FROM admin_area a JOIN admin_area p ON p.id = a.parent_id
        WHERE left(a.code, length(p.code)) <> p.code OR NOT ST_CoveredBy(ST_Buffer(a.geom, -1e-7), p.geom)""") == 0  # fmt: skip
    assert scalar(demo_engine, "SELECT count(*) FROM grid WHERE NOT ST_IsValid(geom) OR ST_NumGeometries(geom) <> 1") == 0


def test_households_per_general_grid_in_range(demo_engine) -> None:  # type: ignore[no-untyped-def]
    with demo_engine.connect() as conn:
        rows = conn.execute(text("""SELECT g.kind, coalesce(sum(b.households), 0) FROM grid g
            LEFT JOIN building b ON b.grid_code = g.code GROUP BY g.code, g.kind""")).all()  # fmt: skip
    general = [h for kind, h in rows if kind == "general"]
    assert general and all(HH_MIN <= h <= HH_MAX for h in general)
    assert scalar(demo_engine, "SELECT count(*) FROM household") == scalar(demo_engine, "SELECT sum(households) FROM building")


def test_every_building_lies_in_exactly_one_grid(demo_engine) -> None:  # type: ignore[no-untyped-def]
    assert scalar(demo_engine, """SELECT count(*) FROM building b
        WHERE (SELECT count(*) FROM grid g WHERE ST_Within(b.geom, g.geom)) <> 1
           OR NOT EXISTS (SELECT 1 FROM grid g WHERE g.code = b.grid_code AND ST_Within(b.geom, g.geom))""") == 0  # fmt: skip


def test_resident_id_numbers_are_well_formed_and_unique(demo_engine) -> None:  # type: ignore[no-untyped-def]
    with demo_engine.connect() as conn:
        ids = conn.execute(text("SELECT id_number, gender, birth_date FROM resident")).all()
    assert ids and all(idnumber.is_valid(n) for n, _, _ in ids)
    assert all((int(n[16]) % 2 == 1) == (g == "M") for n, g, _ in ids)  # odd sequence = male
    assert all(n[6:14] == b.strftime("%Y%m%d") for n, _, b in ids)
    assert len({n for n, _, _ in ids}) == len(ids)
    assert scalar(demo_engine, "SELECT bool_and(is_synthetic) FROM resident")


def test_incident_logs_replay_to_their_status(demo_engine) -> None:  # type: ignore[no-untyped-def]
    with demo_engine.connect() as conn:
        inc = pd.read_sql(text("SELECT id, status, version, reported_at, grid_id FROM incident"), conn)
        ev = pd.read_sql(text("SELECT incident_id, seq, action, from_status, to_status, at FROM incident_event ORDER BY incident_id, seq"), conn)
    last = ev.groupby("incident_id").tail(1).set_index("incident_id")
    assert (inc.set_index("id")["status"] == last["to_status"]).all()
    assert (inc.set_index("id")["version"] == ev.groupby("incident_id").size()).all()
    prev = ev.groupby("incident_id")["to_status"].shift()
    chained = ev[ev["seq"] > 1]
    assert (chained["from_status"] == prev[ev["seq"] > 1]).all()
    assert (ev.groupby("incident_id")["at"].apply(lambda s: s.is_monotonic_increasing)).all()
    share_closed = (inc["status"] == "closed").mean()
    assert 0.7 < share_closed < 0.99
    # every incident is responsible to the grid version that contains it
    assert scalar(demo_engine, "SELECT count(*) FROM incident i JOIN grid g ON g.id = i.grid_id WHERE NOT ST_Intersects(g.geom, i.geom)") == 0


def test_incidents_cluster(demo_engine) -> None:  # type: ignore[no-untyped-def]
    """Cases concentrate: the busiest tenth of grids holds far more than a tenth of the cases."""
    with demo_engine.connect() as conn:
        counts = sorted(conn.execute(text("SELECT count(*) FROM incident GROUP BY grid_code")).scalars(), reverse=True)
    top = max(1, len(counts) // 10)
    assert sum(counts[:top]) / sum(counts) > 0.15


def test_patrol_tracks_stay_in_their_workers_grid(demo_engine) -> None:  # type: ignore[no-untyped-def]
    outside = scalar(demo_engine, """SELECT count(*) FROM patrol_track t
        JOIN staff_scope s ON s.staff_id = t.staff_id AND s.level = 'grid'
        JOIN grid g ON g.code = s.code
        WHERE NOT ST_DWithin(t.geom::geography, g.geom::geography, 25)""")  # fmt: skip
    assert outside == 0


def test_same_seed_same_city(engine) -> None:  # type: ignore[no-untyped-def]
    until = dt.datetime(2026, 11, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    with engine.connect() as conn:
        cats = pd.read_sql(text("SELECT code, name_zh, time_limit, time_unit FROM category"), conn)
    a = generate_frames(11, "small", until, cats)
    b = generate_frames(11, "small", until, cats)
    c = generate_frames(12, "small", until, cats)
    for table in a:
        pd.testing.assert_frame_equal(a[table], b[table])
    assert not a["building"]["geom"].equals(c["building"]["geom"])


def test_unknown_scale_and_real_data_are_refused(engine) -> None:  # type: ignore[no-untyped-def]
    from gridmap.demo.load import load_demo

    with pytest.raises(InvalidInput, match="unknown scale 'huge'"):
        load_demo(engine, seed=1, scale="huge")
    with engine.begin() as conn:
        conn.execute(text("""INSERT INTO admin_area (code, level, name, geom) VALUES ('349998', 'district', 'real',
            ST_Multi(ST_MakeEnvelope(117, 31, 117.1, 31.1, 4326)))"""))  # fmt: skip
        conn.execute(text("""INSERT INTO grid (code, name, community_id, geom, valid_from)
            SELECT '349998001001001', 'real', id, geom, now() FROM admin_area WHERE code = '349998'"""))  # fmt: skip
    try:
        with pytest.raises(SetupError, match="not a demo"):
            load_demo(engine, seed=1, scale="small", progress=False)
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM grid WHERE code = '349998001001001'"))
            conn.execute(text("DELETE FROM admin_area WHERE code = '349998'"))


def test_one_demo_account_per_role_signs_in(demo_engine) -> None:  # type: ignore[no-untyped-def]
    from sqlalchemy.orm import Session

    from gridmap import auth, vocab
    from gridmap.demo.load import open_demo_accounts

    accounts = open_demo_accounts(demo_engine, "demo password 1")
    assert [role for _, role, _ in accounts] == list(vocab.STAFF_ROLES)
    worker = next(username for username, role, _ in accounts if role == "grid_worker")
    with Session(demo_engine) as s, s.begin():
        me = auth.authenticate(s, username=worker, password="demo password 1")
    assert me.role == "grid_worker" and me.scopes[0][0] == "grid"
