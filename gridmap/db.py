"""Engine and sessions: one engine per process, a session per unit of work."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from gridmap.errors import DatabaseUnavailable, SetupError
from gridmap.pgcluster import database_url
from gridmap.settings import db_settings


def make_engine(url: str | None = None, **kwargs: object) -> Engine:
    """Create an engine with a statement timeout so a runaway query cannot hold a worker."""
    settings = db_settings()
    opts = f"-c statement_timeout={settings.statement_timeout_ms} -c timezone=UTC"
    return create_engine(
        url or database_url(),
        pool_pre_ping=True,
        pool_size=settings.pool_size,
        connect_args={"options": opts, "connect_timeout": 10, "application_name": "gridmap"},
        **kwargs,  # type: ignore[arg-type]
    )


@lru_cache
def get_engine() -> Engine:
    return make_engine()


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False)
    with factory() as session, session.begin():
        yield session


def check_connection(engine: Engine, *, require_postgis: bool = True) -> dict[str, str]:
    """Return server versions, or raise one clear error when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            pg = conn.execute(text("SHOW server_version")).scalar_one()
            postgis = conn.execute(
                text("SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
            ).scalar()
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        raise DatabaseUnavailable(
            f"database unreachable at {engine.url.render_as_string(hide_password=True)}: {reason}",
            hint="run `gridmap db up` or check GRIDMAP_DATABASE_URL",
        ) from None
    if postgis is None and require_postgis:
        raise SetupError("the PostGIS extension is not installed in this database", hint="run `gridmap migrate`")
    return {"postgresql": str(pg), "postgis": str(postgis)}


def copy_in(dbapi_connection: Any, sql: str, buffer: io.StringIO) -> None:
    """COPY … FROM STDIN from a text buffer through a psycopg 3 connection, 1 MiB at a time."""
    with dbapi_connection.cursor() as cursor, cursor.copy(sql) as copy:
        while data := buffer.read(1 << 20):
            copy.write(data)
