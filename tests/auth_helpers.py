"""Credentials for tests: real API keys and real signed tokens, made the way the CLI makes them."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gridmap import auth

PASSWORD = "correct horse battery"


def key_headers(engine: Engine, role: str = "admin", scope: tuple[str, str] = ("city", "")) -> dict[str, str]:
    """Headers with a new API key of `role`."""
    with Session(engine) as s, s.begin():
        key = auth.add_api_key(s, name=f"test {role}", role=role, scope=scope)
    return {"X-API-Key": key}


def user_headers(engine: Engine, username: str, *, role: str | None = None,
                 scopes: list[tuple[str, str]] | None = None) -> dict[str, str]:  # fmt: skip
    """Headers with a bearer token of an existing staff member, given a password (and the role
    and scopes, when given) first, as `gridmap user set-password | set-role | set-scope` would."""
    with Session(engine) as s, s.begin():
        if role is not None:
            auth.set_role(s, username=username, role=role, scopes=scopes)
        elif scopes is not None:
            auth.set_scopes(s, username=username, scopes=scopes)
        auth.set_password(s, username=username, password=PASSWORD)
    with Session(engine) as s, s.begin():
        principal = auth.authenticate(s, username=username, password=PASSWORD)
        token = auth.issue_token(s, principal)["access_token"]
    return {"Authorization": f"Bearer {token}"}
