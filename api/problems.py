"""RFC 9457 problem+json for every error; driver text never reaches a response."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gridmap.errors import GridmapError

log = logging.getLogger("gridmap.api")
PROBLEM = "application/problem+json"
TITLES = {400: "Bad request", 401: "Unauthorized", 403: "Forbidden", 404: "Not found", 405: "Method not allowed",
          409: "Conflict", 412: "Precondition failed", 413: "Content too large", 415: "Unsupported media type",
          422: "Invalid input", 428: "Precondition required", 429: "Too many requests", 500: "Internal error",
          503: "Service unavailable"}  # fmt: skip


def problem(request: Request, status: int, detail: str, title: str | None = None, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title or TITLES.get(status, "Error"), "status": status,
            "detail": detail, "instance": request.url.path, **extra}  # fmt: skip
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _describe(err: dict[str, Any]) -> str:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
    where = loc[0] if err.get("loc", ("",))[0] in ("query", "path", "header") and loc else ".".join(loc)
    msg = err.get("msg", "invalid").removeprefix("Value error, ")
    if err.get("type") == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "")
        return f"The request body is not valid JSON{': ' + str(reason) if reason else ''}"
    if err.get("type") == "missing":
        return f"Missing required parameter {where}" if where else "Missing request body"
    if err.get("loc", ("",))[0] == "body" and not loc:
        return f"Invalid request body: {msg}"
    return f"Invalid value for parameter {where}: {msg}" if where else msg


def install(app: FastAPI) -> None:
    @app.exception_handler(GridmapError)
    async def _gridmap(request: Request, exc: GridmapError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.detail)
        detail = exc.detail + (f" ({exc.hint})" if exc.hint else "")
        response = problem(request, exc.status, detail, exc.title, **exc.extra)
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = "; ".join(_describe(e) for e in errors[:5]) or "Invalid request"
        safe = [{"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg")} for e in errors[:20]]
        return problem(request, 422, detail, errors=safe)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No resource at {request.url.path}"
        if exc.status_code == 405:
            detail = f"Method {request.method} is not allowed on {request.url.path}"
        return problem(request, exc.status_code, detail)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return problem(request, 503, "The database is unavailable; try again shortly")

    @app.exception_handler(DBAPIError)
    async def _db(request: Request, exc: DBAPIError) -> JSONResponse:
        code = getattr(exc.orig, "pgcode", None)
        if code == "57014":  # statement_timeout
            return problem(request, 503, "The query took too long and was cancelled; narrow it down")
        log.exception("database error")
        return problem(request, 500, "Internal error; it has been logged")

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return problem(request, 500, "Internal error; it has been logged")
