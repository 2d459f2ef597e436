"""Every endpoint needs credentials (but health and sign-in), and each checks its function
against the role table in gridmap.access: the whole table is exercised role by role on the
real app. Incidents, candidates and KPIs stay inside a grid worker's grids; a worker handles
only the cases assigned to him; staff send only their own positions; a disabled account is
refused at once although its caller was cached."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api.app import PUBLIC_PATHS, create_app
from gridmap import access, auth
from tests.auth_helpers import PASSWORD, key_headers
from tests.conftest import own_database
from tests.test_workflow import COMMUNITY_A, DISTRICT, GRID_A1, IN_A1, STREET, build_city

IN_A2 = (IN_A1[0] + 0.01, IN_A1[1])  # the grid east of A1
SCOPES = {"grid_worker": [("grid", GRID_A1)], "grid_leader": [("community", COMMUNITY_A)],
          "community_admin": [("community", COMMUNITY_A)], "street_admin": [("street", STREET)],
          "district_admin": [("district", DISTRICT)]}  # fmt: skip


@dataclass
class World:
    engine: Engine
    client: TestClient
    users: dict[str, dict[str, str]]  # role → bearer headers of a user of that role
    ids: dict[str, int]  # role → staff id
    household: int


def sign_in(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    with own_database(database_url_for_tests, "access") as engine:
        ids: dict[str, int] = {}
        with Session(engine) as s, s.begin():
            build_city(s, tag="acc")
            household = s.execute(text("INSERT INTO household (grid_code) VALUES (:g) RETURNING id"), {"g": GRID_A1}).scalar_one()
            for role in access.EVERYONE:
                ids[role] = auth.add_user(s, username=f"u.{role}", name=role, role=role, password=PASSWORD,
                                          scopes=SCOPES.get(role, [("city", "")]))  # fmt: skip
        with TestClient(create_app(engine=engine)) as client:
            users = {role: sign_in(client, f"u.{role}") for role in ids}
            yield World(engine, client, users, ids, household)


def report(world: World, point: tuple[float, float] = IN_A1, who: str = "dispatcher") -> dict:
    r = world.client.post("/v1/incidents", json={"category": "0102", "source": "hotline", "lon": point[0], "lat": point[1]},
                          headers=world.users[who])  # fmt: skip
    assert r.status_code == 201, r.text
    return r.json()


def act(world: World, incident: dict, action: str, who: str, **body: object) -> httpx.Response:
    version = world.client.get(f"/v1/incidents/{incident['id']}", headers=world.users["admin"]).json()["properties"]["version"]
    return world.client.post(f"/v1/incidents/{incident['id']}/transitions", json={"action": action, **body},
                             headers={"If-Match": f'"{version}"', **world.users[who]})  # fmt: skip


# ---------------------------------------------------------------------------------------------
# authentication everywhere
# ---------------------------------------------------------------------------------------------


def test_every_endpoint_but_health_and_sign_in_needs_credentials(world: World) -> None:
    checked = 0
    schema = world.client.get("/openapi.json").json()
    for route, operations in schema["paths"].items():
        if route in PUBLIC_PATHS:
            continue
        path = re.sub(r"\{[^}]+\}", "1", route)
        for method in operations:
            r = world.client.request(method.upper(), path, json={})
            assert r.status_code == 401, (method, route, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json" and r.headers["www-authenticate"].startswith("Bearer")
            assert r.json()["detail"] == auth.AUTH_REQUIRED
            checked += 1
    assert checked >= 25
    assert world.client.get("/healthz").status_code == 200
    assert schema["paths"]["/v1/locate"]["get"]["security"] == [{"bearer": []}, {"apiKey": []}]
    assert "security" not in schema["paths"]["/healthz"]["get"]


# ---------------------------------------------------------------------------------------------
# the role table, function by function
# ---------------------------------------------------------------------------------------------


def _calls(world: World) -> dict[str, Callable[[dict[str, str], int], httpx.Response]]:
    """One representative call per function: (headers, the caller's staff id) → response."""
    c = world.client
    lon, lat = IN_A1
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "grids.read": lambda h, me: c.get("/v1/grids", headers=h),
        "locate": lambda h, me: c.get("/v1/locate", params={"lon": lon, "lat": lat}, headers=h),
        "incidents.report": lambda h, me: c.post("/v1/incidents", json={"category": "0102", "source": "patrol", "lon": lon,
                                                                          "lat": lat}, headers=h),
        "incidents.read": lambda h, me: c.get("/v1/incidents", headers=h),
        "incidents.handle": lambda h, me: c.post(f"/v1/incidents/{report(world)['id']}/transitions",
                                                 json={"action": "escalate"}, headers={"If-Match": '"1"', **h}),
        "incidents.command": lambda h, me: c.post(f"/v1/incidents/{report(world)['id']}/transitions",
                                                  json={"action": "register"}, headers={"If-Match": '"1"', **h}),
        "dispatch.candidates": lambda h, me: c.get(f"/v1/incidents/{report(world)['id']}/candidates", headers=h),
        "sla.tick": lambda h, me: c.post("/v1/sla/tick", headers=h),
        "kpis.read": lambda h, me: c.get("/v1/kpis", params={"level": "grid"}, headers=h),
        "positions.send": lambda h, me: c.post(f"/v1/staff/{me}/positions", json={"positions": [
            {"lon": lon, "lat": lat, "at": now}]}, headers=h),
        "residents.read": lambda h, me: c.get("/v1/residents", headers=h),
        "residents.write": lambda h, me: c.post("/v1/residents", json={"household_id": world.household, "name": "王新"}, headers=h),
        "residents.review": lambda h, me: c.post("/v1/residents/999999/review", json={"keep": "this"}, headers=h),
        "residents.export": lambda h, me: c.get("/v1/exports/residents.csv", headers=h),
        "buildings.read": lambda h, me: c.get("/v1/buildings", headers=h),
        "buildings.write": lambda h, me: c.patch("/v1/buildings/999999", json={"floors": 3}, headers=h),
        "map.read": lambda h, me: c.get("/tiles", headers=h),
        "stats.read": lambda h, me: c.get("/v1/stats/three-zeros", headers=h),
        "audit.read": lambda h, me: c.get("/v1/audit", headers=h),
        "plans.read": lambda h, me: c.get("/v1/plans", headers=h),
        "plans.write": lambda h, me: c.post("/v1/plans", json={"name": "role check", "scope": COMMUNITY_A}, headers=h),
        "plans.apply": lambda h, me: c.post("/v1/plans/999999/apply", json={}, headers=h),
    }  # fmt: skip


def test_each_function_admits_exactly_the_roles_of_the_table(world: World) -> None:
    calls = _calls(world)
    assert set(calls) == set(access.FUNCTIONS), "a function of the table has no representative call here"
    wrong, codes = [], []
    for function, call in calls.items():
        for role in sorted(access.EVERYONE):
            r = call(world.users[role], world.ids[role])
            codes.append(r.status_code)
            allowed = role in access.FUNCTIONS[function].roles
            if (r.status_code == 403) == allowed or r.status_code in (401, 500):
                wrong.append(f"{function} as {role}: {r.status_code} {r.text[:120]}")
            elif r.status_code == 403:
                assert r.json()["detail"].startswith(f"The role {role} may not "), r.text
    assert 40 < codes.count(403) < len(codes) - 40  # the table refuses and admits (57 of 176 refused)
    assert not wrong, "\n".join(wrong)


def test_function_refusals_are_audited(world: World) -> None:
    r = world.client.get("/v1/locate", params={"lon": IN_A1[0], "lat": IN_A1[1]}, headers=world.users["auditor"])
    assert r.status_code == 403 and r.json()["detail"] == "The role auditor may not locate the responsible grid (定位责任网格)"
    with world.engine.connect() as conn:
        row = conn.execute(text("SELECT actor_id, object_type, object_id FROM audit_log WHERE action = 'refused' "
                                "ORDER BY id DESC LIMIT 1")).one()  # fmt: skip
    assert tuple(row) == (world.ids["auditor"], "function", "locate")


def test_me_lists_the_callers_functions(world: World) -> None:
    me = world.client.get("/v1/auth/me", headers=world.users["grid_worker"]).json()
    assert me["functions"] == access.functions_of(auth.Principal("user", 0, "", "grid_worker"))
    assert "residents.write" in me["functions"] and "audit.read" not in me["functions"]


# ---------------------------------------------------------------------------------------------
# scope: a grid worker's incidents are those of his grids
# ---------------------------------------------------------------------------------------------


def test_incidents_outside_a_workers_grids_do_not_exist_for_him(world: World) -> None:
    mine, theirs = report(world, IN_A1), report(world, IN_A2)
    h = world.users["grid_worker"]
    listed = {f["id"] for f in world.client.get("/v1/incidents", params={"limit": 1000}, headers=h).json()["features"]}
    assert mine["id"] in listed and theirs["id"] not in listed
    assert all(f["properties"]["grid_code"] == GRID_A1
               for f in world.client.get("/v1/incidents", params={"limit": 1000}, headers=h).json()["features"])  # fmt: skip
    for path in (f"/v1/incidents/{theirs['id']}", f"/v1/incidents/{theirs['properties']['code']}"):
        r = world.client.get(path, headers=h)
        assert r.status_code == 404 and r.json()["detail"].startswith("No incident"), r.text
    assert world.client.get(f"/v1/incidents/{mine['id']}", headers=h).status_code == 200
    r = act(world, theirs, "escalate", "grid_worker")
    assert r.status_code == 404 and r.json()["detail"] == f"No incident {theirs['id']}"
    leader = world.users["grid_leader"]  # community A: both grids
    assert world.client.get(f"/v1/incidents/{theirs['id']}/candidates", headers=leader).status_code == 200
    outside = report(world, (IN_A1[0], IN_A1[1] + 0.01))  # community B
    assert world.client.get(f"/v1/incidents/{outside['id']}/candidates", headers=leader).status_code == 404
    kpis = world.client.get("/v1/kpis", params={"level": "grid"}, headers=h).json()["items"]
    assert [k["code"] for k in kpis] == [GRID_A1]


def test_a_grid_worker_handles_only_the_cases_assigned_to_him(world: World) -> None:
    f = report(world)
    assert act(world, f, "register", "dispatcher").status_code == 200
    assert act(world, f, "dispatch", "dispatcher", assignee=_other_worker(world)).status_code == 200
    refused = act(world, f, "start", "grid_worker")
    assert refused.status_code == 403 and refused.json()["detail"] == "Only the assignee may start this case (只有承办人可以处置)"
    assert act(world, f, "dispatch", "grid_leader", assignee=world.ids["grid_worker"]).status_code == 200
    started = act(world, f, "start", "grid_worker")
    assert started.status_code == 200 and started.json()["events"][-1]["actor_id"] == world.ids["grid_worker"]
    assert act(world, f, "resolve", "grid_worker", note="已清理").status_code == 200
    assert act(world, f, "verify", "grid_worker").status_code == 403  # verifying is someone else's job
    assert act(world, f, "verify", "grid_leader").status_code == 200


def _other_worker(world: World) -> int:
    with world.engine.connect() as conn:
        return int(conn.execute(text("SELECT id FROM staff WHERE username = 'acc-worker-a'")).scalar_one())


def test_staff_send_their_own_positions_only(world: World) -> None:
    at = dt.datetime.now(dt.UTC).isoformat()
    body = {"positions": [{"lon": IN_A1[0], "lat": IN_A1[1], "at": at}]}
    h = world.users["grid_worker"]
    assert world.client.post(f"/v1/staff/{world.ids['grid_worker']}/positions", json=body, headers=h).status_code == 200
    r = world.client.post(f"/v1/staff/{world.ids['grid_leader']}/positions", json=body, headers=h)
    assert r.status_code == 403 and r.json()["detail"] == "You may send only your own positions (只能上报本人位置)"
    gateway = key_headers(world.engine, "admin")  # a device gateway
    assert world.client.post(f"/v1/staff/{world.ids['grid_leader']}/positions", json=body, headers=gateway).status_code == 200


# ---------------------------------------------------------------------------------------------
# the cache of callers does not outlive a change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", ["disable", "revoke"])
def test_a_disabled_account_or_revoked_key_is_refused_at_once(world: World, change: str) -> None:
    with Session(world.engine) as s, s.begin():
        auth.add_user(s, username=f"temp.{change}", name="临时", role="dispatcher", password=PASSWORD, scopes=[("city", "")])
    headers = sign_in(world.client, f"temp.{change}") if change == "disable" else key_headers(world.engine, "dispatcher")
    assert world.client.get("/v1/ping", headers=headers).status_code == 200  # now cached
    with Session(world.engine) as s, s.begin():
        if change == "disable":
            auth.disable(s, username=f"temp.{change}")
        else:
            s.execute(text("UPDATE api_key SET revoked_at = now() WHERE key_hash = :h"),
                      {"h": auth._key_hash(headers["X-API-Key"])})  # fmt: skip
    changed = time.monotonic()
    while world.client.get("/v1/ping", headers=headers).status_code == 200:
        assert time.monotonic() - changed < 1.0, "the cached caller outlived the change by a second"
        time.sleep(0.01)
    print(f"{change}: refused after {1000 * (time.monotonic() - changed):.0f} ms")
