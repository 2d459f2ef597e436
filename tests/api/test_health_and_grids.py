"""The API answers health and grid questions, and every error is problem+json."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from tests.auth_helpers import key_headers


@pytest.fixture(scope="module")
def client(demo_engine) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    with TestClient(create_app(engine=demo_engine), headers=key_headers(demo_engine, "admin")) as c:
        yield c


def test_healthz_reports_versions(client: TestClient) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"]["postgis"].startswith("3.")
    assert body["database"]["schema"] == body["schema_expected"]
    assert body["warm_up"] in ("running", "done", "skipped")


def test_openapi_docs_are_served(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    assert "/v1/grids" in client.get("/openapi.json").json()["paths"]


def test_grids_geojson_with_hierarchy(client: TestClient) -> None:
    fc = client.get("/v1/grids", params={"limit": 5}).json()
    assert fc["type"] == "FeatureCollection" and fc["numberReturned"] == 5
    props = fc["features"][0]["properties"]
    assert props["code"].startswith(props["community"]) and props["community"].startswith(props["street"])
    one = client.get(f"/v1/grids/{props['code']}").json()
    assert one["geometry"]["type"] == "MultiPolygon"


def test_grids_at_a_time_before_they_existed(client: TestClient) -> None:
    r = client.get("/v1/grids", params={"at": "2000-01-01T00:00:00+08:00"})
    assert r.status_code == 200 and r.json()["numberReturned"] == 0


@pytest.mark.parametrize(
    ("path", "status", "detail"),
    [
        ("/v1/grids?bbox=1,2,3", 422, "Invalid value for parameter bbox: expected minlon,minlat,maxlon,maxlat"),
        ("/v1/grids?bbox=118,31,117,32", 422, "Invalid value for parameter bbox: minlon must be less than maxlon"),
        ("/v1/grids?bbox=117,95,118,96", 422, "Invalid value for parameter bbox: longitudes must lie in [-180, 180], latitudes in [-90, 90]"),
        ("/v1/grids?limit=0", 422, "Invalid value for parameter limit: must be between 1 and 5000"),
        ("/v1/grids?limit=abc", 422, "Invalid value for parameter limit: Input should be a valid integer, unable to parse string as an integer"),
        ("/v1/grids?at=yesterday", 422, "Invalid value for parameter at: Input should be a valid datetime or date, input is too short"),
        ("/v1/grids?at=2026-01-01T00:00:00", 422, "Invalid value for parameter at: give a time zone, e.g. 2026-11-23T10:00:00+08:00"),
        ("/v1/grids?area=12", 422, "Invalid value for parameter area: a 6-, 9- or 12-digit district, street or community code"),
        ("/v1/grids/12345", 422, "Invalid grid code '12345': a grid code has 15 digits"),
        ("/v1/grids/999999999999999", 404, "No grid 999999999999999 in force at that time"),
        ("/nothing-here", 404, "No resource at /nothing-here"),
    ],
)
def test_bad_input_is_a_clear_problem(client: TestClient, path: str, status: int, detail: str) -> None:
    r = client.get(path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["detail"] == detail and body["status"] == status and body["title"]


def test_wrong_method_and_oversized_body(client: TestClient) -> None:
    r = client.delete("/v1/grids")
    assert r.status_code == 405 and r.json()["detail"] == "Method DELETE is not allowed on /v1/grids"
    r = client.post("/v1/grids", content=b"x" * (21 * 1024 * 1024))
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
