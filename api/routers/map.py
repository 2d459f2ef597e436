"""The command-center map page (指挥中心地图): GET /map, and a sign-in form that sets a cookie.

A browser cannot send a bearer header when it opens a page, so /map also accepts the token in
an HttpOnly, SameSite=Strict cookie set by POST /map/sign-in — for GET requests to /map and
/tiles only (api.deps.authenticate), so the cookie cannot make a cross-site change anywhere.
"""

from __future__ import annotations

import html
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import OAuth2PasswordRequestForm
from sqlalchemy.orm import Session

from api.deps import COOKIE, SessionDep, authenticate, refuse_unless
from api.routers.auth import THROTTLE
from gridmap import access, auth, maps
from gridmap.errors import Unauthorized
from gridmap.settings import api_settings

router = APIRouter(tags=["map"])


def sign_in_page(message: str = "") -> str:
    note = f"<p style='color:#b2182b'>{html.escape(message)}</p>" if message else ""
    return f"""<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>gridmap 登录 · sign in</title>
<link rel="icon" href="data:,"></head>
<body style="font: 14px sans-serif; max-width: 320px; margin: 80px auto">
<h2>gridmap 指挥中心 · command center</h2>{note}
<form method="post" action="/map/sign-in">
  <p><label>用户名 Username<br><input name="username" autocomplete="username" required></label></p>
  <p><label>密码 Password<br><input name="password" type="password" autocomplete="current-password" required></label></p>
  <p><button type="submit">登录 Sign in</button></p>
</form></body></html>"""


@router.get("/map", response_class=HTMLResponse, summary="The command-center map (Folium over the vector tiles)")
async def command_center(
    request: Request,
    days: Annotated[int, Query(ge=1, le=365, description="the window of cases shown, in days")] = 30,
    refresh: Annotated[int, Query(ge=0, le=3600, description="reload every this many seconds (0: never)")] = 120,
    area: Annotated[str | None, Query(description="only this district, street, community or grid code")] = None,
) -> HTMLResponse:
    try:
        principal = await authenticate(request)
    except Unauthorized:  # a person opening the page: the form (200, so a browser logs no error)
        return HTMLResponse(sign_in_page(), headers={"Cache-Control": "no-store"})
    await refuse_unless(request, principal, "map.read")

    def build() -> str:
        with Session(request.app.state.engine) as session:
            scope = access.narrow(access.reach(session, principal, "map.read"), area)
            return maps.render(maps.build_map(session, scope, days=days, refresh_s=refresh,
                                              basemap=api_settings().basemap_url))  # fmt: skip

    page = await run_in_threadpool(build)
    return HTMLResponse(page, headers={"Cache-Control": "private, no-store"})


@router.post("/map/sign-in", response_class=HTMLResponse, include_in_schema=False)
def sign_in(request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> HTMLResponse:
    address = request.client.host if request.client else "unknown"
    THROTTLE.check(address)
    try:
        principal = auth.authenticate(session, username=form.username, password=form.password)
    except Unauthorized as exc:
        THROTTLE.failed(address)
        return HTMLResponse(sign_in_page(exc.detail), status_code=401)
    token = auth.issue_token(session, principal)
    response = RedirectResponse("/map", status_code=303)
    response.set_cookie(COOKIE, token["access_token"], max_age=token["expires_in"], httponly=True, samesite="strict",
                        path="/")  # fmt: skip
    return response  # type: ignore[return-value]
