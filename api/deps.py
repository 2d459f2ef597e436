"""Dependencies: a session per request from the engine created in the lifespan; the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from gridmap import access, audit, auth
from gridmap.errors import Unauthorized


def get_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the request succeeds and rolls back otherwise."""
    with Session(bind=request.app.state.engine, expire_on_commit=False) as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
T = TypeVar("T")
# the query parameters every keyset-paged list in the caller's grids takes
GridQuery = Annotated[str | None, Query(description="only this 15-digit grid code")]
AfterQuery = Annotated[str | None, Query(max_length=40, description="the next_after cursor of the previous page")]

COOKIE = "gridmap_token"
COOKIE_PATHS = ("/map", "/tiles/", "/plans/")  # the only places the sign-in cookie counts (the map pages), and only for GET


async def authenticate(request: Request) -> auth.Principal:
    """The caller from `Authorization: Bearer …` or `X-API-Key: …`; 401 without valid ones.

    Read from the headers directly (the hot endpoints call this too) and answered from the
    app's principal cache when the credential was seen in the last seconds (gridmap.auth)."""
    headers = request.headers
    token = api_key = None
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if token is None:
        api_key = headers.get("x-api-key") or None
        if api_key is None and request.method == "GET" and request.url.path.startswith(COOKIE_PATHS):
            token = request.cookies.get(COOKIE) or None  # the map page's sign-in (api.routers.map)
        if api_key is None and token is None:
            detail = "Only bearer tokens are accepted in Authorization. " if authorization else ""
            raise Unauthorized(detail + auth.AUTH_REQUIRED)
    cache: auth.PrincipalCache | None = getattr(request.app.state, "principals", None)
    if cache is not None and (hit := cache.get(token or api_key or "")) is not None:
        return hit
    return await run_in_threadpool(auth.resolve, request.app.state.engine, token=token, api_key=api_key, cache=cache)


def require_audited(request: Request, principal: auth.Principal, function: str) -> None:
    """403 unless the caller's role may use `function`; the refusal is audited."""
    if not access.allows(principal, function):
        audit.record_refusal(request.app.state.engine, principal, "refused", object_type="function", object_ids=[function])
        access.require(principal, function)


async def refuse_unless(request: Request, principal: auth.Principal, function: str) -> None:
    """`require_audited` for async endpoints (the audit write runs off the event loop)."""
    if not access.allows(principal, function):
        await run_in_threadpool(require_audited, request, principal, function)


def allowed(function: str) -> Any:
    """A dependency: the authenticated caller, who may use `function` (401 / 403 otherwise)."""

    async def caller(request: Request) -> auth.Principal:
        principal = await authenticate(request)
        await refuse_unless(request, principal, function)
        return principal

    caller.__name__ = f"allowed_{function.replace('.', '_')}"
    return Depends(caller)


PrincipalDep = Annotated[auth.Principal, Depends(authenticate)]


def audit_refusals(request: Request, principal: auth.Principal, action: str, object_type: str,
                   object_ids: list[int], work: Callable[[], T]) -> T:  # fmt: skip
    """Run a request's work; a refusal (403, 404, 422) is audited in a transaction of its own,
    since the request's own transaction rolls back with it."""
    from gridmap.errors import Forbidden, InvalidInput, NotFound

    try:
        return work()
    except (Forbidden, NotFound, InvalidInput) as exc:
        audit.record_refusal(request.app.state.engine, principal, f"{action}_refused", object_type=object_type,
                             object_ids=object_ids, detail={"status": exc.status})  # fmt: skip
        raise
