"""Vector tiles over HTTP (矢量切片): /tiles, /tiles/{layer}.json (TileJSON), /tiles/{layer}/{z}/{x}/{y}.mvt.

Thin: parse the request, find the caller's reach, answer from the process's tile cache or
render (tiles.render), and speak HTTP caching (ETag, If-None-Match → 304, Cache-Control
private: a tile depends on who asks).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from api.deps import allowed
from gridmap import access
from gridmap.auth import Principal
from tiles import render
from tiles.cache import TileCache
from tiles.layers import LAYERS

router = APIRouter(prefix="/tiles", tags=["tiles"])
MVT = "application/vnd.mapbox-vector-tile"
Reader = Annotated[Principal, allowed("map.read")]


def _bounds(request: Request) -> tuple[float, float, float, float] | None:
    holder = getattr(request.app.state, "grid_index", None)
    return holder.table.lonlat_extent() if holder is not None else None


async def _scope(request: Request, principal: Principal) -> access.Scope:
    scope = access.reach_at_once(principal, "map.read")  # the common case: no database, no thread hop
    if scope is not None:
        return scope

    def resolve() -> access.Scope:
        with Session(request.app.state.engine) as session:  # reads the database only for scattered scopes
            return access.reach(session, principal, "map.read")

    return await run_in_threadpool(resolve)


@router.get("", summary="The tile layers (切片图层) and their TileJSON")
async def layers(request: Request, principal: Reader) -> list[dict[str, Any]]:
    base = str(request.base_url).rstrip("/")
    return [{"name": lay.name, "zh": lay.zh, "en": lay.en, "minzoom": lay.minzoom, "maxzoom": lay.maxzoom,
             "geometry": lay.geometry, "tilejson": f"{base}/tiles/{lay.name}.json"} for lay in LAYERS.values()]  # fmt: skip


@router.get("/{layer}.json", summary="TileJSON 3.0.0 of one layer")
async def tilejson(request: Request, principal: Reader, layer: str) -> dict[str, Any]:
    spec = render.layer_named(layer)
    return render.tilejson(spec, str(request.base_url), _bounds(request), render.window(spec, request.query_params.get("days")))


@router.get("/{layer}/{z}/{x}/{y}.mvt", response_class=Response,
            summary="One vector tile (Mapbox Vector Tile); 204 when empty, 304 when unchanged",
            responses={200: {"content": {MVT: {}}}, 204: {"description": "no features here"}, 304: {"description": "unchanged"}})  # fmt: skip
async def tile(request: Request, principal: Reader, layer: str, z: str, x: str, y: str) -> Response:
    spec = render.layer_named(layer)
    zi, xi, yi = render.tile_xyz(z, x, y)
    days = render.window(spec, request.query_params.get("days"))
    scope = await _scope(request, principal)
    render.check_reach(spec, scope)
    headers = {"Cache-Control": f"private, max-age={int(spec.ttl)}", "Vary": "Authorization, X-API-Key"}
    if not spec.minzoom <= zi <= spec.maxzoom:
        return Response(status_code=204, headers=headers)
    cache: TileCache | None = getattr(request.app.state, "tiles", None)
    key = (spec.name, zi, xi, yi, days, render.scope_key(scope))
    # a request's `Cache-Control: no-cache` (RFC 9111 §5.2.1.4) renders the tile again
    entry = cache.get(key) if cache is not None and "no-cache" not in request.headers.get("cache-control", "") else None
    if entry is not None:
        data, tag, headers["X-Tile-Cache"] = entry.data, entry.etag, "hit"
    else:
        generation = cache.generation(spec.name) if cache is not None else 0
        data = await run_in_threadpool(render.render, request.app.state.engine, spec, zi, xi, yi, days, scope)
        tag, headers["X-Tile-Cache"] = render.etag(data), "miss"
        if cache is not None:
            cache.put(key, (spec.name, zi, xi, yi), data, tag, spec.ttl, generation)
    if not data:
        return Response(status_code=204, headers=headers)
    headers["ETag"] = tag
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=MVT, headers=headers)
