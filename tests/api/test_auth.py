"""Signing in: accounts from the CLI, OAuth2 password flow, bearer tokens that expire and can be
revoked, API keys for machines; every refusal a 401 problem that tells nothing away."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator

import jwt
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from api import problems
from api.routers import auth as auth_router
from gridmap import auth, migrate
from gridmap.errors import InvalidInput
from gridmap.settings import api_settings
from tests.conftest import drop_database, make_database
from tests.test_cli import GRIDMAP, one_clear_line

PASSWORD = "correct horse battery"
GRID = "349902001001001"


@pytest.fixture(scope="module")
def env(database_url_for_tests: str) -> Iterator[tuple[Engine, TestClient, str]]:
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_auth")
    engine = create_engine(url)
    try:
        migrate.upgrade(engine)
        app = FastAPI()
        problems.install(app)
        app.include_router(auth_router.router)
        app.state.engine = engine
        with TestClient(app) as client:
            yield engine, client, url
    finally:
        engine.dispose()
        drop_database(url)


def cli(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDMAP, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "GRIDMAP_DATABASE_URL": url})  # fmt: skip


def sign_in(client: TestClient, username: str, password: str = PASSWORD) -> dict:
    return client.post("/v1/auth/token", data={"username": username, "password": password}).json()


def me(client: TestClient, **headers: str) -> dict:
    return client.get("/v1/auth/me", headers=headers).json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_an_account_from_the_cli_signs_in(env: tuple[Engine, TestClient, str]) -> None:
    _, client, url = env
    res = cli(url, "user", "add", "wang.wei", "--role", "grid_worker", "--name", "王伟", "--scope", f"grid:{GRID}",
              "--password-stdin", stdin=PASSWORD + "\n")  # fmt: skip
    assert res.returncode == 0, res.stderr
    got = client.post("/v1/auth/token", data={"username": "wang.wei", "password": PASSWORD})
    assert got.status_code == 200 and got.json()["token_type"] == "bearer"
    assert got.json()["expires_in"] == api_settings().token_ttl_minutes * 60
    who = client.get("/v1/auth/me", headers=bearer(got.json()["access_token"]))
    assert who.status_code == 200
    assert {k: who.json()[k] for k in ("kind", "name", "role", "scopes")} == {
        "kind": "user", "name": "王伟", "role": "grid_worker", "scopes": [{"level": "grid", "code": GRID}]}
    again = cli(url, "user", "add", "wang.wei", "--role", "grid_worker", "--password-stdin", stdin=PASSWORD + "\n")
    assert one_clear_line(again) == "error: Username 'wang.wei' is taken"
    short = cli(url, "user", "add", "li.na", "--role", "grid_worker", "--password-stdin", stdin="short\n")
    assert one_clear_line(short) == "error: Invalid password: at least 10 characters"
    bad_scope = cli(url, "user", "add", "li.na", "--role", "grid_worker", "--scope", "grid:123", "--password-stdin",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert one_clear_line(bad_scope) == "error: Invalid scope 'grid:123': a grid code has 15 digits"


def test_wrong_password_and_unknown_user_look_the_same(env: tuple[Engine, TestClient, str]) -> None:
    engine, client, _ = env
    with Session(engine) as s, s.begin():
        auth.add_user(s, username="zhao.li", name="赵丽", role="dispatcher", password=PASSWORD)
    for username, password in [("zhao.li", "wrong password!"), ("nobody.here", PASSWORD), ("zhao.li", "")]:
        r = client.post("/v1/auth/token", data={"username": username, "password": password})
        if password == "":
            assert r.status_code == 422  # a missing form field
            continue
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "Wrong username or password"
        assert r.headers["www-authenticate"] == 'Bearer realm="gridmap"'


def test_no_forged_expired_or_tampered_token_gets_in(env: tuple[Engine, TestClient, str]) -> None:
    engine, client, _ = env
    with Session(engine) as s, s.begin():
        staff_id = auth.add_user(s, username="sun.qi", name="孙琦", role="planner", password=PASSWORD)
        old = auth.issue_token(s, auth.Principal("user", staff_id, "孙琦", "planner"),
                               now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))["access_token"]  # fmt: skip
    good = sign_in(client, "sun.qi")["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    forged = jwt.encode(claims, "another secret, long enough for HS256 keys", algorithm="HS256")
    unsigned = jwt.encode({**claims, "sub": "1"}, None, algorithm="none")
    cases = {old: "The token has expired: sign in again", forged: "The token is not valid",
             unsigned: "The token is not valid", good[:-4] + "AAAA": "The token is not valid",
             "garbage": "The token is not valid"}  # fmt: skip
    for token, detail in cases.items():
        r = client.get("/v1/auth/me", headers=bearer(token))
        assert r.status_code == 401 and r.json()["detail"] == detail, token
    r = client.get("/v1/auth/me")
    assert r.status_code == 401 and r.json()["detail"].startswith("Authentication required")
    assert me(client, **bearer(good))["role"] == "planner"


def test_disable_and_new_roles_end_earlier_tokens(env: tuple[Engine, TestClient, str]) -> None:
    engine, client, url = env
    with Session(engine) as s, s.begin():
        auth.add_user(s, username="zhou.min", name="周敏", role="grid_worker", password=PASSWORD,
                      scopes=[("grid", GRID)])  # fmt: skip
    first = sign_in(client, "zhou.min")["access_token"]
    assert cli(url, "user", "set-role", "zhou.min", "grid_leader").returncode == 0
    assert client.get("/v1/auth/me", headers=bearer(first)).json()["detail"] == "The token is no longer valid: sign in again"
    second = sign_in(client, "zhou.min")["access_token"]
    assert me(client, **bearer(second))["role"] == "grid_leader"
    assert cli(url, "user", "set-scope", "zhou.min", "--scope", "community:349902001001").returncode == 0
    third = sign_in(client, "zhou.min")["access_token"]
    assert me(client, **bearer(third))["scopes"] == [{"level": "community", "code": "349902001001"}]
    assert client.get("/v1/auth/me", headers=bearer(second)).status_code == 401
    assert cli(url, "user", "disable", "zhou.min").returncode == 0
    assert client.get("/v1/auth/me", headers=bearer(third)).status_code == 401
    assert client.post("/v1/auth/token", data={"username": "zhou.min", "password": PASSWORD}).status_code == 401
    assert one_clear_line(cli(url, "user", "disable", "no.such")) == "error: No staff member with username 'no.such'"


def test_api_keys_for_machines(env: tuple[Engine, TestClient, str]) -> None:
    _, client, url = env
    res = cli(url, "key", "add", "hotline-12345", "--role", "dispatcher")
    assert res.returncode == 0, res.stderr
    key = res.stdout.strip().splitlines()[-1]
    assert key.startswith("gmk_") and len(key) > 40
    who = me(client, **{"X-API-Key": key})
    assert (who["kind"], who["name"], who["role"], who["scopes"]) == ("key", "hotline-12345", "dispatcher",
                                                                      [{"level": "city", "code": ""}])  # fmt: skip
    prefix = key.split("_")[1]
    wrong = f"gmk_{prefix}_{'x' * 43}"
    for bad in (wrong, "gmk_nothing", "not-a-key"):
        r = client.get("/v1/auth/me", headers={"X-API-Key": bad})
        assert r.status_code == 401 and r.json()["detail"] == "The API key is not valid"
    assert cli(url, "key", "revoke", prefix).returncode == 0
    assert client.get("/v1/auth/me", headers={"X-API-Key": key}).status_code == 401
    assert one_clear_line(cli(url, "key", "revoke", prefix)) == f"error: No active API key with prefix '{prefix}'"


def test_passwords_are_hashed_with_argon2id(env: tuple[Engine, TestClient, str]) -> None:
    engine, _, _ = env
    with Session(engine) as s, s.begin():
        auth.add_user(s, username="qian.yu", name="钱宇", role="auditor", password=PASSWORD)
        stored = s.execute(auth.text("SELECT password_hash FROM staff WHERE username = 'qian.yu'")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with pytest.raises(InvalidInput):
        auth.hash_password("x" * 9)


def test_guessing_locks_the_account_for_a_while(env: tuple[Engine, TestClient, str]) -> None:
    engine, client, url = env
    with Session(engine) as s, s.begin():
        auth.add_user(s, username="wu.lei", name="吴磊", role="grid_worker", password=PASSWORD)
    for _ in range(auth.LOCKOUT_AFTER):
        assert client.post("/v1/auth/token", data={"username": "wu.lei", "password": "wrong guess!"}).status_code == 401
    locked = client.post("/v1/auth/token", data={"username": "wu.lei", "password": PASSWORD})
    assert locked.status_code == 401 and locked.json()["detail"] == "Wrong username or password"  # the same answer
    with engine.begin() as c:  # the lock runs out
        c.execute(auth.text("UPDATE staff SET locked_until = now() - interval '1 second' WHERE username = 'wu.lei'"))
    assert client.post("/v1/auth/token", data={"username": "wu.lei", "password": PASSWORD}).status_code == 200
    with engine.connect() as c:
        assert c.execute(auth.text("SELECT failed_sign_ins FROM staff WHERE username = 'wu.lei'")).scalar_one() == 0
    for _ in range(auth.LOCKOUT_AFTER):
        client.post("/v1/auth/token", data={"username": "wu.lei", "password": "wrong guess!"})
    assert cli(url, "user", "set-password", "wu.lei", "--password-stdin", stdin="a brand new password\n").returncode == 0
    assert client.post("/v1/auth/token", data={"username": "wu.lei", "password": "a brand new password"}).status_code == 200


def test_scopes_must_fit_the_role(env: tuple[Engine, TestClient, str]) -> None:
    engine, client, url = env
    city = cli(url, "user", "add", "zheng.hao", "--role", "grid_worker", "--scope", "city", "--password-stdin",
               stdin=PASSWORD + "\n")  # fmt: skip
    assert one_clear_line(city) == "error: A grid_worker cannot have the scope city: use grid scopes"
    assert cli(url, "user", "add", "zheng.hao", "--role", "grid_worker", "--scope", f"grid:{GRID}", "--password-stdin",
               stdin=PASSWORD + "\n").returncode == 0  # fmt: skip
    promote = cli(url, "user", "set-role", "zheng.hao", "community_admin")
    assert one_clear_line(promote) == f"error: A community_admin cannot have the scope grid:{GRID}: use community scopes"
    assert cli(url, "user", "set-role", "zheng.hao", "community_admin", "--scope", f"community:{GRID[:12]}").returncode == 0
    assert me(client, **bearer(sign_in(client, "zheng.hao")["access_token"]))["scopes"] == [
        {"level": "community", "code": GRID[:12]}]


def test_many_failed_sign_ins_from_one_address_are_slowed(env: tuple[Engine, TestClient, str], monkeypatch: pytest.MonkeyPatch) -> None:
    engine, client, _ = env
    with Session(engine) as s, s.begin():
        auth.add_user(s, username="throttled", name="限流", role="dispatcher", password=PASSWORD, scopes=[("city", "")])
    monkeypatch.setattr(auth_router, "THROTTLE", auth.SignInThrottle(limit=3, window=60))
    for guess in ("a" * 10, "b" * 10, "c" * 10):  # three accounts' worth of guesses, any usernames
        assert sign_in(client, f"nobody-{guess[0]}", guess).get("status") == 401
    r = client.post("/v1/auth/token", data={"username": "throttled", "password": PASSWORD})
    assert r.status_code == 429 and r.headers["content-type"] == "application/problem+json"
    assert 1 <= int(r.headers["retry-after"]) <= 61 and r.json()["detail"].startswith("Too many failed sign-ins from this address")


def test_the_throttle_forgets_after_its_window() -> None:
    import time

    throttle = auth.SignInThrottle(limit=2, window=0.2)
    throttle.failed("10.0.0.1")
    throttle.failed("10.0.0.1")
    with pytest.raises(Exception, match="Too many failed sign-ins"):
        throttle.check("10.0.0.1")
    throttle.check("10.0.0.2")  # another address is not affected
    time.sleep(0.25)
    throttle.check("10.0.0.1")
