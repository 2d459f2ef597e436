"""Row-level security as the second wall: with the API's own checks out of the way, the
database alone keeps a grid's residents and households from everyone outside that grid."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

GRID_A, GRID_B = "349903001001001", "349903001001002"


def as_api(session: Session, *, grids: tuple[str, ...] = (), all_grids: bool = False) -> None:
    """What every API transaction does first: become gridmap_api and state whom it serves."""
    session.execute(text("SET LOCAL ROLE gridmap_api"))
    session.execute(text("SELECT set_config('gridmap.grids', :g, true), set_config('gridmap.all', :a, true)"),
                    {"g": ",".join(grids), "a": "on" if all_grids else ""})  # fmt: skip


@pytest.fixture
def people(db: Session) -> dict[str, list[int]]:
    """Three residents in grid A, two in grid B (as the owner, in the test's transaction)."""
    ids: dict[str, list[int]] = {GRID_A: [], GRID_B: []}
    for grid, n in ((GRID_A, 3), (GRID_B, 2)):
        household = db.execute(text("INSERT INTO household (grid_code) VALUES (:g) RETURNING id"), {"g": grid}).scalar_one()
        for i in range(n):
            ids[grid].append(db.execute(
                text("INSERT INTO resident (household_id, grid_code, name) VALUES (:h, :g, :n) RETURNING id"),
                {"h": household, "g": grid, "n": f"居民{grid[-1]}{i}"}).scalar_one())  # fmt: skip
    return ids


def count(session: Session, table: str = "resident") -> int:
    return int(session.execute(text(f"SELECT count(*) FROM {table} WHERE grid_code IN (:a, :b)"),
                               {"a": GRID_A, "b": GRID_B}).scalar_one())  # fmt: skip


def refused(session: Session, sql: str, params: dict) -> str:
    with pytest.raises(DBAPIError) as info, session.begin_nested():
        session.execute(text(sql), params)
    return str(info.value.orig)


def test_without_context_there_is_nothing(db: Session, people: dict[str, list[int]]) -> None:
    assert count(db) == 5  # the owner (migrations, imports) sees everything
    as_api(db)
    assert count(db) == 0 and count(db, "household") == 0


def test_a_grid_sees_and_changes_only_its_own(db: Session, people: dict[str, list[int]]) -> None:
    as_api(db, grids=(GRID_A,))
    assert count(db) == 3 and count(db, "household") == 1
    other = people[GRID_B][0]
    assert db.execute(text("SELECT name FROM resident WHERE id = :id"), {"id": other}).first() is None
    assert db.execute(text("UPDATE resident SET phone = '13800000000' WHERE id = :id"), {"id": other}).rowcount == 0
    assert db.execute(text("DELETE FROM resident WHERE id = :id"), {"id": other}).rowcount == 0
    assert "row-level security" in refused(db, "INSERT INTO resident (grid_code, name) VALUES (:g, 'x')", {"g": GRID_B})
    assert "row-level security" in refused(db, "UPDATE resident SET grid_code = :g WHERE id = :id",
                                           {"g": GRID_B, "id": people[GRID_A][0]})  # fmt: skip
    assert db.execute(text("UPDATE resident SET phone = '13800000000' WHERE id = :id"),
                      {"id": people[GRID_A][0]}).rowcount == 1  # fmt: skip


def test_city_wide_roles_see_every_grid(db: Session, people: dict[str, list[int]]) -> None:
    as_api(db, all_grids=True)
    assert count(db) == 5


def test_the_policy_uses_the_grid_index(db: Session, people: dict[str, list[int]]) -> None:
    as_api(db, grids=(GRID_A,))
    db.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.execute(text("EXPLAIN SELECT * FROM resident")).scalars())
    assert "Index Scan using ix_resident_grid_code" in plan and "gridmap_context_lo()" in plan, plan


def test_the_api_role_cannot_rewrite_history(db: Session) -> None:
    as_api(db, all_grids=True)
    for table in ("audit_log", "incident_event"):
        assert "permission denied" in refused(db, f"UPDATE {table} SET id = id WHERE false", {})
        assert "permission denied" in refused(db, f"DELETE FROM {table} WHERE false", {})
    assert "permission denied" in refused(db, "SELECT * FROM alembic_version", {})


@pytest.fixture
def committed(engine: Engine) -> Iterator[None]:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO resident (grid_code, name) VALUES (:g, 'committed')"), {"g": GRID_A})
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM resident WHERE name = 'committed'"))


def test_context_ends_with_the_transaction(engine: Engine, committed: None) -> None:
    """Pooled connections carry nothing from one request to the next."""
    with engine.connect() as conn:
        with Session(bind=conn) as s, s.begin():
            as_api(s, grids=(GRID_A,))
            assert s.execute(text("SELECT count(*) FROM resident WHERE name = 'committed'")).scalar_one() == 1
        with Session(bind=conn) as s, s.begin():
            s.execute(text("SET LOCAL ROLE gridmap_api"))  # the role, but no context: nothing
            assert s.execute(text("SELECT count(*) FROM resident WHERE name = 'committed'")).scalar_one() == 0
        assert conn.execute(text("SELECT current_user")).scalar_one() != "gridmap_api"
