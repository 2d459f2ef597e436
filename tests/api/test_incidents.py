"""The incidents API: report with Idempotency-Key, list and read as GeoJSON, the workflow with
If-Match, the SLA tick and KPIs; every bad input is a 4xx problem with a clear detail."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from api import problems
from api.routers.incidents import report_batcher, router
from gridmap import auth, migrate, workflow
from gridmap import crs as crs_mod
from gridmap.auth import AUTH_REQUIRED
from gridmap.errors import GridmapError, PreconditionFailed
from gridmap.services import incidents as svc
from gridmap.services import reports
from tests.auth_helpers import key_headers, user_headers
from tests.conftest import drop_database, make_database
from tests.test_workflow import COMMUNITY_A, GRID_A1, GRID_A2, IN_A1, STREET, City, build_city

MAX_BODY = 1_000_000


def make_app(engine: Engine) -> FastAPI:
    from api.app import BodyLimit

    app = FastAPI()
    problems.install(app)
    app.include_router(router)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)
    app.state.engine = engine
    return app


@dataclass
class World:
    engine: Engine
    city: City
    client: TestClient  # sends an admin API key unless told otherwise
    worker_a: dict[str, str]  # grid worker of A1
    dispatcher: dict[str, str]


@pytest.fixture(scope="module")
def world(database_url_for_tests: str) -> Iterator[World]:
    """A database of its own (requests commit here), with the hand-built city."""
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_incidents")
    engine = create_engine(url, pool_size=12, pool_pre_ping=True)  # as gridmap.db.make_engine
    try:
        migrate.upgrade(engine)
        with Session(engine) as s, s.begin():
            city = build_city(s, tag="api")
        worker_a = user_headers(engine, "api-worker-a", scopes=[("grid", GRID_A1)])
        dispatcher = user_headers(engine, "api-dispatcher")
        with TestClient(make_app(engine), headers=key_headers(engine, "admin")) as client:
            yield World(engine, city, client, worker_a, dispatcher)
    finally:
        engine.dispose()
        drop_database(url)


@pytest.fixture(scope="module")
def demo_client(demo_engine: Engine) -> Iterator[TestClient]:
    with TestClient(make_app(demo_engine), headers=key_headers(demo_engine, "command_center")) as client:
        yield client


def body(**kw: Any) -> dict[str, Any]:
    return {"category": "0102", "source": "hotline", "lon": IN_A1[0], "lat": IN_A1[1], **kw}


def create(world: World, **kw: Any) -> dict[str, Any]:
    r = world.client.post("/v1/incidents", json=body(**kw))
    assert r.status_code == 201, r.text
    return r.json()


def move(world: World, f: dict[str, Any], action: str, **kw: Any) -> dict[str, Any]:
    r = world.client.post(f"/v1/incidents/{f['id']}/transitions", json={"action": action, **kw},
                          headers={"If-Match": f'"{f["properties"]["version"]}"'})  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def count(engine: Engine, sql: str, **params: Any) -> int:
    with engine.connect() as c:
        return int(c.execute(text(sql), params).scalar_one())


# ---------------------------------------------------------------------------------------------
# report and read
# ---------------------------------------------------------------------------------------------


def test_report_then_read_with_history(world: World) -> None:
    r = world.client.post("/v1/incidents", json=body(title="垃圾暴露", address="幸福路 1 号"), headers=world.worker_a)
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/geo+json" and r.headers["etag"] == '"1"'
    f = r.json()
    assert r.headers["location"] == f"/v1/incidents/{f['id']}"
    p = f["properties"]
    assert (f["type"], p["grid_code"], p["community"], p["street"], p["status"]) == ("Feature", GRID_A1, COMMUNITY_A, STREET, "reported")
    assert p["code"].startswith("AJ") and len(p["code"]) == 16 and p["reporter_id"] == world.city.workers[0]
    assert "duplicates" in f
    got = world.client.get(r.headers["location"])
    assert got.status_code == 200 and got.headers["etag"] == '"1"'
    g = got.json()
    assert g["properties"] == p and g["geometry"] == f["geometry"]
    assert [e["action"] for e in g["events"]] == ["report"] and g["events"][0]["actor_name"] == "worker-a"
    assert g["allowed_actions"] == ["register", "reject"]
    assert world.client.get(f"/v1/incidents/{p['code']}").json()["id"] == f["id"]


def test_report_in_gcj02_and_read_back_in_gcj02(world: World) -> None:
    glon, glat = (float(v) for v in crs_mod.from_wgs84(IN_A1[0], IN_A1[1], "GCJ02"))
    f = create(world, lon=glon, lat=glat, crs="GCJ02")
    lon, lat = f["geometry"]["coordinates"]
    assert abs(lon - IN_A1[0]) < 1e-6 and abs(lat - IN_A1[1]) < 1e-6
    assert f["properties"]["grid_code"] == GRID_A1
    back = world.client.get(f"/v1/incidents/{f['id']}", params={"crs": "GCJ02"}).json()
    assert back["geometry"]["coordinates"] == pytest.approx([glon, glat], abs=1e-6)


def test_likely_duplicates_are_returned(world: World) -> None:
    spot = (117.0155, 31.0055)  # in grid A2, away from the other tests' reports
    first = create(world, lon=spot[0], lat=spot[1], category="0504")
    second = create(world, lon=spot[0] + 0.0002, lat=spot[1], category="0504")
    assert second["properties"]["grid_code"] == GRID_A2
    assert [d["id"] for d in second["duplicates"]] == [first["id"]]
    assert create(world, lon=spot[0], lat=spot[1], category="0505")["duplicates"] == []


# ---------------------------------------------------------------------------------------------
# idempotency
# ---------------------------------------------------------------------------------------------


def test_same_key_same_body_same_answer_one_row(world: World) -> None:
    key, title = f"k-{uuid.uuid4()}", f"idem-{uuid.uuid4()}"
    a = world.client.post("/v1/incidents", json=body(title=title), headers={"Idempotency-Key": key})
    b = world.client.post("/v1/incidents", json=body(title=title), headers={"Idempotency-Key": key})
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json() == b.json() and b.headers["idempotent-replayed"] == "true" and "idempotent-replayed" not in a.headers
    assert b.headers["location"] == a.headers["location"]
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title = :t", t=title) == 1
    # the same body in another key order is the same request
    reordered = dict(reversed(list(body(title=title).items())))
    assert world.client.post("/v1/incidents", json=reordered, headers={"Idempotency-Key": key}).json() == a.json()


def test_same_key_different_body_is_refused(world: World) -> None:
    key = f"k-{uuid.uuid4()}"
    assert world.client.post("/v1/incidents", json=body(), headers={"Idempotency-Key": key}).status_code == 201
    r = world.client.post("/v1/incidents", json=body(severity=3), headers={"Idempotency-Key": key})
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        f"Idempotency-Key '{key}' was already used with a different request body; send a new key for a new request"
    )


def test_keys_are_scoped_per_caller_and_expire_after_24_hours(world: World) -> None:
    key, title = f"k-{uuid.uuid4()}", f"scoped-{uuid.uuid4()}"
    app_a, app_b = key_headers(world.engine, "dispatcher"), key_headers(world.engine, "dispatcher")
    for caller in (app_a, app_b):
        r = world.client.post("/v1/incidents", json=body(title=title), headers={"Idempotency-Key": key, **caller})
        assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title = :t", t=title) == 2
    a = auth.resolve(world.engine, api_key=app_a["X-API-Key"])
    with world.engine.begin() as c:
        c.execute(text("UPDATE idempotency_key SET created_at = now() - interval '25 hours' WHERE key = :k AND caller = :c"),
                  {"k": key, "c": f"{a.kind}:{a.id}"})  # fmt: skip
    r = world.client.post("/v1/incidents", json=body(title=title, severity=1), headers={"Idempotency-Key": key, **app_a})
    assert r.status_code == 201 and r.json()["properties"]["severity"] == 1


def test_a_failed_request_does_not_use_up_its_key(world: World) -> None:
    key = f"k-{uuid.uuid4()}"
    bad = world.client.post("/v1/incidents", json=body(category="9999"), headers={"Idempotency-Key": key})
    assert bad.status_code == 422 and bad.json()["detail"] == "Unknown category '9999'"
    assert world.client.post("/v1/incidents", json=body(), headers={"Idempotency-Key": key}).status_code == 201


HOLD = 0.8  # seconds the first writer keeps its transaction open while the second arrives


def run_twins(engine: Engine, first: Callable[[Session], Any], second: Callable[[Session], Any]) -> tuple[Any, Any, float]:
    """Run `first` in a transaction that stays open HOLD seconds after its work; once its work
    is done (uncommitted), run `second` in another transaction.

    Returns both results (or the exceptions they raised) and how long `second` took.
    """
    out: dict[str, Any] = {}
    ready = threading.Event()

    def one() -> None:
        try:
            with Session(engine) as s, s.begin():
                out["a"] = first(s)
                ready.set()
                time.sleep(HOLD)
        except Exception as exc:  # noqa: BLE001 - reported to the test
            out["a"] = exc
        finally:
            ready.set()

    def two() -> None:
        ready.wait(10)
        started = time.monotonic()
        try:
            with Session(engine) as s, s.begin():
                out["b"] = second(s)
        except Exception as exc:  # noqa: BLE001
            out["b"] = exc
        out["waited"] = time.monotonic() - started

    threads = [threading.Thread(target=one), threading.Thread(target=two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out.get("a"), out.get("b"), out.get("waited", 0.0)


def test_concurrent_twins_with_one_key_make_one_incident(world: World) -> None:
    key, title = f"twin-{uuid.uuid4()}", f"twin-{uuid.uuid4()}"
    request = body(title=title)

    def attempt(s: Session) -> reports.Outcome:
        return reports.create_incidents(s, [reports.ReportRequest(
            category="0102", source="hotline", lon=IN_A1[0], lat=IN_A1[1], title=title, key=key, caller="twins",
            body=request)])[0]  # fmt: skip

    a, b, waited = run_twins(world.engine, attempt, attempt)
    assert isinstance(a, reports.Answer) and isinstance(b, reports.Answer), (a, b)
    assert (a.replayed, b.replayed) == (False, True)
    assert a.body == b.body
    assert waited > HOLD / 2  # the twin waited on the key until the first committed
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title = :t", t=title) == 1


def test_concurrent_posts_through_the_api(world: World) -> None:
    key, title = f"race-{uuid.uuid4()}", f"race-{uuid.uuid4()}"
    results: list[Any] = []

    def post() -> None:
        results.append(world.client.post("/v1/incidents", json=body(title=title), headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [201] * 4
    assert len({json.dumps(r.json(), sort_keys=True) for r in results}) == 1
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title = :t", t=title) == 1


def test_concurrent_reports_share_transactions(world: World) -> None:
    tag = f"burst-{uuid.uuid4()}"
    results: list[Any] = []

    def post(i: int) -> None:
        results.append(world.client.post("/v1/incidents", json=body(title=f"{tag}-{i}")))

    batcher = report_batcher(world.client.app)  # type: ignore[arg-type]
    batches, items = batcher.batches, batcher.items
    threads = [threading.Thread(target=post, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [201] * 24
    assert len({r.json()["properties"]["code"] for r in results}) == 24
    assert batcher.items - items == 24 and batcher.batches - batches < 24  # some reports shared a commit
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title LIKE :t", t=f"{tag}-%") == 24


def test_reports_survive_the_server_closing_the_writer_connection(world: World) -> None:
    create(world)  # the writer holds its connection now
    with world.engine.connect() as c:
        killed = c.execute(text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar_one()  # fmt: skip
    assert killed >= 1
    title = f"after-restart-{uuid.uuid4()}"
    assert create(world, title=title)["properties"]["title"] == title
    assert count(world.engine, "SELECT count(*) FROM incident WHERE title = :t", t=title) == 1


# ---------------------------------------------------------------------------------------------
# the workflow over HTTP
# ---------------------------------------------------------------------------------------------


def test_lifecycle_with_etags(world: World) -> None:
    city = world.city
    f = create(world)
    url = f"/v1/incidents/{f['id']}/transitions"
    r = world.client.post(url, json={"action": "register"}, headers={"If-Match": 'W/"1"', **world.dispatcher})
    assert r.status_code == 200 and r.headers["etag"] == '"2"'
    assert r.json()["events"][-1]["actor_id"] == city.dispatcher  # the actor is the signed-in caller
    r = world.client.post(url, json={"action": "dispatch", "assignee": city.workers[0]}, headers={"If-Match": "2"})
    assert r.status_code == 200 and r.json()["properties"]["deadline_at"]
    f = r.json()
    bad = world.client.post(url, json={"action": "close"}, headers={"If-Match": '"3"'})
    assert bad.status_code == 409 and bad.headers["content-type"] == "application/problem+json"
    assert bad.json()["detail"] == "Cannot close an incident that is dispatched; allowed actions: start, escalate, dispatch"
    assert bad.json()["incident_status"] == "dispatched"
    for action, kw in [("start", {}), ("resolve", {"note": "已处置"}), ("verify", {}), ("close", {})]:
        f = move(world, f, action, **kw)
    assert f["properties"]["status"] == "closed" and [e["seq"] for e in f["events"]] == list(range(1, 8))
    with Session(world.engine) as s:
        events = s.execute(text("SELECT action, to_status, at, data FROM incident_event WHERE incident_id = :id ORDER BY seq"),
                           {"id": f["id"]}).mappings().all()  # fmt: skip
        row = s.execute(text(svc.STATE_SQL + " WHERE i.id = :id"), {"id": f["id"]}).mappings().one()
    assert workflow.replay(events) == workflow.CaseState.from_row(row)


@pytest.mark.parametrize(
    ("if_match", "status", "detail"),
    [
        (None, 428, 'If-Match is required to change an incident: send the incident\'s ETag from GET /v1/incidents/{id}, e.g. If-Match: "3"'),
        ("*", 428, 'If-Match: * does not protect against lost updates: send the incident\'s ETag from GET /v1/incidents/{id}, e.g. If-Match: "3"'),
        ('"7"', 412, "The incident has changed since you read it: you sent version 7, it is now at version 1; GET it again and retry"),
        ("abc", 412, 'If-Match \'abc\' does not name a version of this incident: send the incident\'s ETag from GET /v1/incidents/{id}, e.g. If-Match: "3"'),
    ],
)  # fmt: skip
def test_if_match_is_required_and_checked(world: World, if_match: str | None, status: int, detail: str) -> None:
    f = create(world)
    headers = {"If-Match": if_match} if if_match is not None else {}
    r = world.client.post(f"/v1/incidents/{f['id']}/transitions", json={"action": "register"}, headers=headers)
    assert (r.status_code, r.json()["detail"]) == (status, detail)
    assert r.headers["content-type"] == "application/problem+json"


def test_concurrent_transitions_on_one_version(world: World) -> None:
    """Two dispatchers act on the same version: the second waits for the first, then gets 412."""
    f = move(world, create(world), "register")
    version = f["properties"]["version"]

    def attempt(action: str, assignee: int | None) -> Callable[[Session], Any]:
        return lambda s: svc.transition(s, ref=f["id"], action=action, version=version, assignee=assignee)

    a, b, waited = run_twins(world.engine, attempt("dispatch", world.city.workers[0]), attempt("escalate", None))
    assert isinstance(a, dict) and isinstance(b, PreconditionFailed), (a, b)
    assert b.detail == f"The incident has changed since you read it: you sent version {version}, it is now at version {version + 1}; GET it again and retry"
    assert waited > HOLD / 2  # it really waited on the row lock, then lost
    got = world.client.get(f"/v1/incidents/{f['id']}").json()
    assert got["properties"]["status"] == "dispatched" and len(got["events"]) == version + 1


def test_concurrent_transitions_through_the_api(world: World) -> None:
    f = move(world, create(world), "register")
    url, etag = f"/v1/incidents/{f['id']}/transitions", f'"{f["properties"]["version"]}"'
    results: list[int] = []

    def post(assignee: int) -> None:
        r = world.client.post(url, json={"action": "dispatch", "assignee": assignee}, headers={"If-Match": etag})
        results.append(r.status_code)

    threads = [threading.Thread(target=post, args=(w,)) for w in world.city.workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [200, 412]


def test_sla_tick_endpoint_escalates_once(world: World) -> None:
    f = move(world, move(world, create(world), "register"), "dispatch", assignee=world.city.workers[1])
    with world.engine.begin() as c:
        c.execute(text("UPDATE incident SET deadline_at = now() - interval '1 minute' WHERE id = :id"), {"id": f["id"]})
    listed = world.client.get("/v1/incidents", params={"overdue": "true", "grid": GRID_A1, "limit": 1000}).json()
    assert f["id"] in [x["id"] for x in listed["features"]]
    first = world.client.post("/v1/sla/tick")
    assert first.status_code == 200 and f["id"] in first.json()["escalated"]
    assert f["id"] not in world.client.post("/v1/sla/tick").json()["escalated"]
    got = world.client.get(f"/v1/incidents/{f['id']}").json()
    assert (got["properties"]["level"], got["properties"]["status"]) == ("community", "registered")
    assert got["events"][-1]["note"] == "超期自动升级 overdue: escalated to community"


def test_kpis_and_workflow_endpoints(world: World) -> None:
    r = world.client.get("/v1/kpis", params={"level": "community"})
    assert r.status_code == 200
    items = {i["code"]: i for i in r.json()["items"]}
    assert items[COMMUNITY_A]["reported"] >= 1 and 0 <= items[COMMUNITY_A]["closure_rate"] <= 1
    assert "on_time_closure_rate" in r.json()["definitions"]
    wf = world.client.get("/v1/workflow").json()
    assert {"from": "closed", "action": "reopen", "to": "dispatched"} in wf["transitions"]


# ---------------------------------------------------------------------------------------------
# listing (on the demo city, read only)
# ---------------------------------------------------------------------------------------------


def all_ids(demo_engine: Engine, where: str = "TRUE", **params: Any) -> list[int]:
    with demo_engine.connect() as c:
        sql = f"SELECT id FROM incident i WHERE {where} ORDER BY reported_at DESC, id DESC"
        return [r[0] for r in c.execute(text(sql), params)]


def test_pages_are_stable_and_complete(demo_client: TestClient, demo_engine: Engine) -> None:
    expected = all_ids(demo_engine)
    assert 100 < len(expected) <= 1000
    first = demo_client.get("/v1/incidents")
    assert first.status_code == 200 and first.headers["content-type"] == "application/geo+json"
    assert first.json()["numberReturned"] == 100  # the default page
    seen: list[int] = []
    url: str | None = "/v1/incidents?limit=37"
    pages = 0
    while url:
        page = demo_client.get(url).json()
        seen += [f["id"] for f in page["features"]]
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        url = nxt[0] if nxt else None
        pages += 1
    assert seen == expected and pages == -(-len(expected) // 37)


def test_pages_do_not_shift_when_cases_arrive(world: World) -> None:
    for _ in range(3):
        create(world)
    before = world.client.get("/v1/incidents", params={"limit": 1000}).json()["features"]
    page1 = world.client.get("/v1/incidents", params={"limit": 2}).json()
    create(world)  # newer than everything listed
    nxt = next(link["href"] for link in page1["links"] if link["rel"] == "next")
    page2 = world.client.get(nxt).json()
    assert [f["id"] for f in page1["features"] + page2["features"]] == [f["id"] for f in before[:4]]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ({"status": ["closed", "rejected"]}, "status IN ('closed', 'rejected')"),
        ({"category": "05"}, "category_code LIKE '05%'"),
        ({"category": "0504"}, "category_code = '0504'"),
        ({"severity": [3, 4]}, "severity IN (3, 4)"),
        ({"source": "camera"}, "source = 'camera'"),
        ({"level": "community"}, "level = 'community'"),
        ({"grid": "349901001001001"}, "grid_code = '349901001001001'"),
        ({"community": "349901001002"}, "grid_code LIKE '349901001002%'"),
        ({"street": "349901001"}, "grid_code LIKE '349901001%'"),
        ({"reported_from": "2026-10-01T00:00:00+08:00", "reported_to": "2026-10-08T00:00:00+08:00"},
         "reported_at >= '2026-10-01T00:00:00+08:00' AND reported_at < '2026-10-08T00:00:00+08:00'"),
        ({"overdue": "true"}, "status IN ('dispatched', 'in_progress') AND deadline_at < now()"),
        ({"overdue": "false"}, "NOT coalesce(status IN ('dispatched', 'in_progress') AND deadline_at < now(), false)"),
        ({"bbox": "117.25,31.84,117.27,31.86"}, "geom && ST_MakeEnvelope(117.25, 31.84, 117.27, 31.86, 4326)"),
        ({"category": "01", "severity": 1, "source": "hotline"}, "category_code LIKE '01%' AND severity = 1 AND source = 'hotline'"),
    ],
)  # fmt: skip
def test_filters_match_the_database(demo_client: TestClient, demo_engine: Engine, params: dict, where: str) -> None:
    got = demo_client.get("/v1/incidents", params={**params, "limit": 1000})
    assert got.status_code == 200, got.text
    assert [f["id"] for f in got.json()["features"]] == all_ids(demo_engine, where)


def test_filters_are_not_vacuous(demo_engine: Engine) -> None:
    """The demo city has cases for the filters above (else their test proves little)."""
    assert len(all_ids(demo_engine, "category_code LIKE '05%'")) > 10
    assert len(all_ids(demo_engine, "grid_code LIKE '349901001002%'")) > 10
    assert len(all_ids(demo_engine, "level = 'community'")) > 0
    assert len(all_ids(demo_engine, "geom && ST_MakeEnvelope(117.25, 31.84, 117.27, 31.86, 4326)")) > 10


def test_output_crs(demo_client: TestClient) -> None:
    wgs = demo_client.get("/v1/incidents", params={"limit": 3}).json()
    gcj = demo_client.get("/v1/incidents", params={"limit": 3, "crs": "GCJ02"}).json()
    assert gcj["coordinateSystem"] == "GCJ02"
    for a, b in zip(wgs["features"], gcj["features"], strict=True):
        expect = [float(v) for v in crs_mod.from_wgs84(*a["geometry"]["coordinates"], "GCJ02")]
        assert b["geometry"]["coordinates"] == pytest.approx(expect, abs=1e-7)
        assert b["geometry"]["coordinates"] != a["geometry"]["coordinates"]


# ---------------------------------------------------------------------------------------------
# every bad input: a 4xx problem with an exact detail, never a 500
# ---------------------------------------------------------------------------------------------


def detail_of(call: Callable[[], Any]) -> str:
    """The message a shared check (coordinates, crs) gives, so the table follows its wording."""
    try:
        call()
    except GridmapError as exc:
        return exc.detail
    raise AssertionError("expected an error")


def _cases() -> list[tuple[str, str, dict[str, Any], int, str | Callable[[], str]]]:
    sev = "use 1 (一般 low), 2 (较重 normal), 3 (严重 high), 4 (特别严重 critical)"
    stat = "reported, registered, rejected, dispatched, in_progress, resolved, verified, closed"
    return [
        # reports
        ("POST", "/v1/incidents", {"json": body(lon=200)}, 422, lambda: detail_of(lambda: crs_mod.check_lonlat(200, IN_A1[1]))),
        ("POST", "/v1/incidents", {"json": body(lat=-95)}, 422, lambda: detail_of(lambda: crs_mod.check_lonlat(IN_A1[0], -95))),
        ("POST", "/v1/incidents", {"content": json.dumps(body(lon=float("nan"))), "headers": {"content-type": "application/json"}},
         422, "Invalid value for parameter lon: must be a finite number"),
        ("POST", "/v1/incidents", {"json": body(crs="EPSG:9999")}, 422, lambda: detail_of(lambda: crs_mod.canonical_crs("EPSG:9999"))),
        ("POST", "/v1/incidents", {"json": body(category="9999")}, 422, "Unknown category '9999'"),
        ("POST", "/v1/incidents", {"json": body(category="x" * 300)}, 422, f"Invalid value for parameter category: {'x' * 16!r} is not valid"),
        ("POST", "/v1/incidents", {"json": body(severity=5)}, 422, f"Invalid value for parameter severity: 5 is not a severity; {sev}"),
        ("POST", "/v1/incidents", {"json": body(severity=10**30)}, 422, f"Invalid value for parameter severity: {10**30} is not a severity; {sev}"),
        ("POST", "/v1/incidents", {"json": body(source="fax")}, 422,
         "Invalid value for parameter source: 'fax' is not one of hotline, citizen_app, camera, patrol, department, open311"),
        ("POST", "/v1/incidents", {"json": body(title="x" * 201)}, 422, "Invalid value for parameter title: at most 200 characters"),
        ("POST", "/v1/incidents", {"json": body(description="a\x00b")}, 422, "Invalid value for parameter description: must not contain NUL characters"),
        ("POST", "/v1/incidents", {"json": body(reported_at="2026-11-01T10:00:00")}, 422,
         "Invalid value for parameter reported_at: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ("POST", "/v1/incidents", {"json": body(reported_at="2999-01-01T00:00:00+08:00")}, 422, "Invalid value for parameter reported_at: lies in the future"),
        ("POST", "/v1/incidents", {"json": body(reported_at="1999-01-01T00:00:00+08:00")}, 422, "Invalid value for parameter reported_at: earlier than 2000-01-01"),
        ("POST", "/v1/incidents", {"json": body(lon=117.0, lat=40.0)}, 422, "The point (117.000000, 40.000000) lies outside every grid in force; "
         "the nearest grid is 349902001002001 (第001网格), 996,337 m away"),
        ("POST", "/v1/incidents", {"json": body(color="red")}, 422, "Invalid value for parameter color: Extra inputs are not permitted"),
        ("POST", "/v1/incidents", {"json": {"source": "hotline", "lon": 117, "lat": 31}}, 422, "Missing required parameter category"),
        # these two wordings come from api/problems.py (RequestValidationError)
        ("POST", "/v1/incidents", {"json": [1, 2]}, 422, "Invalid request body: Input should be a valid dictionary or object to extract fields from"),
        ("POST", "/v1/incidents", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422,
         "The request body is not valid JSON: Expecting property name enclosed in double quotes"),
        ("POST", "/v1/incidents", {"content": b"", "headers": {"content-type": "application/json"}}, 422, "Missing request body"),
        ("POST", "/v1/incidents", {"content": b"x" * (MAX_BODY + 1), "headers": {"content-type": "application/json"}}, 413,
         f"Request body is larger than the limit of {MAX_BODY:,} bytes"),
        ("POST", "/v1/incidents", {"json": body(), "headers": {"Idempotency-Key": "k" * 256}}, 422,
         "Invalid value for header Idempotency-Key: 1 to 255 printable characters"),
        ("POST", "/v1/incidents", {"json": body(), "headers": {"X-API-Key": "gmk_0000_nothing"}}, 401, "The API key is not valid"),
        ("POST", "/v1/incidents", {"json": body(), "headers": {"X-API-Key": "", "Authorization": "Basic dTpw"}}, 401,
         "Only bearer tokens are accepted in Authorization. " + AUTH_REQUIRED),
        ("GET", "/v1/incidents", {"headers": {"X-API-Key": ""}}, 401, AUTH_REQUIRED),
        ("GET", "/v1/incidents", {"headers": {"Authorization": "Bearer abc.def.ghi"}}, 401, "The token is not valid"),
        # lists
        ("GET", "/v1/incidents?limit=1001", {}, 422, "Invalid value for parameter limit: at most 1000 per page"),
        ("GET", "/v1/incidents?limit=0", {}, 422, "Invalid value for parameter limit: at least 1"),
        ("GET", "/v1/incidents?limit=many", {}, 422, "Invalid value for parameter limit: Input should be a valid integer, unable to parse string as an integer"),
        ("GET", "/v1/incidents?status=open", {}, 422, f"Invalid value for parameter status: 'open' is not one of {stat}"),
        ("GET", "/v1/incidents?category=99", {}, 422, "Unknown category '99'"),
        ("GET", "/v1/incidents?category=%00", {}, 422, "Invalid value for parameter category: '\\x00' is not valid"),
        ("GET", "/v1/incidents?severity=9", {}, 422, f"Invalid value for parameter severity: 9 is not a severity; {sev}"),
        ("GET", "/v1/incidents?source=fax", {}, 422,
         "Invalid value for parameter source: 'fax' is not one of hotline, citizen_app, camera, patrol, department, open311"),
        ("GET", "/v1/incidents?level=city", {}, 422, "Invalid value for parameter level: 'city' is not one of grid, community, street, district"),
        ("GET", "/v1/incidents?grid=123", {}, 422, "Invalid value for parameter grid: a grid code has 15 digits"),
        ("GET", "/v1/incidents?community=34990100100A", {}, 422, "Invalid value for parameter community: a community code has 12 digits"),
        ("GET", "/v1/incidents?street=1", {}, 422, "Invalid value for parameter street: a street code has 9 digits"),
        ("GET", "/v1/incidents?bbox=1,2,3", {}, 422, "Invalid value for parameter bbox: expected minlon,minlat,maxlon,maxlat"),
        ("GET", "/v1/incidents?bbox=117,95,118,96", {}, 422,
         "Invalid value for parameter bbox: longitudes must lie in [-180, 180], latitudes in [-90, 90]"),
        ("GET", "/v1/incidents?reported_from=2026-01-01T00:00:00", {}, 422,
         "Invalid value for parameter reported_from: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ("GET", "/v1/incidents?reported_from=2026-02-01T00:00:00%2B08:00&reported_to=2026-01-01T00:00:00%2B08:00", {}, 422,
         "Invalid value for parameter reported_to: must be later than reported_from"),
        ("GET", "/v1/incidents?cursor=bm90LWEtY3Vyc29y", {}, 422, "Invalid value for parameter cursor: not a cursor from this API; start again without it"),
        ("GET", "/v1/incidents?cursor=%%%", {}, 422, "Invalid value for parameter cursor: not a cursor from this API; start again without it"),
        ("GET", "/v1/incidents?crs=EPSG:3857", {}, 422, lambda: detail_of(lambda: crs_mod.canonical_crs("EPSG:3857"))),
        ("GET", "/v1/incidents?assignee=0", {}, 422, "Invalid value for parameter assignee: 0 is not a valid id"),
        ("GET", f"/v1/incidents?assignee={10**20}", {}, 422, f"Invalid value for parameter assignee: {10**20} is not a valid id"),
        ("GET", "/v1/incidents?overdue=maybe", {}, 422, "Invalid value for parameter overdue: Input should be a valid boolean, unable to interpret input"),
        # one incident
        ("GET", "/v1/incidents/abc", {}, 422, "Invalid incident reference 'abc': give its numeric id or its code (AJ…)"),
        ("GET", "/v1/incidents/999999999", {}, 404, "No incident 999999999"),
        ("GET", f"/v1/incidents/{10**25}", {}, 404, f"No incident {10**25}"),
        ("GET", "/v1/incidents/AJ20990101000001", {}, 404, "No incident AJ20990101000001"),
        ("DELETE", "/v1/incidents", {}, 405, "Method DELETE is not allowed on /v1/incidents"),
        # transitions
        ("POST", "/v1/incidents/999999999/transitions", {"json": {"action": "register"}, "headers": {"If-Match": '"1"'}}, 404, "No incident 999999999"),
        ("POST", "{incident}/transitions", {"json": {"action": "fly"}, "headers": {"If-Match": '"1"'}}, 422,
         "Invalid value for parameter action: unknown action 'fly'; use one of register, reject, dispatch, start, resolve, verify, close, escalate, reopen"),
        ("POST", "{incident}/transitions", {"json": {"action": "reject"}, "headers": {"If-Match": '"1"'}}, 422,
         "A reason is required to reject an incident: give it in note"),
        ("POST", "{incident}/transitions", {"json": {"action": "reject", "note": "x" * 4001}, "headers": {"If-Match": '"1"'}}, 422,
         "Invalid value for parameter note: at most 4000 characters"),
        ("POST", "{incident}/transitions", {"json": {"action": "register", "assignee": 1}, "headers": {"If-Match": '"1"'}}, 422,
         "Invalid value for parameter assignee: register takes no assignee; only dispatch and reopen do"),
        ("POST", "{incident}/transitions", {"json": {"action": "start"}, "headers": {"If-Match": '"1"'}}, 409,
         "Cannot start an incident that is reported; allowed actions: register, reject"),
        ("POST", "{incident}/transitions", {"json": {"action": "register", "why": 1}, "headers": {"If-Match": '"1"'}}, 422,
         "Invalid value for parameter why: Extra inputs are not permitted"),
        ("POST", "{incident}/transitions", {"json": {"action": "register"}, "headers": {"If-Match": '"1"', "X-API-Key": ""}}, 401, AUTH_REQUIRED),
        # kpis
        ("GET", "/v1/kpis", {}, 422, "Missing required parameter level"),
        ("GET", "/v1/kpis?level=city", {}, 422, "Invalid value for parameter level: 'city' is not one of grid, community, street, staff"),
        ("GET", "/v1/kpis?level=grid&from=2026-01-01T00:00:00", {}, 422, "Invalid value for parameter from: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ("GET", "/v1/kpis?level=grid&from=soon", {}, 422, "Invalid value for parameter from: Input should be a valid datetime or date, input is too short"),
    ]  # fmt: skip


CASES = _cases()


@pytest.mark.parametrize(("method", "path", "kw", "status", "detail"), CASES, ids=[f"{c[0]} {c[1]} {c[4] if isinstance(c[4], str) else ''}"[:90] for c in CASES])
def test_bad_input_is_a_clear_problem(world: World, method: str, path: str, kw: dict, status: int, detail: str | Callable[[], str]) -> None:
    if path.startswith("{incident}"):
        path = f"/v1/incidents/{create(world)['id']}" + path.removeprefix("{incident}")
    r = world.client.request(method, path, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    got = r.json()
    expected = detail() if callable(detail) else detail
    assert got["detail"] == expected and got["status"] == status and got["title"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
FIELDS = ["category", "source", "lon", "lat", "crs", "severity", "title", "description", "address", "reported_at"]
plausible = {
    "category": st.sampled_from(["0102", "01", "9999", "", "0102\x00"]),
    "source": st.sampled_from(["hotline", "camera", "fax", ""]),
    "lon": st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([IN_A1[0], 117.015]),
    "lat": st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([IN_A1[1], 31.015]),
    "crs": st.sampled_from([None, "EPSG:4326", "EPSG:4490", "GCJ02", "BD09", "nonsense"]),
    "severity": st.integers(-(2**70), 2**70),
    "reported_at": st.sampled_from(["2026-11-23T10:00:00+08:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "x"]),
}
bodies = st.fixed_dictionaries({}, optional={f: plausible.get(f, json_values) for f in FIELDS}) | st.dictionaries(
    st.sampled_from([*FIELDS, "extra"]), json_values, max_size=6
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=bodies, key=st.none() | st.text(max_size=300))
def test_no_report_body_gives_a_500(world: World, payload: dict, key: str | None) -> None:
    headers = {"content-type": "application/json"}
    if key is not None and key.isascii() and key.isprintable() and key.strip():
        headers["Idempotency-Key"] = key
    r = world.client.post("/v1/incidents", content=json.dumps(payload), headers=headers)
    assert r.status_code in (201, 409, 413, 422), r.text
    if r.status_code != 201:
        assert r.headers["content-type"] == "application/problem+json" and r.json()["detail"]


query_values = st.text(max_size=40) | st.sampled_from(
    ["0", "-1", "1001", "99999999999999999999", "nan", "inf", "true", "2026-11-23T10:00:00+08:00",
     "117,31,118,32", "349901001", "GCJ02", "\x00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00"]
)  # fmt: skip
QUERY_NAMES = ["bbox", "grid", "community", "street", "district", "status", "category", "severity", "source", "level",
               "assignee", "reported_from", "reported_to", "overdue", "limit", "cursor", "crs"]  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=st.lists(st.tuples(st.sampled_from(QUERY_NAMES), query_values), max_size=5))
def test_no_list_query_gives_a_500(world: World, params: list[tuple[str, str]]) -> None:
    r = world.client.get("/v1/incidents", params=params)
    assert r.status_code in (200, 422), r.text


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "0001-01-02T00:00:00Z", "9999-12-31T23:59:59-12:00"])
def test_extreme_times_are_answered(world: World, when: str) -> None:
    for path, name in [("/v1/incidents", "reported_from"), ("/v1/incidents", "reported_to"), ("/v1/kpis?level=grid", "from"),
                       ("/v1/kpis?level=street", "to")]:  # fmt: skip
        r = world.client.get(path, params={name: when})
        assert r.status_code in (200, 422), r.text


def test_sla_tick_command(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    import gridmap.db
    from gridmap.cli_sla import sla_app

    f = move(world, move(world, create(world), "register"), "dispatch", assignee=world.city.workers[0])
    with world.engine.begin() as c:
        c.execute(text("UPDATE incident SET deadline_at = now() - interval '1 hour' WHERE id = :id"), {"id": f["id"]})
    monkeypatch.setattr(gridmap.db, "get_engine", lambda: world.engine)
    runner = CliRunner()
    first = runner.invoke(sla_app, ["tick"])
    assert first.exit_code == 0 and first.output.startswith("escalated ") and str(f["id"]) in first.output
    again = runner.invoke(sla_app, ["tick", "--now", dt.datetime.now(dt.UTC).isoformat()])
    assert again.exit_code == 0 and str(f["id"]) not in again.output
    bad = runner.invoke(sla_app, ["tick", "--now", "2026-11-23T10:00:00"])
    assert bad.exit_code != 0 and "give a time zone" in str(bad.exception)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.fixed_dictionaries(
        {"action": st.sampled_from([*workflow.TRANSITION_ACTIONS, "report", "", "x" * 100])},
        optional={"note": st.none() | st.text(max_size=20), "assignee": st.none() | st.integers(-(2**70), 2**70)},
    ),
    if_match=st.none() | st.text(max_size=12).filter(lambda s: s.isascii() and s.isprintable()),
    ref=st.sampled_from(["{incident}", "abc", "0", "99999999999999999999999", "AJ1"]),
)
def test_no_transition_gives_a_500(world: World, payload: dict, if_match: str | None, ref: str) -> None:
    if ref == "{incident}":
        ref = str(create(world)["id"])
    headers = {"If-Match": if_match} if if_match is not None else {}
    r = world.client.post(f"/v1/incidents/{ref}/transitions", json=payload, headers=headers)
    assert r.status_code in (200, 404, 409, 412, 422, 428), r.text
