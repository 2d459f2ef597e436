"""`gridmap user …` and `gridmap key …`: accounts of staff (用户) and API keys of machines (接口密钥)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from gridmap.errors import InvalidInput

console = Console(soft_wrap=True)

user_app = typer.Typer(help="Staff accounts: add, role, scope, password, disable. 用户管理。", no_args_is_help=True)
key_app = typer.Typer(help="API keys for machines (hotline, cameras): add, revoke. 接口密钥。", no_args_is_help=True)

ScopeOption = Annotated[
    list[str] | None,
    typer.Option("--scope", help="level:code, repeatable: grid:349902001001001, community:…, street:…, district:…, or city"),
]


def _password(from_stdin: bool) -> str:
    """The password from GRIDMAP_PASSWORD, stdin (--password-stdin) or a hidden prompt; never an argument."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif os.environ.get("GRIDMAP_PASSWORD"):
        password = os.environ["GRIDMAP_PASSWORD"]
    elif sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        raise InvalidInput("no password given: use --password-stdin, GRIDMAP_PASSWORD or a terminal prompt")
    return password


def _scopes(values: list[str] | None) -> list[tuple[str, str]]:
    from gridmap.auth import parse_scope

    return [parse_scope(v) for v in values or []]


@user_app.command("add")
def user_add(
    username: str,
    role: Annotated[str, typer.Option(help="grid_worker, grid_leader, community_admin, street_admin, district_admin, "
                                           "dispatcher, command_center, planner, analyst, auditor or admin")],  # fmt: skip
    name: Annotated[str | None, typer.Option(help="the person's name; default: the username")] = None,
    scope: ScopeOption = None,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Add a staff member who can sign in (POST /v1/auth/token)."""
    from gridmap import auth
    from gridmap.db import session_scope

    password = _password(password_stdin)
    with session_scope() as session:
        staff_id = auth.add_user(session, username=username, name=name or username, role=role, password=password,
                                 scopes=_scopes(scope))  # fmt: skip
    console.print(f"added {username} (staff id {staff_id}, role {role})")


@user_app.command("set-role")
def user_set_role(username: str, role: str, scope: ScopeOption = None) -> None:
    """Give a staff member another role (and, with --scope, new scopes that fit it); tokens issued before stop working."""
    from gridmap import auth
    from gridmap.db import session_scope

    with session_scope() as session:
        auth.set_role(session, username=username, role=role, scopes=_scopes(scope) if scope else None)
    console.print(f"{username} is now {role}; earlier tokens are revoked")


@user_app.command("set-scope")
def user_set_scope(username: str, scope: ScopeOption = None) -> None:
    """Replace a staff member's scopes (none given: no scope); tokens issued before stop working."""
    from gridmap import auth
    from gridmap.db import session_scope

    scopes = _scopes(scope)
    with session_scope() as session:
        auth.set_scopes(session, username=username, scopes=scopes)
    console.print(f"{username}: scopes {', '.join(f'{lv}:{c}' if c else lv for lv, c in scopes) or 'none'}")


@user_app.command("set-password")
def user_set_password(
    username: str,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")] = False,
) -> None:
    """Set a new password; tokens issued before stop working."""
    from gridmap import auth
    from gridmap.db import session_scope

    password = _password(password_stdin)
    with session_scope() as session:
        auth.set_password(session, username=username, password=password)
    console.print(f"new password set for {username}")


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Stop a staff member from signing in; their tokens stop working now."""
    from gridmap import auth
    from gridmap.db import session_scope

    with session_scope() as session:
        auth.disable(session, username=username)
    console.print(f"{username} is disabled")


@key_app.command("add")
def key_add(
    name: str,
    role: Annotated[str, typer.Option(help="the role the machine acts in, e.g. dispatcher for a hotline system")],
    scope: Annotated[str, typer.Option(help="level:code or city")] = "city",
) -> None:
    """Create an API key and print it once: store it like a password."""
    from gridmap import auth
    from gridmap.db import session_scope

    with session_scope() as session:
        key = auth.add_api_key(session, name=name, role=role, scope=auth.parse_scope(scope))
    console.print(f"API key for {name} (shown once):", highlight=False)
    print(key)


@key_app.command("revoke")
def key_revoke(prefix: Annotated[str, typer.Argument(help="the 8 characters after gmk_ in the key")]) -> None:
    """Revoke an API key at once."""
    from gridmap import auth
    from gridmap.db import session_scope

    with session_scope() as session:
        auth.revoke_api_key(session, prefix=prefix)
    console.print(f"API key {prefix} revoked")
