"""Signing in (登录): OAuth2 password flow for people, API keys for machines."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from api.deps import PrincipalDep, SessionDep
from gridmap import access, auth
from gridmap.errors import Unauthorized

router = APIRouter(prefix="/v1/auth", tags=["auth"])


THROTTLE = auth.SignInThrottle()  # per process; see docs/access.md


@router.post("/token", summary="Sign in with username and password (form fields): a bearer token (OAuth2 password flow)")
def token(request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, Any]:
    address = request.client.host if request.client else "unknown"
    THROTTLE.check(address)
    try:
        principal = auth.authenticate(session, username=form.username, password=form.password)
    except Unauthorized:
        THROTTLE.failed(address)
        raise
    return auth.issue_token(session, principal)


@router.get("/me", summary="Who the credentials belong to: role, scopes and the functions they may use")
def me(principal: PrincipalDep) -> dict[str, Any]:
    return {**principal.as_dict(), "functions": access.functions_of(principal)}
