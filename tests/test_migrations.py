"""Migrations go up, down and up again, and the models match them."""

from __future__ import annotations

import os

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from geoalchemy2 import alembic_helpers
from sqlalchemy import create_engine, inspect, text

from gridmap import migrate
from gridmap.models import Base
from tests.conftest import drop_database, make_database


def test_upgrade_downgrade_upgrade(database_url_for_tests: str) -> None:
    url = make_database(database_url_for_tests, f"gridmap_test_{os.getpid()}_mig")
    eng = create_engine(url)
    try:
        migrate.upgrade(eng)
        assert migrate.current_revision(eng) == migrate.head_revision()
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM category")).scalar_one() > 50
        migrate.downgrade(eng, "base")
        assert migrate.current_revision(eng) is None
        with eng.connect() as conn:
            tables = set(inspect(conn).get_table_names()) - {"alembic_version", "spatial_ref_sys"}
            assert tables == set()
            assert conn.execute(text("SELECT count(*) FROM pg_extension WHERE extname='postgis'")).scalar_one() == 0
        migrate.upgrade(eng)
        assert set(Base.metadata.tables) <= set(inspect(eng).get_table_names())
    finally:
        eng.dispose()
        drop_database(url)


def test_models_match_migrations(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": alembic_helpers.include_object, "compare_type": True}
        )
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_every_geometry_has_a_gist_index(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        missing = conn.execute(
            text(
                """
                SELECT f_table_name || '.' || f_geometry_column FROM geometry_columns gc
                WHERE f_table_schema = 'public' AND NOT EXISTS (
                  SELECT 1 FROM pg_indexes i WHERE i.tablename = gc.f_table_name
                    AND i.indexdef ILIKE '%USING gist%' AND i.indexdef LIKE '%(' || gc.f_geometry_column || ')%')
                """
            )
        ).scalars().all()
    assert missing == []
