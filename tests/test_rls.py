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
    from gridmap.access import Scope, open_scope

    open_scope(session, Scope(clear=True, all_grids=all_grids, grids=grids))


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


def test_an_area_is_one_code_range(db: Session, people: dict[str, list[int]]) -> None:
    """What the API states for one area (gridmap.access.open_scope): its code range, no list."""
    from gridmap.access import Scope, open_scope

    for area, seen in ((GRID_A[:12], 5), (GRID_A, 3), (GRID_B, 2), ("349904", 0), (GRID_A[:9], 5)):
        open_scope(db, Scope(clear=True, all_grids=False, grids=(), area=area))
        assert count(db) == seen, area
        assert db.execute(text("SELECT current_setting('gridmap.grids')")).scalar_one() == ""  # the range alone
    open_scope(db, Scope(clear=True, all_grids=False, grids=(GRID_B,)))  # scattered grids: the list
    assert count(db) == 2


def test_city_wide_roles_see_every_grid(db: Session, people: dict[str, list[int]]) -> None:
    as_api(db, all_grids=True)
    assert count(db) == 5


def test_the_policy_uses_the_grid_index(db: Session, people: dict[str, list[int]]) -> None:
    as_api(db, grids=(GRID_A,))
    db.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(db.execute(text("EXPLAIN SELECT * FROM resident")).scalars())
    index_cond = next(line for line in plan.splitlines() if "Index Cond" in line)
    assert "Index Scan using ix_resident_grid_code_id" in plan and "gridmap.lo" in index_cond and "gridmap.hi" in index_cond, plan
    assert plan.count("InitPlan") == 2, plan  # the flag and the list: evaluated once per statement, not per row


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


# ---------------------------------------------------------------------------------------------
# the catalog: the API's role and the tables it reaches
# ---------------------------------------------------------------------------------------------

PERSONAL_TABLES = ("resident", "household")


def test_the_api_role_owns_nothing_and_bypasses_nothing(db: Session) -> None:
    role = db.execute(text("SELECT rolsuper, rolbypassrls, rolcanlogin, rolcreaterole, rolcreatedb FROM pg_roles "
                           "WHERE rolname = 'gridmap_api'")).one()  # fmt: skip
    assert tuple(role) == (False, False, False, False, False)
    owned = db.execute(text("SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
                            "WHERE r.rolname = 'gridmap_api'")).scalar_one()  # fmt: skip
    assert owned == 0
    # and it is a member of no other role, so SET ROLE cannot climb from it
    assert db.execute(text("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
                           "WHERE r.rolname = 'gridmap_api'")).scalar_one() == 0  # fmt: skip


def test_every_personal_data_table_forces_a_restrictive_grid_policy(db: Session) -> None:
    # a table with people's identifiers is personal data; it must be in the list below
    with_identifiers = set(db.execute(text(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND column_name IN ('id_number', 'household_id') AND table_name NOT LIKE 'pg_%'")).scalars())  # fmt: skip
    assert with_identifiers <= set(PERSONAL_TABLES) | {"resident"}, with_identifiers
    for table in PERSONAL_TABLES:
        enabled, forced = db.execute(text("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                                     {"t": table}).one()  # fmt: skip
        assert enabled and forced, table
        restrictive = db.execute(text(
            "SELECT pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_policy p "
            "JOIN pg_roles r ON r.oid = ANY(p.polroles) WHERE p.polrelid = CAST(:t AS regclass) AND NOT p.polpermissive "
            "AND r.rolname = 'gridmap_api'"), {"t": table}).all()  # fmt: skip
        assert len(restrictive) == 1 and all("grid_code" in expr for expr in restrictive[0]), (table, restrictive)
        indexed = db.execute(text("SELECT count(*) FROM pg_indexes WHERE tablename = :t AND indexdef LIKE '%(grid_code%'"),
                             {"t": table}).scalar_one()  # fmt: skip
        assert indexed >= 1, f"{table}.grid_code has no index"


def test_every_view_runs_as_its_caller(db: Session) -> None:
    views = db.execute(text("SELECT c.relname, coalesce(c.reloptions, '{}') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE c.relkind IN ('v', 'm') AND n.nspname = 'public' AND NOT EXISTS "
                            "(SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')")).all()  # PostGIS's own views  # fmt: skip
    assert all("security_invoker=true" in options or "security_invoker=on" in options for _, options in views), views


# ---------------------------------------------------------------------------------------------
# a pool of one connection, two users of different grids, thousands of turns
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def two_grids(engine: Engine) -> Iterator[None]:
    with engine.begin() as conn:
        for grid in (GRID_A, GRID_B):
            household = conn.execute(text("INSERT INTO household (grid_code) VALUES (:g) RETURNING id"), {"g": grid}).scalar_one()
            conn.execute(text("INSERT INTO resident (household_id, grid_code, name) SELECT :h, :g, 'pool' || i "
                              "FROM generate_series(1, 3) i"), {"h": household, "g": grid})  # fmt: skip
    yield
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM resident WHERE name LIKE 'pool%'"))
        conn.execute(text("DELETE FROM household WHERE grid_code IN (:a, :b) AND NOT EXISTS "
                          "(SELECT 1 FROM resident r WHERE r.household_id = household.id)"), {"a": GRID_A, "b": GRID_B})  # fmt: skip


def test_a_pool_of_one_never_carries_a_grid_to_the_next_user(engine: Engine, two_grids: None) -> None:
    """Two users of different grids take turns 2,000 times over a single pooled connection, the
    way the API opens every request (gridmap.access.open_scope); some turns fail half-way and
    roll back. Not one row of the other grid is ever seen."""
    from sqlalchemy import create_engine

    from gridmap.access import Scope, open_scope

    pool = create_engine(engine.url, pool_size=1, max_overflow=0)
    users = {GRID_A: Scope(clear=True, all_grids=False, grids=(GRID_A,)),
             GRID_B: Scope(clear=True, all_grids=False, grids=(GRID_B,))}  # fmt: skip
    seen: dict[str, set[str]] = {GRID_A: set(), GRID_B: set()}
    backends = set()
    try:
        for turn in range(2000):
            grid = (GRID_A, GRID_B)[turn % 2]
            try:
                with Session(pool) as s, s.begin():
                    open_scope(s, users[grid])
                    rows = s.execute(text("SELECT grid_code, pg_backend_pid() FROM resident WHERE name LIKE 'pool%'")).all()
                    seen[grid].update(r[0] for r in rows)
                    backends.update(r[1] for r in rows)
                    if turn % 97 == 0:
                        raise RuntimeError("the request fails after reading")
            except RuntimeError:
                pass
            if turn % 250 == 0:  # between requests, with no context at all: nothing
                with Session(pool) as s, s.begin():
                    s.execute(text("SET LOCAL ROLE gridmap_api"))
                    assert s.execute(text("SELECT count(*) FROM resident WHERE name LIKE 'pool%'")).scalar_one() == 0
    finally:
        pool.dispose()
    assert seen == {GRID_A: {GRID_A}, GRID_B: {GRID_B}}
    assert len(backends) == 1  # it really was one connection throughout
