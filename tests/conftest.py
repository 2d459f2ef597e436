"""Fixtures: a real PostGIS (gridmap's own cluster unless GRIDMAP_DATABASE_URL is set), a fresh
database migrated once per session, and a transaction per test rolled back at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from gridmap import migrate
from gridmap.pgcluster import Cluster, database_url


def _admin_conninfo(url: str) -> dict:
    u = make_url(url)
    return dict(host=u.host, port=u.port, user=u.username, password=u.password, dbname="postgres")


@pytest.fixture(scope="session")
def database_url_for_tests() -> Iterator[str]:
    if not os.environ.get("GRIDMAP_DATABASE_URL"):
        Cluster().up()
    name = f"gridmap_test_{os.getpid()}"
    url = database_url(name)
    with psycopg.connect(**_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield url
    with psycopg.connect(**_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def engine(database_url_for_tests: str) -> Iterator[Engine]:
    eng = create_engine(database_url_for_tests, pool_pre_ping=True)
    migrate.upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test."""
    with engine.connect() as conn:
        trans = conn.begin()
        session = Session(bind=conn, join_transaction_mode="create_savepoint")
        try:
            yield session
        finally:
            session.close()
            trans.rollback()


def make_database(base_url: str, name: str) -> str:
    """Create (or recreate) an empty database beside the test one and return its URL."""
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return url


def drop_database(url: str) -> None:
    name = make_url(url).database
    with psycopg.connect(**_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def own_database(base_url: str, name: str) -> Iterator[Engine]:
    """A migrated database of the test module's own (its requests commit), dropped afterwards."""
    url = make_database(base_url, f"gridmap_test_{os.getpid()}_{name}")
    engine = create_engine(url, pool_pre_ping=True)  # as gridmap.db.make_engine
    try:
        migrate.upgrade(engine)
        yield engine
    finally:
        engine.dispose()
        drop_database(url)


DEMO_UNTIL = "2026-11-01"


@pytest.fixture(scope="session")
def demo_engine(database_url_for_tests: str) -> Iterator[Engine]:
    """A separate database holding the `small` demo city (seed 7), loaded once per session."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    from gridmap.demo.load import load_demo

    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_demo")
    eng = create_engine(url)
    migrate.upgrade(eng)
    until = dt.datetime.fromisoformat(DEMO_UNTIL).replace(tzinfo=ZoneInfo("Asia/Shanghai"))
    load_demo(eng, seed=7, scale="small", until=until, progress=False)
    yield eng
    eng.dispose()
    drop_database(url)
