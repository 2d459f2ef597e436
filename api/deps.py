"""Dependencies: a session per request from the engine created in the lifespan; the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from gridmap import auth
from gridmap.errors import Unauthorized


def get_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the request succeeds and rolls back otherwise."""
    with Session(bind=request.app.state.engine, expire_on_commit=False) as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
T = TypeVar("T")
# the query parameters every keyset-paged list in the caller's grids takes
GridQuery = Annotated[str | None, Query(description="only this 15-digit grid code")]
AfterQuery = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="the next_after of the previous page")]

# declared for the OpenAPI document (the "Authorize" button); checked below, not by FastAPI
_bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key of a machine (hotline, cameras)")


def get_principal(session: SessionDep, token: Annotated[str | None, Depends(_bearer)],
                  api_key: Annotated[str | None, Depends(_api_key)]) -> auth.Principal:  # fmt: skip
    """The caller from `Authorization: Bearer …` or `X-API-Key: …`; 401 without valid ones."""
    if token:
        return auth.from_token(session, token)
    if api_key:
        return auth.from_api_key(session, api_key)
    raise Unauthorized("Authentication required: send Authorization: Bearer <token> from POST /v1/auth/token, "
                       "or an X-API-Key")  # fmt: skip


PrincipalDep = Annotated[auth.Principal, Depends(get_principal)]


def audit_refusals(request: Request, principal: auth.Principal, action: str, object_type: str,
                   object_ids: list[int], work: Callable[[], T]) -> T:  # fmt: skip
    """Run a request's work; a refusal (403, 404, 422) is audited in a transaction of its own,
    since the request's own transaction rolls back with it."""
    from gridmap import audit
    from gridmap.errors import Forbidden, InvalidInput, NotFound

    try:
        return work()
    except (Forbidden, NotFound, InvalidInput) as exc:
        audit.record_refusal(request.app.state.engine, principal, f"{action}_refused", object_type=object_type,
                             object_ids=object_ids, detail={"status": exc.status})  # fmt: skip
        raise
