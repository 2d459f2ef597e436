"""The command-center map and a plan's diff map in a real headless Chromium (Debian `chromium`,
driven by Playwright): signed in through the form, Leaflet up, the layers and the legend there,
every tile answered, no console error; screenshots are kept in test-artifacts/."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from gridmap import auth
from tests.auth_helpers import PASSWORD

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
USER = f"map.browser.{os.getpid()}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_map_in_a_real_browser(demo_engine: Engine) -> None:
    from playwright.sync_api import sync_playwright

    if CHROMIUM is None:
        pytest.fail("Chromium is needed for the map's browser test: apt-get install chromium (scripts/test.sh does)")
    with Session(demo_engine) as s, s.begin():
        auth.add_user(s, username=USER, name="值班长", role="command_center", password=PASSWORD, scopes=[("city", "")])
        plan_id = _a_plan_with_a_split(s)
    port = _free_port()
    env = {**os.environ, "GRIDMAP_DATABASE_URL": demo_engine.url.render_as_string(hide_password=False)}
    server = subprocess.Popen([sys.executable, "-m", "gridmap.cli", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, "the API did not start"
            time.sleep(0.3)
        errors: list[str] = []
        tiles: dict[str, int] = {}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=["--no-sandbox", "--disable-background-networking"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("response", lambda r: tiles.__setitem__(r.url, r.status) if "/tiles/" in r.url else None)
            page.goto(base + "/map?refresh=0")
            page.fill("input[name=username]", USER)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_function("window.L !== undefined && document.querySelector('.leaflet-container') !== null")
            page.wait_for_load_state("networkidle")
            overlays = page.locator(".leaflet-control-layers-overlays label").all_inner_texts()
            legend = page.locator("#gridmap-legend").inner_text()
            markers = page.evaluate("document.querySelectorAll('.marker-cluster, path.leaflet-interactive').length")
            canvases = page.evaluate("document.querySelectorAll('.leaflet-tile-container canvas, canvas.leaflet-tile').length")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "command_center.png"), full_page=True)
            # the diff map of a plan, with the same sign-in
            page.goto(f"{base}/plans/{plan_id}/map")
            page.wait_for_function("window.L !== undefined && document.querySelector('.leaflet-container') !== null")
            page.wait_for_load_state("networkidle")
            plan_overlays = page.locator(".leaflet-control-layers-overlays label").all_inner_texts()
            plan_legend = page.locator("#gridmap-legend").inner_text()
            moved = page.evaluate("document.querySelectorAll('.leaflet-overlay-pane canvas, .leaflet-overlay-pane path').length")  # drawn layers
            page.screenshot(path=str(ARTIFACTS / "plan_diff.png"), full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=15)
    assert not errors, errors
    text = " ".join(overlays)
    for name in ("Grids", "Heatmap", "Open & overdue cases", "Patrol tracks", "Cameras", "Service points", "Patrol gaps"):
        assert name in text, (name, overlays)
    assert "command center" in legend and "window" in legend
    assert markers > 0 and canvases > 0, (markers, canvases)
    assert tiles and all(status in (200, 204) for status in tiles.values()), tiles
    assert not errors, errors
    assert (ARTIFACTS / "command_center.png").stat().st_size > 10_000
    plan_text = " ".join(plan_overlays)
    for name in ("grids in force", "plan grids", "buildings that move", "findings"):
        assert name in plan_text, (name, plan_overlays)
    moving = int(plan_legend.split("buildings that move:")[1].split()[0].replace(",", ""))
    assert f"plan {plan_id}" in plan_legend and moving > 0 and moved > 0, (plan_legend, moved)
    assert (ARTIFACTS / "plan_diff.png").stat().st_size > 10_000


def _a_plan_with_a_split(session: Session) -> int:
    """A plan of the demo's first community with its first grid split through its centre."""
    from shapely.geometry import shape

    from gridmap.services import plans

    planner = auth.Principal("cli", 0, "browser test", "planner", (("city", ""),))
    community = session.execute(text("SELECT min(left(code, 12)) FROM grid WHERE valid_to IS NULL")).scalar_one()
    plan = plans.create(session, planner, name="browser test", scope_code=community)
    first = plans.get(session, planner, plan["id"])["features"][0]
    box = shape(first["geometry"]).envelope
    x = box.centroid.x
    line = {"type": "LineString", "coordinates": [[x, box.bounds[1] - 0.001], [x, box.bounds[3] + 0.001]]}
    plans.edit(session, planner, plan["id"], {"op": "split", "grid": first["id"], "line": line})
    return int(plan["id"])
