"""Import and export of admin areas, grids and buildings against a real PostGIS."""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import typer
from shapely.geometry import Point, Polygon, box
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from gridmap import crs as gridmap_crs
from gridmap import io
from gridmap.cli_io import export_command, import_app
from gridmap.errors import InvalidInput

# A district of Hefei (蜀山区, 340104) around lon 117.2, lat 31.8.
DISTRICT = "340104"
STREET = "340104001"
COMMUNITY_A = "340104001001"
COMMUNITY_B = "340104001002"
GRID_1 = "340104001001001"
GRID_2 = "340104001001002"


def admin_frame() -> gpd.GeoDataFrame:
    # Children first on purpose: the importer must load parents before children.
    return gpd.GeoDataFrame(
        {
            "code": [COMMUNITY_A, COMMUNITY_B, STREET, DISTRICT],
            "name": ["稻香村社区", "琥珀社区", "三里庵街道", "蜀山区"],
            "name_en": ["Daoxiangcun", "Hupo", "Sanli'an", "Shushan"],
        },
        geometry=[
            box(117.20, 31.80, 117.225, 31.825),
            box(117.225, 31.80, 117.25, 31.825),
            box(117.20, 31.80, 117.25, 31.85),
            box(117.20, 31.80, 117.30, 31.90),
        ],
        crs="EPSG:4326",
    )


def grid_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": [GRID_1, GRID_2],
            "name": ["第一网格", "第二网格"],
            "kind": ["general", "学校专属网格"],
        },
        geometry=[box(117.20, 31.80, 117.2125, 31.8125), box(117.2125, 31.80, 117.225, 31.8125)],
        crs="EPSG:4326",
    )


def building_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "code": ["B1", "B2", "B3"],
            "name": ["1号楼", "2号楼", "远处的楼"],
            "address": ["合肥市蜀山区一路1号", "合肥市蜀山区一路2号", None],
            "use": ["residential", "商业", None],
            "floors": [18, 3, None],
            "households": [120, 0, None],
        },
        geometry=[
            box(117.201, 31.801, 117.2015, 31.8015),  # in grid 1
            box(117.213, 31.801, 117.2135, 31.8015),  # in grid 2
            box(117.240, 31.820, 117.2405, 31.8205),  # in community B, outside every grid
        ],
        crs="EPSG:4326",
    )


def write(frame: gpd.GeoDataFrame, path: Path, crs: str | None = None) -> Path:
    """Write a fixture file; `.zip` becomes a zipped Shapefile."""
    if crs is not None:
        frame = frame.to_crs(crs)
    if path.suffix == ".zip":
        shp = path.with_suffix(".shp")
        frame.to_file(shp, engine="pyogrio")
        with zipfile.ZipFile(path, "w") as archive:
            for part in shp.parent.glob(f"{shp.stem}.*"):
                if part.suffix != ".zip":
                    archive.write(part, arcname=part.name)
    else:
        frame.to_file(path, engine="pyogrio")
    return path


def counts(db: Session) -> dict[str, int]:
    return {
        table: db.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
        for table in ("admin_area", "grid", "building")
    }


def load_base(db: Session, tmp_path: Path, *, grids: bool = True) -> None:
    report = io.import_layer(
        session=db, layer="admin-areas", path=write(admin_frame(), tmp_path / "admin.geojson")
    )
    assert report.loaded == 4, report.rejected
    if grids:
        report = io.import_layer(
            session=db, layer="grids", path=write(grid_frame(), tmp_path / "grids.geojson")
        )
        assert report.loaded == 2, report.rejected


def reasons(report: io.ImportReport) -> list[tuple[int, str]]:
    return [(r.row, r.reason) for r in report.rejected]


def same_shape(a: Any, b: Any, tolerance: float = 1e-7) -> bool:
    """Same vertices within `tolerance` degrees, whatever the ring start and orientation."""
    ca = shapely.get_coordinates(shapely.normalize(a))
    cb = shapely.get_coordinates(shapely.normalize(b))
    return ca.shape == cb.shape and bool(np.allclose(ca, cb, rtol=0, atol=tolerance))


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def test_admin_areas_load_parents_before_children_with_derived_level_and_parent(
    db: Session, tmp_path: Path
) -> None:
    report = io.import_layer(
        session=db, layer="admin-areas", path=write(admin_frame(), tmp_path / "a.geojson")
    )

    assert (report.read, report.valid, report.loaded, report.rejected) == (4, 4, 4, [])
    rows = db.execute(
        text(
            "SELECT a.code, a.level, a.name, a.name_en, p.code, GeometryType(a.geom) FROM admin_area a "
            "LEFT JOIN admin_area p ON p.id = a.parent_id ORDER BY a.code"
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        (DISTRICT, "district", "蜀山区", "Shushan", None, "MULTIPOLYGON"),
        (STREET, "street", "三里庵街道", "Sanli'an", DISTRICT, "MULTIPOLYGON"),
        (COMMUNITY_A, "community", "稻香村社区", "Daoxiangcun", STREET, "MULTIPOLYGON"),
        (COMMUNITY_B, "community", "琥珀社区", "Hupo", STREET, "MULTIPOLYGON"),
    ]


def test_admin_areas_from_geopackage_in_cgcs2000_gk_are_reprojected(
    db: Session, tmp_path: Path
) -> None:
    path = write(admin_frame(), tmp_path / "admin.gpkg", crs="EPSG:4548")

    report = io.import_layer(session=db, layer="admin-areas", path=path, crs="EPSG:4490")

    assert report.loaded == 4
    assert report.notes == [
        "the file declares EPSG:4548 (CGCS2000 / 3-degree Gauss-Kruger CM 117E); --crs EPSG:4490 "
        "was ignored (pass --force-crs to override the file's CRS)"
    ]
    stored = dict(db.execute(text("SELECT code, ST_AsBinary(geom) FROM admin_area")).all())
    for code, geom in zip(admin_frame()["code"], admin_frame().geometry, strict=True):
        assert same_shape(shapely.from_wkb(bytes(stored[code])), geom), code


def test_grids_from_zipped_shapefile_in_web_mercator_get_their_community(
    db: Session, tmp_path: Path
) -> None:
    load_base(db, tmp_path, grids=False)
    path = write(grid_frame(), tmp_path / "grids.zip", crs="EPSG:3857")

    report = io.import_layer(session=db, layer="grids", path=path)

    assert (report.loaded, report.rejected) == (2, [])
    rows = db.execute(
        text(
            "SELECT g.code, g.name, g.kind, c.code, g.valid_to, g.valid_from <= now(), ST_AsBinary(g.geom) "
            "FROM grid g JOIN admin_area c ON c.id = g.community_id ORDER BY g.code"
        )
    ).all()
    assert [tuple(r[:6]) for r in rows] == [
        (GRID_1, "第一网格", "general", COMMUNITY_A, None, True),
        (GRID_2, "第二网格", "school", COMMUNITY_A, None, True),
    ]
    for row, geom in zip(rows, grid_frame().geometry, strict=True):
        assert same_shape(shapely.from_wkb(bytes(row[6])), geom)


def test_grids_take_valid_from_and_an_explicit_community_column(
    db: Session, tmp_path: Path
) -> None:
    load_base(db, tmp_path, grids=False)
    frame = grid_frame().assign(
        since=["2024-07-01", "2024-07-01T08:00:00+08:00"], comm=[COMMUNITY_B, None]
    )

    report = io.import_layer(
        session=db,
        layer="grids",
        path=write(frame, tmp_path / "g.geojson"),
        mapping={"valid_from": "since", "community_code": "comm"},
    )

    assert report.loaded == 2
    rows = db.execute(
        text(
            "SELECT g.code, c.code, g.valid_from FROM grid g JOIN admin_area c ON c.id = g.community_id ORDER BY g.code"
        )
    ).all()
    midnight_beijing = dt.datetime(2024, 6, 30, 16, tzinfo=dt.UTC)  # naive = Asia/Shanghai
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (GRID_1, COMMUNITY_B, midnight_beijing),
        (GRID_2, COMMUNITY_A, dt.datetime(2024, 7, 1, 0, tzinfo=dt.UTC)),
    ]


def test_buildings_get_their_grid_by_location_and_one_outside_is_counted(
    db: Session, tmp_path: Path
) -> None:
    load_base(db, tmp_path)

    report = io.import_layer(
        session=db, layer="buildings", path=write(building_frame(), tmp_path / "b.geojson")
    )

    assert (report.loaded, report.outside_grid, report.rejected) == (3, 1, [])
    rows = db.execute(
        text(
            "SELECT code, name, address, use, floors, households, grid_code FROM building ORDER BY code"
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("B1", "1号楼", "合肥市蜀山区一路1号", "residential", 18, 120, GRID_1),
        ("B2", "2号楼", "合肥市蜀山区一路2号", "commercial", 3, 0, GRID_2),
        ("B3", "远处的楼", None, "residential", None, 0, None),
    ]


def test_column_mapping_reads_other_column_names(db: Session, tmp_path: Path) -> None:
    frame = admin_frame().rename(columns={"code": "ADCODE", "name": "MC"})
    frame["ADCODE"] = frame["ADCODE"].astype("int64")  # codes often arrive as numbers

    report = io.import_layer(
        session=db,
        layer="admin-areas",
        path=write(frame, tmp_path / "a.gpkg"),
        mapping={"code": "ADCODE", "name": "MC"},
    )

    assert report.loaded == 4
    assert (
        db.execute(text("SELECT name FROM admin_area WHERE code = :c"), {"c": STREET}).scalar_one()
        == "三里庵街道"
    )


def test_dry_run_validates_and_writes_nothing(db: Session, tmp_path: Path) -> None:
    report = io.import_layer(
        session=db,
        layer="admin-areas",
        path=write(admin_frame(), tmp_path / "a.geojson"),
        dry_run=True,
    )

    assert (report.valid, report.loaded, report.rejected) == (4, 0, [])
    assert counts(db) == {"admin_area": 0, "grid": 0, "building": 0}


# --------------------------------------------------------------------------------------------
# Rejected rows: every kind has its exact reason, and by default nothing is written
# --------------------------------------------------------------------------------------------

BOWTIE = Polygon(
    [(117.20, 31.80), (117.21, 31.81), (117.21, 31.80), (117.20, 31.81), (117.20, 31.80)]
)


def _admin_with(**row: Any) -> gpd.GeoDataFrame:
    """The good admin fixture plus one row (the 5th)."""
    good = admin_frame()
    extra = {
        "code": "340104001003",
        "name": "新社区",
        "name_en": None,
        "geometry": box(117.20, 31.825, 117.225, 31.85),
    }
    extra.update(row)
    return gpd.GeoDataFrame(
        {
            "code": [*good["code"], extra["code"]],
            "name": [*good["name"], extra["name"]],
            "name_en": [*good["name_en"], extra["name_en"]],
            **({"level": [None, None, None, None, extra["level"]]} if "level" in extra else {}),
            **(
                {"parent_code": [None, None, None, None, extra["parent_code"]]}
                if "parent_code" in extra
                else {}
            ),
        },
        geometry=[*good.geometry, extra["geometry"]],
        crs="EPSG:4326",
    )


ADMIN_BAD_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "missing geometry": ({"geometry": None}, "missing geometry"),
    "wrong type": (
        {"geometry": Point(117.21, 31.83)},
        "wrong geometry type Point; expected Polygon or MultiPolygon",
    ),
    "invalid": ({"geometry": BOWTIE}, "invalid geometry: Self-intersection[117.205 31.805]"),
    "out of range": (
        {"geometry": box(190.0, 31.8, 191.0, 31.9)},
        "coordinates outside the longitude/latitude range after reprojection to EPSG:4326 "
        "(bounds 190 31.8 191 31.9); check the CRS",
    ),
    "code not digits": ({"code": "34010400100A"}, "code '34010400100A' must contain digits only"),
    "code length": (
        {"code": "3401040010"},
        "code 3401040010 has 10 digits; admin area codes have 6 (district), 9 (street) or 12 (community)",
    ),
    "empty code": ({"code": " "}, "code is empty"),
    "empty name": ({"name": ""}, "name is empty"),
    "level mismatch": (
        {"level": "street"},
        "level street needs a 9-digit code, got 340104001003 (12 digits)",
    ),
    "unknown level": (
        {"level": "city"},
        "unknown level 'city'; expected one of district, street, community",
    ),
    "parent not found": (
        {"code": "340104002001"},
        "parent street 340104002 not found in the database or in this file",
    ),
    "stated parent wrong level": (
        {"parent_code": DISTRICT},
        "parent_code '340104' is not a street code (9 digits)",
    ),
}


@pytest.mark.parametrize("kind", list(ADMIN_BAD_ROWS))
def test_bad_admin_row_is_reported_and_nothing_is_written(
    db: Session, tmp_path: Path, kind: str
) -> None:
    row, reason = ADMIN_BAD_ROWS[kind]
    path = write(_admin_with(**row), tmp_path / "bad.geojson")

    report = io.import_layer(session=db, layer="admin-areas", path=path)

    assert reasons(report) == [(5, reason)]
    assert (report.read, report.valid, report.loaded, report.failed) == (5, 4, 0, True)
    assert counts(db) == {"admin_area": 0, "grid": 0, "building": 0}


def test_empty_geometry_is_rejected(db: Session) -> None:
    frame = _admin_with(geometry=Polygon())

    report = io.import_frame(session=db, layer="admin-areas", frame=frame)

    assert reasons(report) == [(5, "empty geometry")]
    assert counts(db)["admin_area"] == 0


def test_duplicate_codes_in_the_file_reject_every_copy(db: Session, tmp_path: Path) -> None:
    path = write(_admin_with(code=COMMUNITY_A), tmp_path / "dup.geojson")

    report = io.import_layer(session=db, layer="admin-areas", path=path)

    why = f"code {COMMUNITY_A} appears more than once in this file (rows 1, 5)"
    assert reasons(report) == [(1, why), (5, why)]
    assert counts(db)["admin_area"] == 0


def test_codes_already_in_the_database_are_rejected(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path, grids=False)
    before = counts(db)

    report = io.import_layer(
        session=db, layer="admin-areas", path=write(_admin_with(), tmp_path / "again.geojson")
    )

    assert reasons(report) == [
        (1, f"admin area {COMMUNITY_A} already exists in the database"),
        (2, f"admin area {COMMUNITY_B} already exists in the database"),
        (3, f"admin area {STREET} already exists in the database"),
        (4, f"admin area {DISTRICT} already exists in the database"),
    ]
    assert counts(db) == before


def test_a_rejected_parent_rejects_its_children(db: Session, tmp_path: Path) -> None:
    frame = admin_frame()
    frame.loc[2, "geometry"] = None  # the street

    report = io.import_layer(
        session=db, layer="admin-areas", path=write(frame, tmp_path / "a.geojson")
    )

    assert reasons(report) == [
        (1, f"parent street {STREET} (row 3) is rejected"),
        (2, f"parent street {STREET} (row 3) is rejected"),
        (3, "missing geometry"),
    ]


def test_several_problems_in_one_row_are_all_reported(db: Session) -> None:
    frame = _admin_with(code="12x", name=None, geometry=Point(1, 1))

    report = io.import_frame(session=db, layer="admin-areas", frame=frame)

    assert reasons(report) == [
        (
            5,
            "wrong geometry type Point; expected Polygon or MultiPolygon; code '12x' must contain digits only; name is empty",
        )
    ]


def test_repair_fixes_invalid_polygons_and_reports_them(db: Session, tmp_path: Path) -> None:
    path = write(_admin_with(geometry=BOWTIE), tmp_path / "bowtie.geojson")

    report = io.import_layer(session=db, layer="admin-areas", path=path, repair=True)

    assert (report.loaded, report.repaired, report.rejected) == (5, 1, [])
    assert [tuple(r) for r in report.repaired_rows] == [
        (5, "repaired: Self-intersection[117.205 31.805]")
    ]
    valid, parts = db.execute(
        text(
            "SELECT ST_IsValid(geom), ST_NumGeometries(geom) FROM admin_area WHERE code = '340104001003'"
        )
    ).one()
    assert (valid, parts) == (True, 2)


def test_skip_invalid_loads_the_valid_rows_and_writes_the_rejects(
    db: Session, tmp_path: Path
) -> None:
    path = write(_admin_with(geometry=BOWTIE), tmp_path / "bowtie.geojson")
    rejects = tmp_path / "rejects.geojson"

    report = io.import_layer(
        session=db, layer="admin-areas", path=path, skip_invalid=True, rejects_path=rejects
    )

    assert (report.loaded, report.failed) == (4, False)
    assert reasons(report) == [(5, "invalid geometry: Self-intersection[117.205 31.805]")]
    assert counts(db)["admin_area"] == 4
    written = gpd.read_file(rejects)
    assert written[["row", "reason", "code"]].values.tolist() == [
        [5, "invalid geometry: Self-intersection[117.205 31.805]", "340104001003"]
    ]


def test_a_refusal_by_the_database_is_one_clear_error_and_writes_nothing(
    db: Session, tmp_path: Path
) -> None:
    db.execute(
        text("ALTER TABLE admin_area ADD CONSTRAINT test_no_forbidden CHECK (name <> 'forbidden')")
    )
    path = write(_admin_with(name="forbidden"), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.import_layer(session=db, layer="admin-areas", path=path)

    assert err.value.detail == (
        'the database refused the import, nothing was written: new row for relation "admin_area" '
        'violates check constraint "test_no_forbidden" (test_no_forbidden)'
    )
    assert counts(db)["admin_area"] == 0  # and the session is still usable


def test_nul_characters_in_text_are_dropped(db: Session) -> None:
    report = io.import_frame(session=db, layer="admin-areas", frame=_admin_with(name="新\x00社区"))

    assert report.loaded == 5
    assert (
        db.execute(text("SELECT name FROM admin_area WHERE code = '340104001003'")).scalar_one()
        == "新社区"
    )


GRID_BAD_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "code length": (
        {"code": "34010400100100"},
        "grid code '34010400100100' must be 15 digits (12-digit community code + 3-digit serial)",
    ),
    "community not found": (
        {"code": "340104001009001"},
        "community 340104001009 not found in the database",
    ),
    "unknown kind": (
        {"kind": "mall"},
        "unknown kind 'mall'; expected one of general, school, hospital, industrial_park, commercial, government, scenic, other",
    ),
    "bad valid_from": ({"valid_from": "soon"}, "valid_from 'soon' is not a date/time"),
    "duplicate": (
        {"code": GRID_1},
        f"grid code {GRID_1} appears more than once in this file (rows 1, 3)",
    ),
}


@pytest.mark.parametrize("kind", list(GRID_BAD_ROWS))
def test_bad_grid_row_is_reported_and_nothing_is_written(
    db: Session, tmp_path: Path, kind: str
) -> None:
    load_base(db, tmp_path, grids=False)
    row, reason = GRID_BAD_ROWS[kind]
    extra = {
        "code": "340104001002001",
        "name": "第三网格",
        "kind": "general",
        "valid_from": None,
        **row,
    }
    good = grid_frame()
    frame = gpd.GeoDataFrame(
        {
            "code": [*good["code"], extra["code"]],
            "name": [*good["name"], extra["name"]],
            "kind": [*good["kind"], extra["kind"]],
            "valid_from": [None, None, extra["valid_from"]],
        },
        geometry=[*good.geometry, box(117.225, 31.80, 117.25, 31.825)],
        crs="EPSG:4326",
    )

    report = io.import_layer(session=db, layer="grids", path=write(frame, tmp_path / "bad.geojson"))

    expected = [(3, reason)] if kind != "duplicate" else [(1, reason), (3, reason)]
    assert reasons(report) == expected
    assert counts(db)["grid"] == 0


def test_grid_already_in_force_is_rejected_with_the_plan_hint(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path)

    report = io.import_layer(
        session=db, layer="grids", path=write(grid_frame(), tmp_path / "again.geojson")
    )

    hint = "is already in force; boundaries of grids in force change through a plan, not by import"
    assert reasons(report) == [(1, f"grid {GRID_1} {hint}"), (2, f"grid {GRID_2} {hint}")]
    assert counts(db)["grid"] == 2


def test_grid_overlapping_an_earlier_version_is_rejected(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path)
    db.execute(
        text("UPDATE grid SET valid_to = '2030-01-01T00:00:00Z' WHERE code = :c"), {"c": GRID_1}
    )
    frame = grid_frame().iloc[[0]].assign(valid_from=["2029-01-01T00:00:00Z"])

    report = io.import_layer(session=db, layer="grids", path=write(frame, tmp_path / "g.geojson"))

    assert reasons(report) == [
        (
            1,
            f"an earlier version of grid {GRID_1} is valid until 2030-01-01T00:00:00+00:00; valid_from must not be earlier",
        )
    ]


BUILDING_BAD_ROWS: dict[str, tuple[dict[str, Any], str]] = {
    "floors negative": ({"floors": -1}, "floors must be a whole number from 1 to 200, got '-1'"),
    "floors fraction": (
        {"floors": "2.5"},
        "floors must be a whole number from 1 to 200, got '2.5'",
    ),
    "floors text": ({"floors": "many"}, "floors must be a whole number from 1 to 200, got 'many'"),
    "households negative": (
        {"households": "-3"},
        "households must be a whole number ≥ 0, got '-3'",
    ),
    "unknown use": (
        {"use": "castle"},
        "unknown use 'castle'; expected one of residential, mixed, commercial, office, school, hospital, "
        "industrial, public, village_house, other",
    ),
    "duplicate code": (
        {"code": "B1"},
        "building code B1 appears more than once in this file (rows 1, 4)",
    ),
}


def _buildings_with(**row: Any) -> gpd.GeoDataFrame:
    good = building_frame().astype({"floors": "object", "households": "object"})
    extra = {
        "code": "B4",
        "name": None,
        "address": None,
        "use": None,
        "floors": None,
        "households": None,
        **row,
    }
    frame = gpd.GeoDataFrame(
        {col: [*good[col], extra[col]] for col in ("code", "name", "address", "use")}
        | {
            col: [*(str(v) if v == v and v is not None else None for v in good[col]), extra[col]]
            for col in ("floors", "households")
        },
        geometry=[*good.geometry, box(117.2015, 31.8015, 117.202, 31.802)],
        crs="EPSG:4326",
    )
    return frame


@pytest.mark.parametrize("kind", list(BUILDING_BAD_ROWS))
def test_bad_building_row_is_reported_and_nothing_is_written(
    db: Session, tmp_path: Path, kind: str
) -> None:
    load_base(db, tmp_path)
    row, reason = BUILDING_BAD_ROWS[kind]

    report = io.import_layer(
        session=db, layer="buildings", path=write(_buildings_with(**row), tmp_path / "b.geojson")
    )

    expected = [(4, reason)] if kind != "duplicate code" else [(1, reason), (4, reason)]
    assert reasons(report) == expected
    assert (report.loaded, report.outside_grid) == (0, None)
    assert counts(db)["building"] == 0


def test_building_code_already_in_the_database_is_rejected(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path)
    io.import_layer(
        session=db,
        layer="buildings",
        path=write(building_frame().iloc[[0]], tmp_path / "one.geojson"),
    )

    report = io.import_layer(
        session=db, layer="buildings", path=write(building_frame(), tmp_path / "all.geojson")
    )

    assert reasons(report) == [(1, "building code B1 already exists in the database")]
    assert counts(db)["building"] == 1


def test_unknown_use_can_be_loaded_as_other(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path)
    path = write(_buildings_with(use="castle"), tmp_path / "b.geojson")

    report = io.import_layer(session=db, layer="buildings", path=path, unknown_use="other")

    assert report.loaded == 4
    assert db.execute(text("SELECT use FROM building WHERE code = 'B4'")).scalar_one() == "other"


# --------------------------------------------------------------------------------------------
# File-level errors: one clear message
# --------------------------------------------------------------------------------------------


def test_missing_mapped_column_lists_the_file_columns(db: Session, tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.import_layer(session=db, layer="admin-areas", path=path, mapping={"code": "ADCODE"})

    assert (
        err.value.detail
        == f"{path} has no column 'ADCODE' (mapped to code); its columns are: code, name, name_en"
    )


def test_missing_required_column_says_how_to_map_it(db: Session, tmp_path: Path) -> None:
    path = write(admin_frame().rename(columns={"name": "MC"}), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.import_layer(session=db, layer="admin-areas", path=path)

    assert err.value.detail == (
        f"{path} has no name column; map one with --map name=COLUMN (its columns are: code, MC, name_en)"
    )


def test_unknown_mapping_target_is_refused(db: Session, tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.import_layer(session=db, layer="admin-areas", path=path, mapping={"adcode": "code"})

    assert err.value.detail == (
        "Invalid value for --map: adcode is not a column of admin-areas; "
        "the columns are: code, name, level, parent_code, name_en"
    )


@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_file_without_crs_needs_crs(db: Session, tmp_path: Path) -> None:
    frame = admin_frame().to_crs("EPSG:4490").set_crs(None, allow_override=True)
    path = tmp_path / "nocrs.shp"
    frame.to_file(path, engine="pyogrio")

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path)
    assert (
        err.value.detail
        == f"{path} has no coordinate reference system; pass --crs (e.g. EPSG:4490)"
    )

    report = io.import_layer(session=db, layer="admin-areas", path=path, crs="EPSG:4490")
    assert report.loaded == 4


def test_the_files_own_crs_wins_unless_forced(tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.gpkg", crs="EPSG:4548")

    kept = io.read_layer(path, crs="EPSG:4326")
    assert same_shape(kept.geometry.iloc[0], admin_frame().geometry.iloc[0])

    forced = io.read_layer(path, crs="EPSG:4326", force_crs=True)
    assert forced.geometry.iloc[0].bounds[0] > 1000  # metres taken as degrees: nonsense, as asked


UNREADABLE: dict[str, tuple[str, str | bytes | None, str]] = {
    "missing": ("missing.geojson", None, "{path} does not exist"),
    "other format": (
        "data.csv",
        "a,b\n1,2\n",
        "{path} is not a supported file type (.csv); use GeoJSON (.geojson, .json), "
        "GeoPackage (.gpkg), Shapefile (.shp) or zipped Shapefile (.zip)",
    ),
    "not geojson": (
        "garbage.geojson",
        "not json",
        "{path} could not be read: not recognized as being in a supported file format",
    ),
    "not a zip": ("city.zip", b"PK?", "{path} is not a zip archive"),
    "zip without shapefile": ("city.zip", "zip:readme.txt", "{path} holds no Shapefile (.shp)"),
    "no geometry column": ("table.gpkg", "attributes only", "{path} has no geometry column"),
}


@pytest.mark.parametrize("kind", list(UNREADABLE))
def test_unreadable_files_give_one_clear_error(tmp_path: Path, kind: str) -> None:
    name, content, message = UNREADABLE[kind]
    path = tmp_path / name
    if content == "zip:readme.txt":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "no shapefile here")
    elif content == "attributes only":
        pyogrio.write_dataframe(pd.DataFrame({"code": ["340104"]}), path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path)

    assert err.value.detail == message.format(path=path)


def test_geojson_without_geometry_column(tmp_path: Path) -> None:
    path = tmp_path / "table.geojson"
    path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {"type": "Feature", "properties": {"code": "340104"}, "geometry": None}
                ],
            }
        )
    )

    frame = io.read_layer(
        path, crs="EPSG:4326"
    )  # a GeoJSON always has a geometry column, maybe null
    assert frame.geometry.isna().all()


def test_geopackage_with_several_layers_needs_layer(db: Session, tmp_path: Path) -> None:
    path = tmp_path / "city.gpkg"
    admin_frame().to_file(path, layer="admin", engine="pyogrio")
    grid_frame().to_file(path, layer="grids", engine="pyogrio")

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path)
    assert err.value.detail == f"{path} has 2 layers (admin, grids); pass --layer to choose one"
    with pytest.raises(InvalidInput) as err:
        io.read_layer(path, layer="roads")
    assert err.value.detail == f"{path} has no layer 'roads'; its layers are: admin, grids"

    report = io.import_layer(session=db, layer="admin-areas", path=path, source_layer="admin")
    assert report.loaded == 4


def test_zipped_shapefile_inside_a_folder_and_layer_choice(db: Session, tmp_path: Path) -> None:
    shp = write(admin_frame(), tmp_path / "boundaries.shp", crs="EPSG:4490")
    nested = tmp_path / "nested.zip"
    with zipfile.ZipFile(nested, "w") as archive:
        for part in tmp_path.glob("boundaries.*"):
            archive.write(part, arcname=f"合肥/{part.name}")
    assert shp.exists()

    assert io.import_layer(session=db, layer="admin-areas", path=nested, dry_run=True).valid == 4
    with pytest.raises(InvalidInput) as err:
        io.read_layer(nested, layer="roads")
    assert err.value.detail == f"{nested} has no layer 'roads'"


def test_unknown_crs_is_refused(tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.geojson")
    with pytest.raises(
        InvalidInput, match="Invalid value for --crs: 'EPSG:999999' is not a coordinate"
    ):
        io.read_layer(path, crs="EPSG:999999")


# --------------------------------------------------------------------------------------------
# GCJ-02 / BD-09 (phone-map coordinates; see docs/coordinates.md)
# --------------------------------------------------------------------------------------------


def phone_map(frame: gpd.GeoDataFrame, system: str) -> gpd.GeoDataFrame:
    """The fixture with its WGS84 vertices converted to GCJ-02 / BD-09 (still labelled 4326)."""

    def convert(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(gridmap_crs.from_wgs84(xy[:, 0], xy[:, 1], system))

    out = frame.copy()
    out["geometry"] = gpd.GeoSeries(
        shapely.transform(np.asarray(frame.geometry.array), convert), crs="EPSG:4326"
    )
    return out


def near(a: Any, b: Any, tolerance: float) -> bool:
    """Same vertex count and every vertex within `tolerance` degrees of the other shape's.

    Not `same_shape`: after a conversion, noise of 1e-14° can make `normalize` start a ring
    at a different corner.
    """
    return shapely.get_num_coordinates(a) == shapely.get_num_coordinates(b) and bool(
        shapely.hausdorff_distance(a, b) < tolerance
    )


def test_a_crs_no_file_can_declare_needs_force_crs(tmp_path: Path) -> None:
    path = write(phone_map(admin_frame(), "GCJ02"), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path, crs="GCJ02")

    assert err.value.detail == (
        f"Invalid value for --crs: {path} declares EPSG:4326 (WGS 84) and no file can declare "
        "GCJ-02; pass --force-crs to read its coordinates as GCJ-02"
    )


@pytest.mark.parametrize(
    ("suffix", "system", "force"),
    [
        (".geojson", "GCJ02", True),
        (".gpkg", "BD-09", True),
        (".zip", "mars", True),
        (".shp", "baidu", False),  # no .prj: --crs alone applies
    ],
)
@pytest.mark.filterwarnings("ignore:'crs' was not provided")
def test_phone_map_files_are_converted_to_wgs84_on_import(
    db: Session, tmp_path: Path, suffix: str, system: str, force: bool
) -> None:
    frame = phone_map(admin_frame(), system)
    if not force:
        frame = frame.set_crs(None, allow_override=True)
    path = write(frame, tmp_path / f"admin{suffix}")
    shifted = frame.geometry.iloc[0]
    assert not same_shape(shifted, admin_frame().geometry.iloc[0], 1e-4)  # hundreds of metres

    report = io.import_layer(
        session=db, layer="admin-areas", path=path, crs=system, force_crs=force
    )

    assert (report.loaded, report.rejected) == (4, [])
    name = "GCJ-02" if gridmap_crs.canonical_crs(system) == "GCJ02" else "BD-09"
    expected_notes = (
        [f"the file declares EPSG:4326 (WGS 84); --force-crs replaced it with {name}"]
        if force
        else []
    )
    assert report.notes[: len(expected_notes)] == expected_notes
    rows = db.execute(text("SELECT code, ST_AsBinary(geom) FROM admin_area ORDER BY code")).all()
    wanted = dict(zip(admin_frame()["code"], admin_frame().geometry, strict=True))
    for code, wkb in rows:
        assert near(shapely.from_wkb(bytes(wkb)), wanted[code], 1e-8), code


def test_phone_map_features_outside_china_refuse_the_file(tmp_path: Path) -> None:
    paris = box(2.35, 48.85, 2.36, 48.86)
    path = write(_admin_with(geometry=paris), tmp_path / "a.geojson")

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path, crs="GCJ02", force_crs=True)

    assert err.value.detail == (
        "Invalid coordinates for crs GCJ02: 1 of 5 features lies outside China, where GCJ-02 "
        "is not defined (row 5); check --crs and --force-crs"
    )


def test_metres_read_as_phone_map_degrees_are_refused(tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.gpkg", crs="EPSG:4548")

    with pytest.raises(InvalidInput) as err:
        io.read_layer(path, crs="BD09", force_crs=True)

    assert err.value.detail == (
        "Invalid coordinates for crs BD09: 4 of 4 features lie outside China, where BD-09 "
        "is not defined (rows 1, 2, 3, 4); check --crs and --force-crs"
    )


@pytest.mark.parametrize("system", ["GCJ02", "BD09"])
def test_export_in_phone_map_coordinates(db: Session, tmp_path: Path, system: str) -> None:
    load_base(db, tmp_path)
    out = tmp_path / "grids.geojson"

    assert io.export_layer(session_or_connection=db, layer="grids", path=out, crs=system) == 2

    frame = gpd.read_file(out, engine="pyogrio").sort_values("code")
    assert frame.crs.to_epsg() == 4326  # no CRS code exists for GCJ-02 / BD-09
    expected = phone_map(grid_frame(), system).sort_values("code")
    assert list(frame["code"]) == list(expected["code"])
    for got, want in zip(frame.geometry, expected.geometry, strict=True):
        assert near(got, want, 1e-9)


@pytest.mark.parametrize(("suffix", "system"), [(".gpkg", "GCJ02"), (".zip", "BD09")])
def test_phone_map_export_then_reimport_into_an_empty_database(
    db: Session, tmp_path: Path, suffix: str, system: str
) -> None:
    load_base(db, tmp_path)
    io.import_layer(
        session=db, layer="buildings", path=write(building_frame(), tmp_path / "b.geojson")
    )
    db.execute(text("UPDATE grid SET valid_from = '2024-07-01T08:30:15.123+08'"))  # ms in files
    before = _snapshot(db)
    out = tmp_path / "out"
    out.mkdir()
    files = {layer: out / f"{layer}{suffix}" for layer in io.LAYERS}
    for layer in io.LAYERS:
        io.export_layer(session_or_connection=db, layer=layer, path=files[layer], crs=system)

    db.execute(text("DELETE FROM building; DELETE FROM grid; DELETE FROM admin_area"))
    for layer in io.LAYERS:
        report = io.import_layer(
            session=db, layer=layer, path=files[layer], crs=system, force_crs=True
        )
        assert report.rejected == []

    after = _snapshot(db)
    for key in before:
        assert [row[:-1] for row in before[key]] == [row[:-1] for row in after[key]]
        for old, new in zip(before[key], after[key], strict=True):
            assert near(shapely.from_wkb(bytes(old[-1])), shapely.from_wkb(bytes(new[-1])), 1e-9)


def test_export_in_phone_map_coordinates_refuses_features_outside_china(
    db: Session, tmp_path: Path
) -> None:
    load_base(db, tmp_path)
    io.import_layer(
        session=db, layer="buildings", path=write(building_frame(), tmp_path / "b.geojson")
    )
    db.execute(text("UPDATE building SET geom = ST_Translate(geom, -115, 17) WHERE code = 'B3'"))

    with pytest.raises(InvalidInput) as err:
        io.export_layer(
            session_or_connection=db, layer="buildings", path=tmp_path / "b.gpkg", crs="gcj-02"
        )

    assert err.value.detail == (
        "Invalid coordinates for crs GCJ02: 1 of 3 features lies outside China, where GCJ-02 "
        "is not defined (code B3); export in EPSG:4326 or EPSG:4490 instead"
    )


# --------------------------------------------------------------------------------------------
# Export and round trip
# --------------------------------------------------------------------------------------------


def _snapshot(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    return {
        "admin": [
            tuple(r)
            for r in db.execute(
                text(
                    "SELECT a.code, a.level, a.name, a.name_en, p.code, ST_AsBinary(a.geom) FROM admin_area a "
                    "LEFT JOIN admin_area p ON p.id = a.parent_id ORDER BY a.code"
                )
            )
        ],
        "grids": [
            tuple(r)
            for r in db.execute(
                text(
                    "SELECT g.code, g.name, g.kind, c.code, g.valid_from, ST_AsBinary(g.geom) FROM grid g "
                    "JOIN admin_area c ON c.id = g.community_id WHERE g.valid_to IS NULL ORDER BY g.code"
                )
            )
        ],
        "buildings": [
            tuple(r)
            for r in db.execute(
                text(
                    "SELECT code, name, address, use, floors, households, grid_code, ST_AsBinary(geom) "
                    "FROM building ORDER BY code"
                )
            )
        ],
    }


def _same_rows(before: list[tuple[Any, ...]], after: list[tuple[Any, ...]], *, crs: str) -> None:
    assert len(before) == len(after)
    tolerance = 1e-7 if crs != "EPSG:4326" else 1e-12
    for old, new in zip(before, after, strict=True):
        assert old[:-1] == new[:-1]
        assert same_shape(
            shapely.from_wkb(bytes(old[-1])), shapely.from_wkb(bytes(new[-1])), tolerance
        )


@pytest.mark.parametrize(
    ("suffix", "crs"),
    [
        (".geojson", "EPSG:4326"),
        (".gpkg", "EPSG:4548"),
        (".shp", "EPSG:4490"),
        (".zip", "EPSG:3857"),
    ],
)
def test_export_then_reimport_into_an_empty_database(
    db: Session, tmp_path: Path, suffix: str, crs: str
) -> None:
    load_base(db, tmp_path)
    io.import_layer(
        session=db, layer="buildings", path=write(building_frame(), tmp_path / "b.geojson")
    )
    db.execute(text("UPDATE grid SET valid_from = '2024-07-01T08:30:15.123+08'"))
    before = _snapshot(db)
    out = tmp_path / "out"
    out.mkdir()
    files = {}
    for layer in io.LAYERS:
        files[layer] = out / f"{layer}{suffix}"
        written = io.export_layer(session_or_connection=db, layer=layer, path=files[layer], crs=crs)
        assert written == {"admin-areas": 4, "grids": 2, "buildings": 3}[layer]

    db.execute(text("DELETE FROM building; DELETE FROM grid; DELETE FROM admin_area"))
    for layer in io.LAYERS:
        report = io.import_layer(session=db, layer=layer, path=files[layer])
        assert (report.rejected, report.loaded) == (
            [],
            {"admin-areas": 4, "grids": 2, "buildings": 3}[layer],
        )

    after = _snapshot(db)
    for key in before:
        _same_rows(before[key], after[key], crs=crs)


def test_export_writes_short_shapefile_names_and_declares_the_crs(
    db: Session, tmp_path: Path
) -> None:
    load_base(db, tmp_path)
    out = tmp_path / "grids.zip"

    io.export_layer(session_or_connection=db, layer="grids", path=out, crs="EPSG:4548")

    with zipfile.ZipFile(out) as archive:
        assert sorted(Path(n).suffix for n in archive.namelist()) == [
            ".cpg",
            ".dbf",
            ".prj",
            ".shp",
            ".shx",
        ]
    frame = gpd.read_file(out, engine="pyogrio")
    assert frame.crs.to_epsg() == 4548
    assert all(len(c) <= 10 for c in frame.columns)
    assert "comm_code" in frame.columns


def test_export_grids_in_force_at_a_time(db: Session, tmp_path: Path) -> None:
    load_base(db, tmp_path)
    db.execute(
        text(
            "UPDATE grid SET valid_from = '2020-01-01T00:00Z', valid_to = '2024-01-01T00:00Z' WHERE code = :c"
        ),
        {"c": GRID_1},
    )
    db.execute(
        text("UPDATE grid SET valid_from = '2020-01-01T00:00Z' WHERE code = :c"), {"c": GRID_2}
    )
    out = tmp_path / "grids.geojson"

    assert io.export_layer(session_or_connection=db, layer="grids", path=out) == 1
    assert (
        io.export_layer(
            session_or_connection=db, layer="grids", path=out, at=dt.datetime(2023, 6, 1)
        )
        == 2
    )
    assert sorted(gpd.read_file(out)["code"]) == [GRID_1, GRID_2]
    assert (
        io.export_layer(
            session_or_connection=db, layer="grids", path=out, at=dt.datetime(2019, 6, 1)
        )
        == 0
    )
    assert len(gpd.read_file(out)) == 0


def test_export_refuses_unknown_formats(db: Session, tmp_path: Path) -> None:
    with pytest.raises(
        InvalidInput, match=r"use a file name ending in \.geojson, \.json, \.gpkg, \.shp or \.zip"
    ):
        io.export_layer(session_or_connection=db, layer="grids", path=tmp_path / "grids.kml")


# --------------------------------------------------------------------------------------------
# CLI (its own session via get_engine: only paths that commit nothing)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cli(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    from gridmap import db as gridmap_db
    from gridmap import settings

    monkeypatch.setenv("GRIDMAP_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    settings.db_settings.cache_clear()
    gridmap_db.get_engine.cache_clear()
    app = typer.Typer()
    app.add_typer(import_app, name="import")
    app.command("export")(export_command)
    yield app
    gridmap_db.get_engine().dispose()
    gridmap_db.get_engine.cache_clear()
    monkeypatch.delenv("GRIDMAP_DATABASE_URL")
    settings.db_settings.cache_clear()


def test_cli_missing_file_is_one_line_and_exit_1(cli: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["import", "admin-areas", str(tmp_path / "nope.geojson")])

    assert result.exit_code == 1
    assert result.stderr == f"error: {tmp_path / 'nope.geojson'} does not exist\n"
    assert "Traceback" not in result.output


def test_cli_bad_mapping_is_one_line(cli: typer.Typer, tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.geojson")

    result = CliRunner().invoke(cli, ["import", "admin-areas", str(path), "--map", "code"])

    assert result.exit_code == 1
    assert (
        result.stderr
        == "error: Invalid value for --map: 'code'; write TARGET=SOURCE, e.g. --map code=ADCODE\n"
    )


def test_cli_rejected_rows_write_nothing_and_exit_1(
    cli: typer.Typer, engine: Engine, tmp_path: Path
) -> None:
    path = write(_admin_with(geometry=BOWTIE), tmp_path / "bad.geojson")

    result = CliRunner().invoke(cli, ["import", "admin-areas", str(path)])

    assert result.exit_code == 1
    assert "invalid geometry: Self-intersection[117.205 31.805]" in result.stdout
    assert result.stderr.startswith("error: nothing was written: 1 of 5 rows rejected")
    assert result.stderr.count("\n") == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM admin_area")).scalar_one() == 0


def test_cli_dry_run_prints_the_summary(cli: typer.Typer, engine: Engine, tmp_path: Path) -> None:
    path = write(admin_frame(), tmp_path / "a.geojson")

    result = CliRunner().invoke(cli, ["import", "admin-areas", str(path), "--dry-run"])

    assert result.exit_code == 0, result.output
    assert "read / 读取" in result.stdout and "valid / 有效" in result.stdout
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM admin_area")).scalar_one() == 0


def test_cli_export_and_its_errors(cli: typer.Typer, tmp_path: Path) -> None:
    out = tmp_path / "admin.gpkg"
    result = CliRunner().invoke(cli, ["export", "admin-areas", str(out)])
    assert result.exit_code == 0, result.output
    assert out.exists()

    result = CliRunner().invoke(cli, ["export", "grids", str(out), "--at", "yesterday"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: Invalid value for --at: 'yesterday' is not an ISO 8601 date/time (e.g. 2024-07-01T08:00)\n"
    )


def test_cli_phone_map_coordinates_in_and_out(cli: typer.Typer, tmp_path: Path) -> None:
    path = write(phone_map(admin_frame(), "GCJ02"), tmp_path / "a.geojson")

    result = CliRunner().invoke(cli, ["import", "admin-areas", str(path), "--crs", "GCJ-02"])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: Invalid value for --crs: {path} declares EPSG:4326 (WGS 84) and no file can "
        "declare GCJ-02; pass --force-crs to read its coordinates as GCJ-02\n"
    )

    result = CliRunner().invoke(
        cli,
        ["import", "admin-areas", str(path), "--crs", "GCJ-02", "--force-crs", "--dry-run"],
    )
    assert result.exit_code == 0, result.output

    out = tmp_path / "admin.geojson"
    result = CliRunner().invoke(cli, ["export", "admin-areas", str(out), "--crs", "BD09"])
    assert result.exit_code == 0, result.output
