"""Residents over HTTP: a grid worker reads his own grid's residents only — others do not exist
for him — city-wide roles read masked values, roles without personal data are refused, and
every clear read and every refusal is in the audit log."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from api import problems
from api.routers import audit as audit_router
from api.routers import auth as auth_router
from api.routers import buildings as buildings_router
from api.routers import residents as residents_router
from gridmap import auth, idnumber, migrate
from tests.conftest import drop_database, make_database
from tests.test_workflow import COMMUNITY_A, GRID_A1, GRID_A2, GRID_B1, build_city

PASSWORD = "correct horse battery"


def _id_number(first17: str) -> str:
    return first17 + idnumber.check_char(first17)


@dataclass
class World:
    engine: Engine
    client: TestClient
    ids: dict[str, list[int]]
    households: dict[str, int]


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_residents")
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        ids: dict[str, list[int]] = {GRID_A1: [], GRID_A2: [], GRID_B1: []}
        households: dict[str, int] = {}
        with Session(engine) as s, s.begin():
            build_city(s, tag="res")
            for grid in ids:
                households[grid] = s.execute(text("INSERT INTO household (grid_code) VALUES (:g) RETURNING id"), {"g": grid}).scalar_one()
            for grid, (x, y) in ((GRID_A1, (117.004, 31.004)), (GRID_B1, (117.004, 31.014))):
                s.execute(text("INSERT INTO building (code, name, grid_code, geom) VALUES (:c, :n, :g, "
                               "ST_Multi(ST_Expand(ST_SetSRID(ST_MakePoint(:x, :y), 4326), 0.0002)))"),
                          {"c": f"B-{grid}", "n": f"楼{grid[-1]}", "g": grid, "x": x, "y": y})  # fmt: skip
            for grid, n in ((GRID_A1, 3), (GRID_A2, 2), (GRID_B1, 1)):
                for i in range(n):
                    ids[grid].append(s.execute(text(
                        "INSERT INTO resident (grid_code, name, id_number, phone, birth_date) "
                        "VALUES (:g, :n, :idn, '13812345678', '1990-03-07') RETURNING id"),
                        {"g": grid, "n": f"张{grid[-1]}{i}", "idn": _id_number(f"340104199003{10 + sum(map(len, ids.values())):02d}123")},
                    ).scalar_one())  # fmt: skip
            for username, role, scopes in [("worker.a1", "grid_worker", [("grid", GRID_A1)]),
                                           ("plan.li", "planner", [("city", "")]),
                                           ("admin.a", "community_admin", [("community", COMMUNITY_A)]),
                                           ("leader.a", "grid_leader", [("community", COMMUNITY_A)]),
                                           ("center", "command_center", [("city", "")]),
                                           ("disp", "dispatcher", [("city", "")]),
                                           ("audit.wu", "auditor", [("city", "")]),
                                           ("ana", "analyst", [("city", "")]),
                                           ("sys", "admin", [("city", "")])]:  # fmt: skip
                auth.add_user(s, username=username, name=username, role=role, password=PASSWORD, scopes=scopes)
        app = FastAPI()
        problems.install(app)
        app.include_router(auth_router.router)
        app.include_router(residents_router.router)
        app.include_router(audit_router.router)
        app.include_router(buildings_router.router)
        app.state.engine = engine
        with TestClient(app) as client:
            yield World(engine, client, ids, households)
    finally:
        engine.dispose()
        drop_database(url)


def as_user(world: World, username: str) -> dict[str, str]:
    token = world.client.post("/v1/auth/token", data={"username": username, "password": PASSWORD}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}


def audit_rows(world: World, action: str) -> list:
    with world.engine.connect() as c:
        return c.execute(text("SELECT actor, object_id, detail FROM audit_log WHERE action = :a ORDER BY id"), {"a": action}).all()


def test_a_grid_worker_sees_his_grid_only(world: World) -> None:
    h = as_user(world, "worker.a1")
    r = world.client.get("/v1/residents", headers=h)
    assert r.status_code == 200
    items = r.json()["items"]
    assert sorted(i["id"] for i in items) == sorted(world.ids[GRID_A1])
    assert all(not i["masked"] and i["name"].startswith("张") and len(i["id_number"]) == 18 for i in items)
    other = world.ids[GRID_A2][0]
    missing = world.client.get(f"/v1/residents/{other}", headers=h)
    assert missing.status_code == 404 and missing.json()["detail"] == f"No resident {other}"
    assert world.client.get("/v1/residents", params={"grid": GRID_B1}, headers=h).json()["items"] == []
    mine = world.client.get(f"/v1/residents/{world.ids[GRID_A1][0]}", headers=h)
    assert mine.status_code == 200 and mine.json()["phone"] == "13812345678"
    reads = audit_rows(world, "read")
    assert any(row.detail and sorted(map(int, row.detail["object_ids"])) == sorted(world.ids[GRID_A1]) for row in reads)
    assert any(row.object_id == str(world.ids[GRID_A1][0]) for row in reads)
    assert any(row.object_id == str(other) for row in audit_rows(world, "read_not_found"))


def test_a_grid_leader_sees_his_community(world: World) -> None:
    items = world.client.get("/v1/residents", headers=as_user(world, "leader.a")).json()["items"]
    assert sorted(i["id"] for i in items) == sorted(world.ids[GRID_A1] + world.ids[GRID_A2])


def test_the_command_center_sees_everyone_masked(world: World) -> None:
    items = world.client.get("/v1/residents", headers=as_user(world, "center")).json()["items"]
    assert len(items) == 6 and all(i["masked"] for i in items)
    one = items[0]
    assert one["name"] == "张*" and one["phone"] == "138****5678" and one["birth_date"] == "1990"
    assert one["id_number"][6:14] == "********"
    assert not any(row.actor.endswith(":command_center") for row in audit_rows(world, "read"))  # masked reads


def test_roles_without_personal_data_and_strangers_are_refused(world: World) -> None:
    r = world.client.get("/v1/residents", headers=as_user(world, "disp"))
    assert r.status_code == 403 and r.json()["detail"] == "The role dispatcher may not read residents' data (查看居民)"
    assert any(row.actor.endswith(":dispatcher") for row in audit_rows(world, "read_refused"))
    r = world.client.get("/v1/residents")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_pages_and_bad_input(world: World) -> None:
    h = as_user(world, "leader.a")
    first = world.client.get("/v1/residents", params={"limit": 2}, headers=h).json()
    second = world.client.get("/v1/residents", params={"limit": 2, "after": first["next_after"]}, headers=h).json()
    last = first["items"][-1]
    assert len(first["items"]) == 2 and first["next_after"] == f"{last['grid_code']}-{last['id']}"
    assert {i["id"] for i in first["items"]}.isdisjoint(i["id"] for i in second["items"])
    assert first["total"] == 5 and second["total"] is None  # counted on the first page only
    # every page together: each resident of the community once, in (grid, id) order
    seen, after = [], None
    while True:
        page = world.client.get("/v1/residents", params={"limit": 2, **({"after": after} if after else {})}, headers=h).json()
        seen += [(i["grid_code"], i["id"]) for i in page["items"]]
        if not (after := page["next_after"]):
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 5
    for params in ({"limit": 0}, {"limit": 501}, {"grid": "123"}, {"after": "12"}, {"after": "349902001001001-x"},
                   {"after": "x" * 41}):  # fmt: skip
        assert world.client.get("/v1/residents", params=params, headers=h).status_code == 422
    for bad in ("abc", "0", str(2**63)):
        assert world.client.get(f"/v1/residents/{bad}", headers=h).status_code == 422


def test_auditors_read_the_audit_log_and_nobody_else(world: World) -> None:
    worker = as_user(world, "worker.a1")
    world.client.get(f"/v1/residents/{world.ids[GRID_A1][1]}", headers=worker)
    with world.engine.connect() as c:
        worker_id = c.execute(text("SELECT id FROM staff WHERE username = 'worker.a1'")).scalar_one()
    h = as_user(world, "audit.wu")
    r = world.client.get("/v1/audit", params={"user": worker_id, "action": "read", "grid": GRID_A1[:12]}, headers=h)
    assert r.status_code == 200
    rows = r.json()["items"]
    assert rows and all(row["actor_id"] == worker_id and row["action"] == "read" for row in rows)
    assert str(world.ids[GRID_A1][1]) in {row["object_id"] for row in rows}
    first = world.client.get("/v1/audit", params={"limit": 1}, headers=h).json()
    assert first["items"][0]["action"] == "audit_read"  # reading the log is logged too
    nxt = world.client.get("/v1/audit", params={"limit": 1, "before": first["next_before"]}, headers=h).json()
    assert nxt["items"][0]["id"] < first["items"][0]["id"]
    for params in ({"grid": "12"}, {"from": "2026-11-23T10:00:00"}, {"limit": 0}, {"user": 0}):
        assert world.client.get("/v1/audit", params=params, headers=h).status_code == 422, params
    refused = world.client.get("/v1/audit", headers=worker)
    assert refused.status_code == 403 and refused.json()["detail"] == "The role grid_worker may not read the audit log (查看审计日志)"
    actions = {row["action"] for row in world.client.get("/v1/audit", params={"user": worker_id}, headers=h).json()["items"]}
    assert "audit_read_refused" in actions


def new_person(world: World, household: str, **kw: object) -> dict:
    return {"household_id": world.households[household], "name": "李新", **kw}


def test_a_grid_worker_registers_and_changes_his_own_residents(world: World) -> None:
    h = as_user(world, "worker.a1")
    number = _id_number("34010420010915002")
    r = world.client.post("/v1/residents", json=new_person(world, GRID_A1, id_number=number.lower(), phone="138 0000 1111",
                                                          tags=["独居老人"]), headers=h)  # fmt: skip
    assert r.status_code == 201, r.text
    made = r.json()
    assert r.headers["location"] == f"/v1/residents/{made['id']}"
    assert (made["grid_code"], made["id_number"], made["gender"], made["birth_date"], made["phone"]) == (
        GRID_A1, number, "F", "2001-09-15", "13800001111")
    assert world.client.patch(f"/v1/residents/{made['id']}", json={"relation": "子女"}, headers=h).json()["relation"] == "子女"
    # moving into a household of another grid is refused, and that household does not exist for him
    moved = world.client.patch(f"/v1/residents/{made['id']}", json={"household_id": world.households[GRID_A2]}, headers=h)
    assert moved.status_code == 422 and moved.json()["detail"] == f"Unknown household {world.households[GRID_A2]}"
    leader = as_user(world, "leader.a")
    assert world.client.patch(f"/v1/residents/{made['id']}", json={"household_id": world.households[GRID_A2]},
                              headers=leader).json()["grid_code"] == GRID_A2  # fmt: skip
    assert world.client.get(f"/v1/residents/{made['id']}", headers=h).status_code == 404  # gone from his grid
    assert world.client.delete(f"/v1/residents/{made['id']}", headers=leader).status_code == 204
    assert world.client.get(f"/v1/residents/{made['id']}", headers=leader).status_code == 404
    actions = [row.object_id for row in audit_rows(world, "create")] + [row.object_id for row in audit_rows(world, "delete")]
    assert actions.count(str(made["id"])) == 2


def test_other_grids_residents_cannot_be_touched(world: World) -> None:
    h = as_user(world, "worker.a1")
    other = world.ids[GRID_B1][0]
    assert world.client.patch(f"/v1/residents/{other}", json={"name": "改名"}, headers=h).status_code == 404
    assert world.client.delete(f"/v1/residents/{other}", headers=h).status_code == 404
    r = world.client.post("/v1/residents", json=new_person(world, GRID_B1), headers=h)
    assert r.status_code == 422 and r.json()["detail"] == f"Unknown household {world.households[GRID_B1]}"
    assert world.client.post("/v1/residents", json={**new_person(world, GRID_A1), "household_id": 999_999},
                             headers=h).json()["detail"] == "Unknown household 999999"  # fmt: skip
    with world.engine.connect() as c:
        assert c.execute(text("SELECT name FROM resident WHERE id = :id"), {"id": other}).scalar_one() != "改名"
    assert any(row.object_id == str(other) for row in audit_rows(world, "update_refused"))


def test_grid_role_and_review_cannot_be_mass_assigned(world: World) -> None:
    h = as_user(world, "worker.a1")
    for extra in ({"grid_code": GRID_B1}, {"role": "admin"}, {"review": None}, {"building_id": 1}):
        r = world.client.post("/v1/residents", json={**new_person(world, GRID_A1), **extra}, headers=h)
        assert r.status_code == 422 and "Extra inputs are not permitted" in r.json()["detail"], extra
    mine = world.ids[GRID_A1][0]
    assert world.client.patch(f"/v1/residents/{mine}", json={"grid_code": GRID_B1}, headers=h).status_code == 422


def test_bad_id_numbers_and_phones_are_refused_without_echo(world: World) -> None:
    h = as_user(world, "worker.a1")
    good = _id_number("34010420010915002")
    for bad in (good[:17] + ("0" if good[17] != "0" else "1"), "340104200102300021", "340104010915002", "3401042001 0915002X",
                "1" * 18):  # fmt: skip
        r = world.client.post("/v1/residents", json=new_person(world, GRID_A1, id_number=bad), headers=h)
        assert r.status_code == 422 and r.json()["detail"].startswith("Invalid ID number: "), bad
        assert bad not in r.text and bad[:12] not in r.text
    r = world.client.post("/v1/residents", json=new_person(world, GRID_A1, id_number=good, gender="M"), headers=h)
    assert r.json()["detail"] == "Invalid value for parameter gender: it does not match the ID number"
    r = world.client.post("/v1/residents", json=new_person(world, GRID_A1, phone="12345"), headers=h)
    assert r.status_code == 422 and "12345" not in r.text


def test_an_id_number_of_another_grid_is_not_revealed(world: World) -> None:
    """Registering a number that exists in grid B answers like any registration; it is kept for review."""
    with world.engine.connect() as c:
        theirs = c.execute(text("SELECT id_number FROM resident WHERE id = :id"), {"id": world.ids[GRID_B1][0]}).scalar_one()
    h = as_user(world, "worker.a1")
    r = world.client.post("/v1/residents", json=new_person(world, GRID_A1, id_number=theirs), headers=h)
    fresh = world.client.post("/v1/residents", json=new_person(world, GRID_A1, id_number=_id_number("34010419850101003")),
                              headers=h)  # fmt: skip
    assert (r.status_code, fresh.status_code) == (201, 201) and set(r.json()) == set(fresh.json())
    assert "review" not in r.json()
    with world.engine.connect() as c:
        assert c.execute(text("SELECT review FROM resident WHERE id = :id"), {"id": r.json()["id"]}).scalar_one() == "duplicate_id_number"
    assert any(row.object_id == str(r.json()["id"]) for row in audit_rows(world, "duplicate_id_number"))


def test_city_wide_roles_cannot_write(world: World) -> None:
    r = world.client.post("/v1/residents", json=new_person(world, GRID_A1), headers=as_user(world, "center"))
    assert r.status_code == 403 and r.json()["detail"] == "The role command_center may not change residents' data (登记、修改居民)"


def test_search_stays_in_scope_and_needs_clear_access(world: World) -> None:
    h = as_user(world, "worker.a1")
    with world.engine.connect() as c:
        theirs = c.execute(text("SELECT id_number FROM resident WHERE id = :id"), {"id": world.ids[GRID_A2][0]}).scalar_one()
        mine = c.execute(text("SELECT id_number FROM resident WHERE id = :id"), {"id": world.ids[GRID_A1][0]}).scalar_one()
    found = world.client.get("/v1/residents", params={"id_number": mine}, headers=h).json()
    assert [i["id"] for i in found["items"]] == [world.ids[GRID_A1][0]] and found["total"] == 1
    assert world.client.get("/v1/residents", params={"id_number": theirs}, headers=h).json() == {
        "items": [], "total": 0, "next_after": None}  # another grid's resident does not exist, counted or not
    named = world.client.get("/v1/residents", params={"name": "张"}, headers=h).json()
    assert named["total"] == len(named["items"]) and all(i["grid_code"] == GRID_A1 for i in named["items"])
    bad = world.client.get("/v1/residents", params={"id_number": "12345"}, headers=h)
    assert bad.status_code == 422 and "12345" not in bad.text
    center = as_user(world, "center")
    refused = world.client.get("/v1/residents", params={"name": "张"}, headers=center)
    assert refused.status_code == 403 and refused.json()["detail"] == "The role command_center may not search residents by name"
    counted = world.client.get("/v1/residents", params={"grid": GRID_B1}, headers=center).json()
    assert counted["total"] == "<5" and all(i["masked"] for i in counted["items"])


def test_households_in_your_grids(world: World) -> None:
    h = as_user(world, "worker.a1")
    listed = world.client.get("/v1/households", headers=h).json()["items"]
    assert [i["grid_code"] for i in listed] == [GRID_A1]
    made = world.client.post("/v1/households", json={"grid_code": GRID_A1, "unit_no": "3-201"}, headers=h)
    assert made.status_code == 201 and made.json()["members"] == 0 and made.json()["grid_code"] == GRID_A1
    person = world.client.post("/v1/residents", json={"household_id": made.json()["id"], "name": "新户主"}, headers=h)
    assert person.status_code == 201 and person.json()["grid_code"] == GRID_A1
    members = {i["id"]: i["members"] for i in world.client.get("/v1/households", headers=h).json()["items"]}
    assert members[made.json()["id"]] == 1
    for body in ({"grid_code": GRID_B1}, {}, {"grid_code": GRID_A1, "role": "admin"}, {"building_id": 999_999}):
        r = world.client.post("/v1/households", json=body, headers=h)
        assert r.status_code == 422, body
    assert world.client.post("/v1/households", json={"grid_code": GRID_A1}, headers=as_user(world, "center")).status_code == 403


def test_buildings_of_your_grids(world: World) -> None:
    h = as_user(world, "worker.a1")
    r = world.client.get("/v1/buildings", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    mine = r.json()["features"]
    assert [f["properties"]["grid_code"] for f in mine] == [GRID_A1] and mine[0]["geometry"]["type"] == "MultiPolygon"
    with world.engine.connect() as c:
        theirs = c.execute(text("SELECT id FROM building WHERE grid_code = :g"), {"g": GRID_B1}).scalar_one()
    assert world.client.get(f"/v1/buildings/{theirs}", headers=h).status_code == 404
    assert world.client.patch(f"/v1/buildings/{theirs}", json={"floors": 9}, headers=h).status_code == 404
    fixed = world.client.patch(f"/v1/buildings/{mine[0]['id']}", json={"floors": 6, "use": "residential"}, headers=h)
    assert fixed.status_code == 200 and fixed.json()["properties"]["floors"] == 6
    for body in ({"grid_code": GRID_B1}, {"use": "castle"}, {"floors": 0}):
        assert world.client.patch(f"/v1/buildings/{mine[0]['id']}", json=body, headers=h).status_code == 422, body
    planner = as_user(world, "plan.li")
    assert len(world.client.get("/v1/buildings", headers=planner).json()["features"]) == 2
    assert world.client.patch(f"/v1/buildings/{theirs}", json={"floors": 9}, headers=planner).status_code == 403
    assert world.client.get("/v1/buildings", headers=as_user(world, "audit.wu")).status_code == 403
    assert any(row.object_id == str(theirs) for row in audit_rows(world, "update_refused"))


def test_exports_are_de_identified_and_only_for_admins(world: World) -> None:
    import csv
    import io

    h = as_user(world, "admin.a")
    r = world.client.get("/v1/exports/residents.csv", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and {row["grid_code"] for row in rows} <= {GRID_A1, GRID_A2}
    with world.engine.connect() as c:
        clear = c.execute(text("SELECT id_number, name FROM resident WHERE grid_code IN (:a, :b) AND id_number IS NOT NULL"),
                          {"a": GRID_A1, "b": GRID_A2}).all()  # fmt: skip
    assert clear and all(n not in r.text for n, _ in clear) and all(name not in r.text for _, name in clear)
    assert all(row["id_number"][6:14] == "********" for row in rows if row["id_number"])
    again = list(csv.DictReader(io.StringIO(world.client.get("/v1/exports/residents.csv", headers=h).text)))
    assert [row["pseudonym"] for row in again] == [row["pseudonym"] for row in rows]  # stable
    assert len({row["pseudonym"] for row in rows}) >= len(rows) - 1  # one per person (a reviewed duplicate shares it)
    refused = world.client.get("/v1/exports/residents.csv", headers=as_user(world, "worker.a1"))
    assert refused.status_code == 403 and refused.json()["detail"] == "The role grid_worker may not export residents (导出居民（脱敏）)"
    assert any(row.actor.endswith(":grid_worker") for row in audit_rows(world, "export_refused"))
    assert any(row.detail["rows"] == len(rows) for row in audit_rows(world, "export"))


RAW_ID_NUMBER = re.compile(r"(?<![0-9])[0-9]{17}[0-9Xx](?![0-9])")
RAW_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


@pytest.mark.parametrize("username", ["center", "ana", "sys"])
def test_no_answer_to_a_de_identified_role_holds_a_raw_id_number_or_phone(world: World, username: str) -> None:
    """Every resident, household, building and export answer a masked role can get, scanned."""
    h = as_user(world, username)
    listed = world.client.get("/v1/residents", params={"limit": 500}, headers=h)
    answers = [listed, world.client.get("/v1/residents", params={"tag": "独居老人"}, headers=h),
               world.client.get("/v1/households", headers=h), world.client.get("/v1/buildings", headers=h),
               world.client.get("/v1/exports/residents.csv", headers=h)]  # fmt: skip
    answers += [world.client.get(f"/v1/residents/{item['id']}", headers=h) for item in listed.json()["items"]]
    assert len(answers) > 8 and all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
    for r in answers:
        assert not RAW_ID_NUMBER.search(r.text) and not RAW_MOBILE.search(r.text), r.text
    with world.engine.connect() as c:  # the test data does hold raw numbers, so the scan can fail
        assert c.execute(text("SELECT count(*) FROM resident WHERE id_number ~ '^[0-9]{17}[0-9X]$' AND phone ~ '^1[3-9]'")).scalar_one() > 0


def test_if_the_audit_row_cannot_be_written_the_read_fails(world: World) -> None:
    h = as_user(world, "worker.a1")
    mine = world.ids[GRID_A1][0]
    with world.engine.begin() as c:
        c.execute(text("REVOKE INSERT ON audit_log FROM gridmap_api"))
    try:
        r = world.client.get(f"/v1/residents/{mine}", headers=h)
        assert r.status_code >= 500 and r.headers["content-type"] == "application/problem+json"
        assert "张" not in r.text and "13812345678" not in r.text  # nothing of the resident leaves
    finally:
        with world.engine.begin() as c:
            c.execute(text("GRANT INSERT ON audit_log TO gridmap_api"))
    assert world.client.get(f"/v1/residents/{mine}", headers=h).status_code == 200


def box(x: float, y: float, d: float = 0.0002) -> dict:
    return {"type": "Polygon", "coordinates": [[[x - d, y - d], [x + d, y - d], [x + d, y + d], [x - d, y + d], [x - d, y - d]]]}


def test_buildings_are_registered_redrawn_and_removed_within_your_grids(world: World) -> None:
    from gridmap import crs as crs_mod

    worker, leader = as_user(world, "worker.a1"), as_user(world, "leader.a")
    made = world.client.post("/v1/buildings", json={"geometry": box(117.006, 31.006), "name": "新楼", "address": "幸福路 9 号",
                                                     "floors": 6, "code": "B-new-1"}, headers=worker)  # fmt: skip
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["properties"]["grid_code"] == GRID_A1 and made.headers["location"] == f"/v1/buildings/{new['id']}"
    assert new["properties"]["use"] == "residential"
    # a footprint in phone-map coordinates lands where the same WGS84 footprint does
    gx, gy = (float(v) for v in crs_mod.from_wgs84(117.007, 31.007, "GCJ02"))
    gcj = world.client.post("/v1/buildings", json={"geometry": box(gx, gy), "crs": "GCJ02"}, headers=worker)
    assert gcj.status_code == 201 and abs(gcj.json()["geometry"]["coordinates"][0][0][0][0] - (117.007 - 0.0002)) < 1e-5
    assert world.client.get("/v1/buildings", params={"q": "幸福路 9"}, headers=worker).json()["features"][0]["id"] == new["id"]
    # nothing outside one's grids, nothing that is not a building
    with world.engine.connect() as c:
        before = c.execute(text("SELECT count(*) FROM building")).scalar_one()
    for body, status, detail in [
        ({"geometry": box(117.004, 31.015)}, 403, "The role grid_worker may not place a building outside the grids in its scope"),
        ({"geometry": box(117.5, 31.5)}, 422, "Invalid value for parameter geometry: the building lies outside every grid in force"),
        ({"geometry": {"type": "Point", "coordinates": [117.0, 31.0]}}, 422,
         "Invalid value for parameter geometry: a GeoJSON Polygon or MultiPolygon"),
        ({"geometry": {"type": "Polygon", "coordinates": [[[117.006, 31.006], [117.007, 31.007], [117.007, 31.006],
                                                           [117.006, 31.007], [117.006, 31.006]]]}}, 422,
         "Invalid value for parameter geometry: Self-intersection[117.0065 31.0065]"),
        ({"geometry": box(117.005, 31.005, 0.004)}, 422, None),  # 800 m across: not a building
        ({"geometry": box(117.006, 31.006), "code": "B-new-1"}, 409, "A building with code 'B-new-1' exists already"),
        ({"geometry": box(117.006, 31.006), "grid_code": GRID_A1}, 422, "Invalid value for parameter grid_code: Extra inputs are not permitted"),
    ]:  # fmt: skip
        r = world.client.post("/v1/buildings", json=body, headers=worker)
        assert r.status_code == status and (detail is None or r.json()["detail"] == detail), (body, r.text)
    with world.engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM building")).scalar_one() == before
    # a household lives in it; redrawn into A2 by the leader of both grids, its people follow
    household = world.client.post("/v1/households", json={"building_id": new["id"]}, headers=worker).json()
    person = world.client.post("/v1/residents", json={"household_id": household["id"], "name": "赵新"}, headers=worker).json()
    east = {"geometry": box(117.016, 31.006)}
    refused = world.client.patch(f"/v1/buildings/{new['id']}", json=east, headers=worker)
    assert refused.status_code == 403  # A2 is not the worker's
    moved = world.client.patch(f"/v1/buildings/{new['id']}", json=east, headers=leader)
    assert moved.status_code == 200 and moved.json()["properties"]["grid_code"] == GRID_A2
    with world.engine.connect() as c:
        grids = c.execute(text("SELECT (SELECT grid_code FROM household WHERE id = :h), (SELECT grid_code FROM resident WHERE id = :r)"),
                          {"h": household["id"], "r": person["id"]}).one()  # fmt: skip
    assert tuple(grids) == (GRID_A2, GRID_A2)
    assert world.client.get(f"/v1/residents/{person['id']}", headers=worker).status_code == 404  # gone from his grid
    # removal: not while people live there; an empty one goes; others' do not exist
    busy = world.client.delete(f"/v1/buildings/{new['id']}", headers=leader)
    assert busy.status_code == 409 and busy.json()["detail"] == f"Building {new['id']} still has 1 household(s): move or remove them first"
    empty = gcj.json()["id"]
    assert world.client.delete(f"/v1/buildings/{empty}", headers=worker).status_code == 204
    assert world.client.get(f"/v1/buildings/{empty}", headers=worker).status_code == 404
    with world.engine.connect() as c:
        theirs = c.execute(text("SELECT id FROM building WHERE grid_code = :g LIMIT 1"), {"g": GRID_B1}).scalar_one()
    assert world.client.delete(f"/v1/buildings/{theirs}", headers=worker).status_code == 404
    assert world.client.delete(f"/v1/buildings/{theirs}", headers=as_user(world, "center")).status_code == 403
    actions = {(row.object_id, action) for action in ("create", "delete", "update") for row in audit_rows(world, action)}
    assert {(str(new["id"]), "create"), (str(empty), "delete"), (str(new["id"]), "update")} <= actions


def test_an_empty_household_of_yours_can_be_removed(world: World) -> None:
    worker = as_user(world, "worker.a1")
    empty = world.client.post("/v1/households", json={"grid_code": GRID_A1}, headers=worker).json()["id"]
    busy = world.households[GRID_A1]
    r = world.client.delete(f"/v1/households/{busy}", headers=worker)
    assert r.status_code == 409 and "member(s): move or remove them first" in r.json()["detail"]
    assert world.client.delete(f"/v1/households/{world.households[GRID_B1]}", headers=worker).status_code == 404
    assert world.client.delete(f"/v1/households/{empty}", headers=as_user(world, "center")).status_code == 403
    assert world.client.delete(f"/v1/households/{empty}", headers=worker).status_code == 204
    assert world.client.delete(f"/v1/households/{empty}", headers=worker).status_code == 404


def test_an_id_number_is_corrected_and_duplicates_are_resolved_by_an_admin_over_both(world: World) -> None:
    worker, admin = as_user(world, "worker.a1"), as_user(world, "admin.a")
    person = world.client.post("/v1/residents", json=new_person(world, GRID_A1, name="钱改"), headers=worker).json()
    corrected = _id_number("34010419920229002")  # a leap day, an even 17th digit: a woman
    r = world.client.patch(f"/v1/residents/{person['id']}", json={"id_number": corrected}, headers=worker)
    assert r.status_code == 200 and (r.json()["id_number"], r.json()["gender"], r.json()["birth_date"]) == (corrected, "F", "1992-02-29")
    bad = world.client.patch(f"/v1/residents/{person['id']}", json={"id_number": "340104199202300021"}, headers=worker)
    assert bad.status_code == 422 and "340104199202300021" not in bad.text
    # a number registered in A2 (the worker's neighbour grid): answered like any change, kept for review
    with world.engine.connect() as c:
        neighbour_id = world.ids[GRID_A2][0]
        neighbours = c.execute(text("SELECT id_number FROM resident WHERE id = :id"), {"id": neighbour_id}).scalar_one()
    same = world.client.patch(f"/v1/residents/{person['id']}", json={"id_number": neighbours}, headers=worker)
    assert same.status_code == 200 and "review" not in same.json()
    # the worker cannot list reviews; the community admin (over A1 and A2) sees and settles it
    assert world.client.get("/v1/residents", params={"review": True}, headers=worker).status_code == 403
    pending = world.client.get("/v1/residents", params={"review": True}, headers=admin).json()["items"]
    assert person["id"] in {p["id"] for p in pending}
    assert world.client.post(f"/v1/residents/{person['id']}/review", json={"keep": "maybe"}, headers=admin).status_code == 422
    settled = world.client.post(f"/v1/residents/{person['id']}/review", json={"keep": "this"}, headers=admin)
    assert settled.status_code == 200 and settled.json() == {"kept": person["id"], "removed": neighbour_id}
    assert world.client.get(f"/v1/residents/{neighbour_id}", headers=admin).status_code == 404
    again = world.client.post(f"/v1/residents/{person['id']}/review", json={"keep": "this"}, headers=admin)
    assert again.status_code == 409 and again.json()["detail"] == f"Resident {person['id']} is not under review"
    world.ids[GRID_A2].remove(neighbour_id)
    # a duplicate of a grid in another community is beyond this admin
    with world.engine.connect() as c:
        across = c.execute(text("SELECT id FROM resident WHERE review IS NOT NULL AND grid_code = :g ORDER BY id LIMIT 1"),
                           {"g": GRID_A1}).scalar_one()  # fmt: skip
    r = world.client.post(f"/v1/residents/{across}/review", json={"keep": "this"}, headers=admin)
    assert r.status_code == 403 and r.json()["detail"] == "The registration it duplicates lies outside your grids: an admin over both resolves it"
    assert any(row.object_id == str(person["id"]) for row in audit_rows(world, "review_resolved"))


def test_counts_per_area_are_clear_in_scope_and_suppressed_for_masked_roles(world: World) -> None:
    with world.engine.connect() as c:
        truth = dict(c.execute(text("SELECT grid_code, count(*) FROM resident GROUP BY 1")).all())
    leader = world.client.get("/v1/residents/counts", params={"by": "grid"}, headers=as_user(world, "leader.a")).json()
    assert leader["suppressed"] is False
    assert {a: n for g in leader["groups"] for a, n in g["cells"].items()} == {g: truth[g] for g in (GRID_A1, GRID_A2) if g in truth}
    center = world.client.get("/v1/residents/counts", params={"by": "grid"}, headers=as_user(world, "center")).json()
    assert center["suppressed"] is True and center["min_cell"] == 5
    cells = {a: n for g in center["groups"] for a, n in g["cells"].items()}
    assert set(cells) == set(truth)
    for area, n in cells.items():
        assert n == truth[area] or n in ("<5", "x"), (area, n)
        assert not (0 < truth[area] < 5) or n == "<5"
    assert world.client.get("/v1/residents/counts", params={"by": "planet"}, headers=as_user(world, "center")).status_code == 422
    assert world.client.get("/v1/residents/counts", headers=as_user(world, "disp")).status_code == 403


_coords = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12), st.text(max_size=3), st.none())
_ring = st.lists(st.lists(_coords, min_size=0, max_size=3), min_size=0, max_size=6)
_geometry = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "polygon", ""]),
                           "coordinates": st.one_of(st.lists(_ring, max_size=3), st.lists(st.lists(_ring, max_size=2), max_size=2),
                                                    _coords)}),
    st.none(), st.text(max_size=5), st.lists(st.integers(), max_size=3),
)  # fmt: skip


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(geometry=_geometry, crs=st.sampled_from([None, "EPSG:4326", "GCJ02", "BD09", "EPSG:9999", "x"]),
       floors=st.one_of(st.none(), st.integers(-5, 500)))  # fmt: skip
def test_no_building_body_gives_a_500(world: World, geometry: object, crs: str | None, floors: int | None) -> None:
    h = as_user(world, "worker.a1") if not hasattr(world, "_worker") else world._worker  # type: ignore[attr-defined]
    world._worker = h  # type: ignore[attr-defined]
    body = json.dumps({"geometry": geometry, "crs": crs, "floors": floors})  # NaN and Infinity included, as JS sends them
    r = world.client.post("/v1/buildings", content=body, headers={**h, "content-type": "application/json"})
    assert r.status_code in (201, 403, 409, 422), r.text
    assert r.headers["content-type"] in ("application/problem+json", "application/geo+json", "application/json")
