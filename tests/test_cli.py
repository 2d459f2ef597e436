"""Commands that cannot do their job say so in one line and exit non-zero."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from gridmap import migrate
from gridmap.errors import SetupError
from gridmap.pgcluster import Cluster, port_is_free
from gridmap.settings import DatabaseSettings
from tests.conftest import drop_database, make_database

GRIDMAP = [sys.executable, "-m", "gridmap.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GRIDMAP, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=120)


def one_clear_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode != 0
    assert "Traceback" not in res.stderr + res.stdout
    lines = [x for x in res.stderr.strip().splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_unreachable_database() -> None:
    res = run("demo", env={"GRIDMAP_DATABASE_URL": "postgres://x:y@127.0.0.1:9/nowhere"})  # a libpq URL is accepted
    assert one_clear_line(res).startswith("error: database unreachable at postgresql+psycopg://x:***@127.0.0.1:9/nowhere")


def test_schema_behind(database_url_for_tests: str) -> None:
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_empty")
    try:
        eng = create_engine(url)
        migrate.upgrade(eng, "0001")
        eng.dispose()
        line = one_clear_line(run("demo", env={"GRIDMAP_DATABASE_URL": url}))
        head = migrate.head_revision()
        assert line == f"error: database schema is at 0001, this code expects {head} — run `gridmap migrate`"
        res = run("migrate", env={"GRIDMAP_DATABASE_URL": url})
        assert res.returncode == 0 and f"schema at {head}" in res.stdout
    finally:
        drop_database(url)


def test_unknown_scale() -> None:
    res = run("demo", "--scale", "huge")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    text = " ".join(res.stderr.replace("│", " ").split())
    assert "Invalid value for '--scale': Value error, 'huge' is not one of 'small', 'medium', 'city'" in text


def test_bad_until_date(database_url_for_tests: str) -> None:
    line = one_clear_line(run("demo", "--until", "yesterday", env={"GRIDMAP_DATABASE_URL": database_url_for_tests}))
    assert line == "error: invalid --until 'yesterday': expected a date like 2026-11-23"


@pytest.mark.skipif(
    not any(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
    reason="the PostgreSQL server packages are not installed here (an external database is used)",
)
def test_own_cluster_lifecycle_and_busy_port(tmp_path: Path) -> None:
    """A second cluster in a temp folder: up, status, a busy fixed port refused, down."""
    cluster = Cluster(DatabaseSettings(home=tmp_path / "gm", database_url=None, pg_port=None))
    try:
        state = cluster.up()
        assert cluster.is_running(state) and not port_is_free(state.port)
        env = {"GRIDMAP_HOME": str(tmp_path / "gm"), "GRIDMAP_DATABASE_URL": ""}
        res = run("db", "status", env=env)
        assert res.returncode == 0 and "PostGIS" in res.stdout
        busy = Cluster(DatabaseSettings(home=tmp_path / "gm2", database_url=None, pg_port=state.port))
        with pytest.raises(SetupError, match=f"port {state.port} on 127.0.0.1 is busy"):
            busy.up()
        busy.destroy()
    finally:
        cluster.destroy()
    assert not cluster.is_running()
