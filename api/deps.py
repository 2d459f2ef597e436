"""Dependencies: a session per request from the engine created in the lifespan; the caller."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from gridmap import auth
from gridmap.errors import Unauthorized


def get_session(request: Request) -> Iterator[Session]:
    """A session whose transaction commits when the request succeeds and rolls back otherwise."""
    with Session(bind=request.app.state.engine, expire_on_commit=False) as session, session.begin():
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

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
