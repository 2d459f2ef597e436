"""The FastAPI application factory."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.routers import (
    audit,
    auth,
    buildings,
    grids,
    health,
    incidents,
    locate,
    residents,
    staff,
    stats,
)
from api.routers import map as map_router
from api.routers import plans as plans_router
from gridmap import __version__
from gridmap.db import make_engine
from gridmap.settings import api_settings
from tiles import router as tiles_router


class BodyLimit:
    """Refuse request bodies over the limit with 413, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._reject(scope, send)

    async def _reject(self, scope: Scope, send: Send) -> None:
        import json

        body = json.dumps({"type": "about:blank", "title": "Content too large", "status": 413,
                           "detail": f"Request body is larger than the limit of {self.max_bytes:,} bytes",
                           "instance": scope.get("path")}).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def _warm_up(app: FastAPI, engine) -> None:  # type: ignore[no-untyped-def]
    """PySAL and the grids' contiguity, ahead of the first map (in the background at startup)."""
    import logging

    from sqlalchemy.orm import Session

    from gridmap.services import stats

    try:
        with Session(engine) as session:
            stats.warm_up(session)
        app.state.warm_up = "done"
    except Exception as exc:  # a warm-up must never stop the API; the first map just pays for it
        app.state.warm_up = "skipped"
        logging.getLogger("gridmap.api").warning("warm-up skipped: %s", str(exc).splitlines()[0] if str(exc) else exc)


PUBLIC_PATHS = frozenset({"/healthz", "/v1/auth/token", "/map"})  # /map: the sign-in form until signed in


def _openapi_with_security(app: FastAPI) -> dict:
    """The OpenAPI document with the two ways to authenticate, required on every operation but
    health and sign-in. Declared here once: the hot endpoints read their headers themselves."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearer": {"type": "oauth2", "flows": {"password": {"tokenUrl": "/v1/auth/token", "scopes": {}}},
                   "description": "staff: sign in with username and password"},
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "machines: gmk_… keys"},
    }  # fmt: skip
    for path, operations in schema.get("paths", {}).items():
        if path in PUBLIC_PATHS:
            continue
        for operation in operations.values():
            operation["security"] = [{"bearer": []}, {"apiKey": []}]
            operation.setdefault("responses", {}).setdefault("401", {"description": "no valid credentials (problem+json)"})
    app.openapi_schema = schema
    return schema


def create_app(engine=None) -> FastAPI:  # type: ignore[no-untyped-def]
    """Build the app; the engine is created in the lifespan unless one is handed in (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from sqlalchemy.orm import Session

        from gridmap.auth import PrincipalCache
        from gridmap.services.incidents import ensure_case_sequences
        from gridmap.services.locate import GridIndexHolder

        own = engine is None
        app.state.engine = engine or make_engine()
        app.state.grid_index = GridIndexHolder(app.state.engine)
        # callers and tiles are cached only where the listener drops what changed
        if api_settings().tile_cache_mb > 0:
            from tiles.cache import TileCache

            holder = app.state.grid_index
            app.state.tiles = TileCache(api_settings().tile_cache_mb << 20, grid_bounds=lambda code: holder.table.lonlat_bounds(code))
            holder.subscribers.append(app.state.tiles.notice)
        if api_settings().case_count_seconds > 0:
            from gridmap.services.casecounts import CaseCountKeeper

            app.state.case_counts = CaseCountKeeper(app.state.engine, every=api_settings().case_count_seconds)
            app.state.grid_index.subscribers.append(app.state.case_counts.notice)
        if api_settings().plan_check_seconds > 0:
            from gridmap.services.plans import PlanScheduler

            app.state.plan_scheduler = PlanScheduler(app.state.engine, every=api_settings().plan_check_seconds)
        ttl = api_settings().auth_cache_seconds
        if ttl > 0:
            principals = app.state.principals = PrincipalCache(ttl)
            app.state.grid_index.subscribers.append(
                lambda notices: principals.clear() if any(c in ("gridmap_auth", "gridmap_staff") for c, _ in notices) else None)  # fmt: skip
        with Session(app.state.engine) as session, session.begin():
            ensure_case_sequences(session)
        app.state.warm_up = "running"  # reported by /healthz
        threading.Thread(target=_warm_up, args=(app, app.state.engine), name="gridmap-warm-up", daemon=True).start()
        yield
        app.state.grid_index.close()
        for worker in ("case_counts", "plan_scheduler"):
            if getattr(app.state, worker, None) is not None:
                getattr(app.state, worker).close()
        if getattr(app.state, "reports", None) is not None:
            app.state.reports.close()
        if own:
            app.state.engine.dispose()

    app = FastAPI(
        title="gridmap API",
        version=__version__,
        description="City grid management (网格化管理): grids, cases, dispatch, maps. Errors are RFC 9457 problem+json.",
        lifespan=lifespan,
    )
    problems.install(app)
    # the hot paths first: a request is matched against the routes in order (half the time of a
    # cached tile was spent matching it against the 50 routes before /tiles)
    app.include_router(tiles_router.router)
    app.include_router(locate.router)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(grids.router)
    app.include_router(staff.router)
    app.include_router(incidents.router)
    app.include_router(residents.router)
    app.include_router(buildings.router)
    app.include_router(audit.router)
    app.include_router(stats.router)
    app.include_router(map_router.router)
    app.include_router(plans_router.router)
    app.add_middleware(BodyLimit, max_bytes=api_settings().max_body_bytes)

    app.openapi = lambda: _openapi_with_security(app)  # type: ignore[method-assign]

    @app.get("/", include_in_schema=False)
    def index() -> dict:
        return {"name": "gridmap", "docs": "/docs", "health": "/healthz", "grids": "/v1/grids", "categories": "/v1/categories"}

    return app
