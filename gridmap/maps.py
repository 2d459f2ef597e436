"""The command-center map (指挥中心地图): Folium over gridmap's vector tiles, working offline.

Leaflet and its plugins come from npm once (`ensure_assets`, into .gridmap/assets) and are
inlined into the page, so the map needs no CDN and no base-map tiles (a base-map URL may be
configured: GRIDMAP_BASEMAP_URL). Big layers are drawn from the vector tiles (grids with their
case counts as a choropleth, patrol tracks, cameras, service points); what the server
aggregates is inlined: the heatmap (per-grid case weights), hotspot grids (Gi*) and the open
and overdue cases (clustered markers with popups).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import folium
import geopandas as gpd
import numpy as np
import shapely
from folium.plugins import FastMarkerCluster, HeatMap, VectorGridProtobuf
from sqlalchemy import text
from sqlalchemy.orm import Session

from gridmap.access import Scope, scope_filter
from gridmap.errors import SetupError
from gridmap.services import stats
from gridmap.services.casecounts import open_sql, overdue_sql

# npm package → the files of it the page needs, in load order
ASSETS: dict[str, list[str]] = {
    "leaflet@1.9.4": ["dist/leaflet.css", "dist/leaflet.js"],
    "leaflet.vectorgrid@1.3.0": ["dist/Leaflet.VectorGrid.bundled.min.js"],
    "leaflet.markercluster@1.5.3": ["dist/MarkerCluster.css", "dist/MarkerCluster.Default.css", "dist/leaflet.markercluster.js"],
    "leaflet.heat@0.2.0": ["dist/leaflet-heat.js"],
}
HOT_COLOURS = {"hot_99": "#b2182b", "hot_95": "#ef8a62", "hot_90": "#fddbc7"}
LABELS = {
    "grids": "网格与案件密度 Grids · case density", "heat": "热力图 Heatmap", "hotspots": "热点网格 Hotspots (Gi*)",
    "incidents": "未结与超期案件 Open & overdue cases", "patrols": "巡查轨迹 Patrol tracks", "cameras": "监控 Cameras",
    "service_points": "服务点 Service points", "gaps": "巡查空白 Patrol gaps (never patrolled)",
}  # fmt: skip


def assets_dir() -> Path:
    from gridmap.settings import db_settings

    return db_settings().home / "assets"


def ensure_assets() -> Path:
    """The vendored Leaflet files, fetched with `npm pack` the first time (one clear error if npm is missing)."""
    target = assets_dir()
    wanted = [target / pkg.split("@")[0] / Path(f).name for pkg, files in ASSETS.items() for f in files]
    if all(p.exists() for p in wanted):
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise SetupError("The map needs Leaflet, fetched once from the npm registry: install npm (apt-get install npm)")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run([npm, "pack", "--silent", "--pack-destination", tmp, *ASSETS], check=True,
                           capture_output=True, timeout=300)  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise SetupError(f"npm could not fetch Leaflet for the map: {str(exc)[:200]}") from None
        for pkg, files in ASSETS.items():
            name, version = pkg.rsplit("@", 1)
            with tarfile.open(Path(tmp) / f"{name}-{version}.tgz") as tar:
                for f in files:
                    data = tar.extractfile(f"package/{f}")
                    if data is None:
                        raise SetupError(f"{pkg} has no {f}")
                    out = target / name / Path(f).name
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(data.read())
    return target


def _inline_assets(m: folium.Map) -> None:
    """Every Leaflet file inlined into the page's head, in load order; no CDN link left."""
    root = ensure_assets()
    head = m.get_root().header
    for pkg, files in ASSETS.items():
        for f in files:
            body = (root / pkg.split("@")[0] / Path(f).name).read_text(encoding="utf-8")
            tag = "style" if f.endswith(".css") else "script"
            head.add_child(folium.Element(f"<{tag}>{body}</{tag}>"), name=f"asset_{Path(f).name}")


def _offline(element: Any) -> Any:
    element.default_js, element.default_css = [], []
    return element


def _open_cases(session: Session, scope: Scope, limit: int) -> list[list[Any]]:
    term, params = scope_filter("i", scope)
    rows = session.execute(text(f"""
        SELECT ST_Y(i.geom), ST_X(i.geom), i.code, c.name_zh, i.category_code, i.status,
               round(extract(epoch FROM now() - i.reported_at) / 3600.0)::int,
               coalesce(s.name, ''), {overdue_sql()}
        FROM incident i JOIN category c ON c.code = i.category_code LEFT JOIN staff s ON s.id = i.assignee_id
        WHERE {open_sql()} AND {term}
        ORDER BY {overdue_sql()} DESC, i.reported_at DESC
        LIMIT :limit"""), {**params, "limit": limit}).all()  # fmt: skip
    return [[round(r[0], 5), round(r[1], 5), *r[2:]] for r in rows]  # 5 decimals: a metre


def build_map(session: Session, scope: Scope, *, tiles: bool = True, days: int = 30, refresh_s: int = 120,
              basemap: str | None = None, max_cases: int = 20_000) -> folium.Map:  # fmt: skip
    """The command-center map for the caller's reach. With `tiles` (the page the API serves) the
    grids, tracks, cameras and service points come from /tiles of the same origin; without (a
    standalone file, `gridmap map --out`) the grids are inlined as a choropleth instead."""
    until = dt.datetime.now(dt.UTC)
    since = until - dt.timedelta(days=days)
    frame = stats.grid_stats(session, scope, since=since, until=until, residents=False)
    if len(frame):
        west, south, east, north = frame.total_bounds
    else:
        west, south, east, north = 73.5, 18.0, 135.1, 53.6
    m = _offline(folium.Map(location=[(south + north) / 2, (west + east) / 2], tiles=None, zoom_control=True,
                            prefer_canvas=True, control_scale=True))  # fmt: skip
    m.options.update(maxZoom=20, minZoom=3)  # without a tile layer Folium sets neither; clustering needs maxZoom
    m.fit_bounds([[south, west], [north, east]])
    _inline_assets(m)
    if basemap:
        folium.TileLayer(basemap, attr="base map", name="底图 Base map").add_to(m)
    top = float(np.nanpercentile(frame["per_km2"], 95)) if len(frame) and frame["cases"].sum() else 1.0
    grid_style = ("{grids: function(p, z) {var d = p.cases / Math.max(p.area_km2 || 1, 0.01); "
                  f"var t = Math.min(d / {max(top, 1e-9):.6f}, 1); "
                  "return {weight: z < 12 ? 0.4 : 1, color: p.overdue > 0 ? '#d7301f' : '#555', fill: true, "
                  "fillColor: 'rgb(' + Math.round(255) + ',' + Math.round(245 - 200 * t) + ',' + Math.round(235 - 220 * t) + ')', "
                  "fillOpacity: 0.55};}}")  # fmt: skip
    layers = [("grids", f"{{rendererFactory: L.canvas.tile, interactive: true, maxNativeZoom: 22, vectorTileLayerStyles: {grid_style}}}"),
              ("patrols", "{rendererFactory: L.canvas.tile, vectorTileLayerStyles: {patrols: {weight: 1, color: '#2166ac', opacity: 0.6}}}"),
              ("cameras", "{rendererFactory: L.canvas.tile, vectorTileLayerStyles: {cameras: {radius: 2, color: '#4d4d4d', fill: true}}}"),
              ("service_points", "{rendererFactory: L.canvas.tile, vectorTileLayerStyles: {service_points: {radius: 3, color: '#1a9850', fill: true}}}"),
              ("gaps", "{rendererFactory: L.canvas.tile, vectorTileLayerStyles: {gaps: {weight: 0, fill: true, fillColor: '#762a83', fillOpacity: 0.45}}}")]  # fmt: skip
    for layer, options in layers if tiles else []:
        if layer == "patrols" and not scope.all_grids:
            continue  # tracks carry no grid to cut them by: city-wide roles only
        query = f"?days={days}" if layer == "grids" else ""
        _offline(VectorGridProtobuf(f"/tiles/{layer}/{{z}}/{{x}}/{{y}}.mvt{query}", LABELS[layer], options,
                                    show=layer in ("grids", "patrols", "gaps"))).add_to(m)  # fmt: skip
    if not tiles and len(frame):
        _choropleth(frame, top).add_to(m)
    if len(frame):
        centroids = frame.geometry.representative_point()
        heat = [[round(p.y, 5), round(p.x, 5), float(w)] for p, w in zip(centroids, frame["weight"], strict=True) if w > 0]
        _offline(HeatMap(heat, name=LABELS["heat"], radius=18, blur=14, min_opacity=0.3, show=False)).add_to(m)
        spots = stats.hotspots(frame)
        hot = spots[spots["spot"].str.startswith("hot")][["code", "name", "cases", "gi_z", "spot", "geom"]].copy()
        if len(hot):
            hot["geom"] = shapely.set_precision(hot.geometry.simplify(0.0001).values, 1e-5)
            hot["gi_z"] = hot["gi_z"].round(2)
            folium.GeoJson(
                json.loads(hot.to_json(drop_id=True)), name=LABELS["hotspots"],
                style_function=lambda f: {"color": HOT_COLOURS[f["properties"]["spot"]], "weight": 1,
                                          "fillColor": HOT_COLOURS[f["properties"]["spot"]], "fillOpacity": 0.5},
                tooltip=folium.GeoJsonTooltip(["code", "name", "cases", "gi_z", "spot"],
                                              aliases=["网格 grid", "名称 name", "案件 cases", "Gi* z", "热点 spot"]),
            ).add_to(m)  # fmt: skip
    cases = _open_cases(session, scope, max_cases)
    callback = ("function (row) {var m = L.circleMarker(new L.LatLng(row[0], row[1]), {radius: 5, weight: 1, "
                "color: row[8] ? '#b2182b' : '#2166ac', fillOpacity: 0.8}); m.bindPopup('<b>' + row[2] + '</b><br>' + "
                "row[3] + ' ' + row[4] + '<br>状态 status: ' + row[5] + (row[8] ? ' · <b>超期 overdue</b>' : '') + "
                "'<br>已 ' + row[6] + ' 小时 hours<br>承办 assignee: ' + (row[7] || '—')); return m;}")  # fmt: skip
    _offline(FastMarkerCluster(cases, callback=callback, name=f"{LABELS['incidents']} ({len(cases):,})")).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    snapshot = session.execute(text("SELECT max(computed_at), max(until) - min(since) FROM coverage_snapshot")).one()
    m.get_root().html.add_child(folium.Element(_legend(days, refresh_s, len(frame), int(frame["cases"].sum()) if len(frame) else 0,
                                                       snapshot)))  # fmt: skip
    _head(m, "gridmap 指挥中心 · command center", f"<meta name='gridmap-window-days' content='{days}'>")
    return m


def _head(m: folium.Map, title: str, extra: str = "") -> None:
    """The page's title, and an empty icon: nothing is fetched that the server does not have."""
    m.get_root().header.add_child(folium.Element(f"{extra}<title>{html.escape(title)}</title><link rel='icon' href='data:,'>"))


def _choropleth(frame: Any, top: float) -> folium.GeoJson:
    """The grids and their case density inlined (for a file that has no tile server)."""
    grids = frame[["code", "name", "cases", "per_km2", "open", "overdue", "geom"]].copy()
    grids["geom"] = grids.geometry.simplify(0.0002)
    grids["t"] = (grids["per_km2"].fillna(0) / max(top, 1e-9)).clip(0, 1).round(3)

    def style(feature: dict[str, Any]) -> dict[str, Any]:
        t = feature["properties"]["t"]
        return {"color": "#d7301f" if feature["properties"]["overdue"] else "#555", "weight": 0.6, "fillOpacity": 0.55,
                "fillColor": f"rgb(255,{round(245 - 200 * t)},{round(235 - 220 * t)})"}  # fmt: skip

    return folium.GeoJson(json.loads(grids.to_json(drop_id=True)), name=LABELS["grids"], style_function=style,
                          tooltip=folium.GeoJsonTooltip(["code", "name", "cases", "open", "overdue"],
                                                        aliases=["网格 grid", "名称 name", "案件 cases", "未结 open", "超期 overdue"]))  # fmt: skip


def _legend(days: int, refresh_s: int, grids: int, cases: int, snapshot: Any) -> str:
    options = "".join(f"<option value='{d}'{' selected' if d == days else ''}>{d} 天 days</option>" for d in (1, 7, 30, 90, 365))
    refresh = (f"<script>setTimeout(function () {{ window.location.reload(); }}, {refresh_s * 1000});</script>"
               if refresh_s > 0 else "")  # fmt: skip
    return f"""
<div id="gridmap-legend" style="position: fixed; bottom: 24px; left: 12px; z-index: 9999; background: white; padding: 8px 10px;
     border: 1px solid #999; border-radius: 4px; font: 12px/1.4 sans-serif; max-width: 260px">
  <b>gridmap 指挥中心 · command center</b><br>
  {grids:,} 网格 grids · {cases:,} 案件 cases<br>
  时间窗口 window: <select id="gridmap-window" onchange="var u = new URL(window.location.href); u.searchParams.set('days', this.value); window.location.href = u.toString();">{options}</select><br>
  <span style="display:inline-block;width:12px;height:12px;background:rgb(255,45,15)"></span> 案件密度高 high case density<br>
  <span style="display:inline-block;width:12px;height:12px;background:rgb(255,245,235)"></span> 案件密度低 low case density<br>
  <span style="display:inline-block;width:12px;height:12px;border:2px solid #d7301f"></span> 有超期案件 has overdue cases<br>
  <span style="display:inline-block;width:12px;height:12px;background:{HOT_COLOURS["hot_99"]}"></span> 热点 99% hotspot (Gi*)<br>
  <span style="display:inline-block;width:12px;height:12px;border-radius:6px;background:#b2182b"></span> 超期案件 overdue case
  <span style="display:inline-block;width:12px;height:12px;border-radius:6px;background:#2166ac"></span> 未结 open<br>
  <span style="display:inline-block;width:12px;height:3px;background:#2166ac"></span> 巡查轨迹 patrol tracks<br>
  <span style="display:inline-block;width:12px;height:12px;background:#762a83;opacity:.6"></span> 巡查空白 never patrolled
  ({f"{snapshot[1].days} 天 days, {snapshot[0]:%Y-%m-%d %H:%M}" if snapshot[0] else "未计算 not computed: gridmap stats refresh-coverage"})<br>
  每 {refresh_s} 秒刷新 refreshes every {refresh_s} s
</div>{refresh}"""


def render(m: folium.Map) -> str:
    """The map as one HTML page."""
    out = io.StringIO()
    out.write(m.get_root().render())
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# the diff map of a grid plan (/plans/{id}/map)
# ---------------------------------------------------------------------------------------------
PLAN_LABELS = {"old": "现有网格 grids in force", "new": "方案网格 plan grids", "moved": "变更楼栋 buildings that move",
               "findings": "校验问题 findings"}  # fmt: skip


def plan_map(session: Session, principal: Any, plan_id: int) -> str:
    """Old and new boundaries, the buildings that change grid, and the findings, as one page."""
    from gridmap.services import plans

    plan = plans.get(session, principal, plan_id)  # checks the caller may read it
    ctx = plans.load(session, plan_id)
    _, _, moved = plans.moved_buildings(ctx, plans.new_codes(ctx))
    pending = plan["plan"]["status"] in ("draft", "validated", "scheduled")  # an applied plan's findings are history
    found = [plans.finding_json(f, ctx.epsg) for f in plans.findings(session, ctx, plans.Rules())] if pending else []
    lonlat = plans.project([ctx.scope.envelope], ctx.epsg, 4326)[0]
    west, south, east, north = lonlat.bounds
    m = _offline(folium.Map(location=[(south + north) / 2, (west + east) / 2], tiles=None, prefer_canvas=True, control_scale=True))
    m.options.update(maxZoom=20, minZoom=3)
    m.fit_bounds([[south, west], [north, east]])
    _inline_assets(m)
    old = gpd.GeoDataFrame(ctx.current[["code", "name", "kind"]], geometry=list(plans.project(ctx.current.geometry, ctx.epsg, 4326)), crs=4326)
    folium.GeoJson(json.loads(old.to_json(drop_id=True)), name=PLAN_LABELS["old"],
                   style_function=lambda f: {"color": "#555", "weight": 2, "dashArray": "6 4", "fill": False},
                   tooltip=folium.GeoJsonTooltip(["code", "name"], aliases=["编码 code", "名称 name"])).add_to(m)  # fmt: skip
    new = {"type": "FeatureCollection", "features": [
        {**f, "properties": {**f["properties"], "code": f["properties"]["code"] or f"新 new #{f['id']}"}} for f in plan["features"]]}
    folium.GeoJson(new, name=PLAN_LABELS["new"], style_function=lambda f: {"color": "#1b7837", "weight": 3, "fillOpacity": 0.08},
                   tooltip=folium.GeoJsonTooltip(["code", "name", "kind", "area_km2"],
                                                 aliases=["编码 code", "名称 name", "类型 kind", "面积 km²"])).add_to(m)  # fmt: skip
    if len(moved):  # clustered from the data in one call, not one marker object per building: a district moves thousands
        pts = plans.project(list(moved["point"]), ctx.epsg, 4326)
        rows = [[round(p.y, 6), round(p.x, 6), str(was or "—"), str(now)] for p, was, now in zip(pts, moved["grid_code"], moved["new"], strict=True)]
        callback = ("function (row) {var m = L.circleMarker(new L.LatLng(row[0], row[1]), {radius: 4, weight: 1, color: '#e66101', "
                    "fillOpacity: 0.9}); m.bindTooltip(row[2] + ' → ' + row[3]); return m;}")  # fmt: skip
        _offline(FastMarkerCluster(rows, callback=callback, name=f"{PLAN_LABELS['moved']} ({len(moved):,})",
                                   options={"disableClusteringAtZoom": 16})).add_to(m)  # fmt: skip
    if found:
        features = [{"type": "Feature", "geometry": f["geometry"], "properties": {"type": f["type"], "message": f["message"],
                                                                                "message_zh": f["message_zh"], "severity": f["severity"]}}
                    for f in found if f["geometry"]]  # fmt: skip
        folium.GeoJson({"type": "FeatureCollection", "features": features}, name=f"{PLAN_LABELS['findings']} ({len(found)})",
                       style_function=lambda f: {"color": "#b2182b" if f["properties"]["severity"] == "error" else "#f1a340",
                                                 "weight": 3, "fillOpacity": 0.4},
                       marker=folium.CircleMarker(radius=6, color="#b2182b", fill=True),
                       popup=folium.GeoJsonPopup(["message_zh", "message"], labels=False)).add_to(m)  # fmt: skip
    folium.LayerControl(collapsed=False).add_to(m)
    info = plan["plan"]
    _head(m, f"gridmap 网格调整方案 plan {info['id']}")
    m.get_root().html.add_child(folium.Element(f"""
<div id="gridmap-legend" style="position: fixed; bottom: 24px; left: 12px; z-index: 9999; background: white; padding: 8px 10px;
     border: 1px solid #999; border-radius: 4px; font: 12px/1.4 sans-serif; max-width: 300px">
  <b>网格调整方案 plan {info['id']}</b> · {html.escape(str(info['name']))}<br>
  范围 scope {info['scope_code']} · 状态 status {info['status']}<br>
  <span style="display:inline-block;width:14px;border-top:2px dashed #555"></span> {PLAN_LABELS['old']}<br>
  <span style="display:inline-block;width:14px;border-top:3px solid #1b7837"></span> {PLAN_LABELS['new']}<br>
  <span style="display:inline-block;width:10px;height:10px;border-radius:5px;background:#e66101"></span> {PLAN_LABELS['moved']}: {len(moved):,}<br>
  <span style="display:inline-block;width:10px;height:10px;background:#b2182b"></span> 错误 error
  <span style="display:inline-block;width:10px;height:10px;background:#f1a340"></span> 提示 warning: {len(found)}
</div>"""))  # fmt: skip
    return render(m)
