"""The command-center map on the small demo: sign-in by form and cookie, a self-contained page
(no CDN, Leaflet inlined), its layers and legend; the cookie counts for GETs of /map and /tiles only."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from api.app import create_app
from gridmap import auth
from tests.auth_helpers import PASSWORD
from tests.test_cli import GRIDMAP, one_clear_line

USER = f"map.viewer.{os.getpid()}"


@pytest.fixture(scope="module")
def client(demo_engine: Engine) -> Iterator[TestClient]:
    with Session(demo_engine) as s, s.begin():
        auth.add_user(s, username=USER, name="指挥员", role="command_center", password=PASSWORD, scopes=[("city", "")])
    with TestClient(create_app(engine=demo_engine)) as c:
        yield c


def signed_in(client: TestClient) -> TestClient:
    r = client.post("/map/sign-in", data={"username": USER, "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/map"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    return client


def test_the_map_asks_to_sign_in_first(client: TestClient) -> None:
    client.cookies.clear()
    r = client.get("/map")
    assert r.status_code == 200 and "登录 Sign in" in r.text and r.headers["content-type"].startswith("text/html")
    assert "L.vectorGrid.protobuf(" not in r.text  # the form, not the map
    wrong = client.post("/map/sign-in", data={"username": USER, "password": "not the password"}, follow_redirects=False)
    assert wrong.status_code == 401 and "Wrong username or password" in wrong.text


def test_the_map_page_is_whole_and_offline(client: TestClient) -> None:
    page = signed_in(client).get("/map", params={"days": 30, "refresh": 60})
    assert page.status_code == 200 and page.headers["cache-control"] == "private, no-store"
    html = page.text
    assert not re.search(r"""<(script|link|img)\b[^>]*(src|href)=["']https?://""", html), "the page loads from the internet"
    assert "L.vectorGrid.protobuf" in html and "/tiles/grids/{z}/{x}/{y}.mvt?days=30" in html
    assert html.count("L.vectorGrid.protobuf(") >= 4 and "L.markerClusterGroup" in html and "L.heatLayer" in html
    assert "gridmap-legend" in html and "时间窗口 window" in html and "setTimeout" in html
    assert "Leaflet 1.9.4" in html  # inlined
    assert len(html) < 5_000_000


def test_the_cookie_opens_tiles_but_changes_nothing(client: TestClient) -> None:
    signed_in(client)
    assert client.get("/tiles/grids.json").status_code == 200
    r = client.post("/v1/incidents", json={"category": "0102", "source": "hotline", "lon": 117.2, "lat": 31.8})
    assert r.status_code == 401  # the cookie is not a credential for the API
    assert client.get("/v1/grids").status_code == 401


def test_the_map_command_writes_a_standalone_file(demo_engine: Engine, tmp_path: Path) -> None:
    out = tmp_path / "city.html"
    env = {**os.environ, "GRIDMAP_DATABASE_URL": demo_engine.url.render_as_string(hide_password=False)}
    done = subprocess.run([*GRIDMAP, "map", "--out", str(out), "--days", "90"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith(f"wrote {out}"), done.stderr
    html = out.read_text(encoding="utf-8")
    assert "L.vectorGrid.protobuf(" not in html and "网格 grid" in html  # the grids inlined: no tile server needed
    assert not re.search(r"""<(script|link|img)\\b[^>]*(src|href)=["']https?://""", html)
    bad = subprocess.run([*GRIDMAP, "map", "--out", str(out), "--area", "12x"], env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and one_clear_line(bad).startswith("error: Invalid value for parameter area")
