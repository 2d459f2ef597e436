"""The command-center map in a real headless Chromium (Debian `chromium`, driven by Playwright):
signed in through the form, Leaflet up, the layers and the legend there, every tile answered,
no console error; a screenshot is kept in test-artifacts/."""

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
from sqlalchemy import Engine
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
