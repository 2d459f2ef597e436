"""The `gridmap` command: database, migrations, demo city, import/export, API server."""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import DBAPIError

from gridmap.errors import GridmapError

app = typer.Typer(help="gridmap: city grid management on PostGIS (网格化管理平台)", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)  # fmt: skip
db_app = typer.Typer(help="The project's own PostGIS cluster (数据库)", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console()
err = Console(stderr=True, soft_wrap=True)


class ScaleName(StrEnum):
    small = "small"
    medium = "medium"
    city = "city"


def _engine():  # type: ignore[no-untyped-def]
    from gridmap.db import check_connection, get_engine

    engine = get_engine()
    check_connection(engine)
    return engine


def _ready_engine():  # type: ignore[no-untyped-def]
    from gridmap.migrate import require_current

    engine = _engine()
    require_current(engine)
    return engine


@db_app.command("up")
def db_up() -> None:
    """Create (first time) and start the local PostGIS cluster."""
    from gridmap.pgcluster import Cluster
    from gridmap.settings import db_settings

    if db_settings().database_url:
        _engine()
        console.print("GRIDMAP_DATABASE_URL is set: using that server; nothing to start.")
        return
    state = Cluster().up()
    console.print(f"[green]PostGIS is running[/] on 127.0.0.1:{state.port} (data in {state.data_dir})")


@db_app.command("down")
def db_down() -> None:
    """Stop the local cluster."""
    from gridmap.pgcluster import Cluster

    console.print("stopped" if Cluster().down() else "not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database is reachable, and its versions."""
    from gridmap.db import check_connection, get_engine
    from gridmap.migrate import current_revision, head_revision
    from gridmap.pgcluster import Cluster
    from gridmap.settings import db_settings

    if not db_settings().database_url:
        cluster = Cluster()
        state = cluster.state()
        if state is None:
            console.print("no local cluster yet: run `gridmap db up`")
            raise typer.Exit(1)
        if not cluster.is_running(state):
            console.print(f"local cluster on port {state.port} is stopped: run `gridmap db up`")
            raise typer.Exit(1)
    engine = get_engine()
    versions = check_connection(engine, require_postgis=False)
    rev = current_revision(engine)
    postgis = versions["postgis"] if versions["postgis"] != "None" else "not installed yet"
    console.print(
        f"[green]up[/] {engine.url.render_as_string(hide_password=True)} · PostgreSQL {versions['postgresql']}"
        f" · PostGIS {postgis} · schema {rev or 'empty'} (code expects {head_revision()})"
    )


@db_app.command("url")
def db_url() -> None:
    """Print the database URL (with password) for other tools."""
    from gridmap.pgcluster import database_url

    print(database_url())


@db_app.command("destroy")
def db_destroy(yes: Annotated[bool, typer.Option("--yes", help="really delete all data")] = False) -> None:
    """Stop the local cluster and delete its data folder."""
    from gridmap.pgcluster import Cluster

    if not yes:
        raise GridmapError("this deletes every row in the local cluster", hint="pass --yes to confirm")
    Cluster().destroy()
    console.print("local cluster deleted")


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to the code's revision (Alembic)."""
    from gridmap import migrate as m
    from gridmap.db import check_connection, get_engine

    engine = get_engine()
    check_connection(engine, require_postgis=False)  # the first migration installs PostGIS
    if down:
        m.downgrade(engine, "base" if revision == "head" else revision)
    else:
        m.upgrade(engine, revision)
    console.print(f"schema at {m.current_revision(engine) or 'base'}")


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="random seed: the same seed builds the same city")] = 42,
    scale: Annotated[ScaleName, typer.Option(help="small: one street · medium: a district · city: a prefecture city")] = ScaleName.small,
    until: Annotated[str | None, typer.Option(help="last day of the simulated history, YYYY-MM-DD (default: today)")] = None,
    force: Annotated[bool, typer.Option(help="replace data that is not a demo")] = False,
    password: Annotated[str | None, typer.Option(envvar="GRIDMAP_DEMO_PASSWORD",
                                                 help="let one demo account of each role sign in with this password")] = None,
) -> None:
    """Generate a synthetic demo city and load it (replaces the current demo)."""
    from zoneinfo import ZoneInfo

    from gridmap.demo.load import load_demo

    end = None
    if until:
        try:
            end = dt.datetime.combine(dt.date.fromisoformat(until), dt.time(), ZoneInfo("Asia/Shanghai")) + dt.timedelta(days=1)
        except ValueError:
            raise GridmapError(f"invalid --until {until!r}: expected a date like 2026-11-23") from None
    result = load_demo(_ready_engine(), seed=seed, scale=scale.value, until=end, force=force)
    table = Table(title=f"demo city · scale {result.scale} · seed {result.seed} · {result.seconds:.1f} s")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in result.counts.items():
        table.add_row(name, f"{count:,}")
    console.print(table)
    if password:
        from gridmap.demo.load import open_demo_accounts

        accounts = Table(title="demo sign-ins · 演示账号 (POST /v1/auth/token, or Authorize at /docs)")
        for column in ("username", "role", "scope"):
            accounts.add_column(column)
        for row in open_demo_accounts(_ready_engine(), password):
            accounts.add_row(*row)
        console.print(accounts)


@app.command("map")
def map_(
    out: Annotated[Path, typer.Option("--out", help="the HTML file to write, e.g. city.html")],
    days: Annotated[int, typer.Option(min=1, max=365, help="the window of cases shown, in days")] = 30,
    area: Annotated[str | None, typer.Option(help="only this district, street, community or grid code")] = None,
    refresh: Annotated[int, typer.Option(min=0, max=3600, help="reload every this many seconds (0: never)")] = 0,
) -> None:
    """Write the command-center map as one self-contained HTML file (works offline: grids inlined)."""
    import time

    from sqlalchemy.orm import Session

    from gridmap import access, maps

    started = time.monotonic()
    everything = access.Scope(clear=False, all_grids=True, grids=())
    with Session(_ready_engine()) as session:
        page = maps.render(maps.build_map(session, access.narrow(everything, area), tiles=False, days=days, refresh_s=refresh))
    out.write_text(page, encoding="utf-8")
    console.print(f"wrote {out} ({len(page.encode()) / 1e6:.1f} MB) in {time.monotonic() - started:.1f} s")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (GRIDMAP_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (GRIDMAP_PORT)")] = None,
    workers: Annotated[int, typer.Option(help="worker processes")] = 1,
    reload: Annotated[bool, typer.Option(help="reload on code change (development)")] = False,
) -> None:
    """Serve the API (OpenAPI docs at /docs)."""
    import socket

    import uvicorn

    from gridmap.settings import api_settings

    settings = api_settings()
    host, port = host or settings.host, port or settings.port
    _ready_engine()
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise GridmapError(f"port {port} on {host} is busy", hint="stop what uses it or pass --port") from None
    console.print(f"gridmap API on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers, reload=reload,
                log_level="warning", access_log=False)  # fmt: skip


def _register_subcommands() -> None:
    from gridmap.cli_auth import key_app, user_app
    from gridmap.cli_io import export_command, import_app
    from gridmap.cli_plans import plan_app
    from gridmap.cli_sla import sla_app
    from gridmap.cli_stats import stats_app

    app.add_typer(import_app, name="import")
    app.command("export")(export_command)
    app.add_typer(sla_app, name="sla")
    app.add_typer(stats_app, name="stats")
    app.add_typer(plan_app, name="plan")
    app.add_typer(user_app, name="user")
    app.add_typer(key_app, name="key")


_register_subcommands()


def main() -> None:
    """Entry point: one clear line and a non-zero exit for anything that goes wrong.

    Usage errors are handled by typer itself (standalone mode: message and exit code 2).
    """
    try:
        app()
    except GridmapError as exc:
        err.print(f"[red]error:[/] {exc.detail}" + (f" — {exc.hint}" if exc.hint else ""), highlight=False)
        sys.exit(1)
    except DBAPIError as exc:
        _database_error(exc)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a library that wraps a database error (pandas.read_sql): say the database's reason
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, DBAPIError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        _database_error(cause)


def _database_error(exc: DBAPIError) -> None:
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
    hint = " — a long computation: raise GRIDMAP_STATEMENT_TIMEOUT_MS for this command" if "statement timeout" in reason else ""
    err.print(f"[red]error:[/] database: {reason}{hint}", highlight=False)
    sys.exit(1)


if __name__ == "__main__":
    main()
