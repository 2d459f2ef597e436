"""The database itself refuses bad geometry and broken history."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

SQUARE = "MULTIPOLYGON(((117.2 31.8,117.21 31.8,117.21 31.81,117.2 31.81,117.2 31.8)))"


@pytest.fixture
def community(db: Session) -> int:
    ids = []
    for code, level, parent in [("349999", "district", None), ("349999001", "street", 0), ("349999001001", "community", 1)]:
        ids.append(
            db.execute(
                text("INSERT INTO admin_area (code, level, name, parent_id, geom) VALUES (:c, :l, :n, :p, ST_GeomFromText(:g, 4326)) RETURNING id"),
                {"c": code, "l": level, "n": code, "p": ids[parent] if parent is not None else None, "g": SQUARE},
            ).scalar_one()
        )
    return ids[-1]


def insert_grid(db: Session, community: int, geom_sql: str, code: str = "349999001001001",
                valid_from: str = "2026-01-01", valid_to: str | None = None) -> None:  # fmt: skip
    with db.begin_nested():
        db.execute(
            text(f"INSERT INTO grid (code, name, community_id, geom, valid_from, valid_to) VALUES (:code, 'g', :c, {geom_sql}, :vf, :vt)"),
            {"code": code, "c": community, "vf": valid_from, "vt": valid_to},
        )


@pytest.mark.parametrize(
    ("geom_sql", "message"),
    [
        ("ST_GeomFromText('MULTIPOLYGON(((117.2 31.8,117.21 31.81,117.21 31.8,117.2 31.81,117.2 31.8)))', 4326)", "grid_geom_valid"),
        ("ST_GeomFromText('MULTIPOLYGON EMPTY', 4326)", "grid_geom_not_empty"),
        (f"ST_GeomFromText('{SQUARE}', 3857)", "SRID (3857) does not match column SRID (4326)"),
        ("ST_GeomFromText('POINT(117.2 31.8)', 4326)", "Geometry type (Point) does not match column type (MultiPolygon)"),
        ("ST_GeomFromText('MULTIPOLYGON(((500000 3500000,500100 3500000,500100 3500100,500000 3500000)))', 4326)", "grid_geom_lonlat"),
    ],
    ids=["self-intersecting", "empty", "wrong-srid", "wrong-type", "projected-coordinates"],
)
def test_bad_geometry_is_refused(db: Session, community: int, geom_sql: str, message: str) -> None:
    with pytest.raises(DBAPIError) as exc:
        insert_grid(db, community, geom_sql)
    assert message in str(exc.value)


def test_grid_versions_cannot_overlap_in_time(db: Session, community: int) -> None:
    geom = f"ST_GeomFromText('{SQUARE}', 4326)"
    insert_grid(db, community, geom, valid_from="2026-01-01", valid_to="2026-06-01")
    insert_grid(db, community, geom, valid_from="2026-06-01")  # back to back is fine
    with pytest.raises(IntegrityError, match="grid_versions_no_overlap"):
        insert_grid(db, community, geom, valid_from="2026-03-01", valid_to="2026-04-01")


@pytest.mark.parametrize("code", ["34999900100100", "3499990010010011", "34999900100100A"])
def test_grid_code_must_have_15_digits(db: Session, community: int, code: str) -> None:
    with pytest.raises(DBAPIError, match="grid_code_form|value too long"):
        insert_grid(db, community, f"ST_GeomFromText('{SQUARE}', 4326)", code=code)


def test_admin_code_length_follows_level(db: Session) -> None:
    with pytest.raises(IntegrityError, match="admin_area_code_form"), db.begin_nested():
        db.execute(text(f"INSERT INTO admin_area (code, level, name, geom) VALUES ('3499', 'district', 'x', ST_GeomFromText('{SQUARE}', 4326))"))


def test_incident_event_log_is_append_only(demo_engine) -> None:  # type: ignore[no-untyped-def]
    with demo_engine.connect() as conn:
        for sql in ("UPDATE incident_event SET note = 'x' WHERE id = 1", "DELETE FROM incident_event WHERE id = 1",
                    "UPDATE audit_log SET action = 'x'"):  # fmt: skip
            trans = conn.begin()
            try:
                if "audit_log" in sql:
                    conn.execute(text("INSERT INTO audit_log (action) VALUES ('test')"))
                with pytest.raises(DBAPIError, match="append-only"):
                    conn.execute(text(sql))
            finally:
                trans.rollback()
