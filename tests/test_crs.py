"""Coordinate systems: aliases, GCJ-02 / BD-09 conversion, range, China and swap checks."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from gridmap import crs
from gridmap.errors import InvalidInput

GEOD = Geod(ellps="WGS84")
CHINA_LON = st.floats(min_value=73.0, max_value=135.0, allow_nan=False, allow_infinity=False)
CHINA_LAT = st.floats(min_value=18.0, max_value=53.0, allow_nan=False, allow_infinity=False)
SYSTEMS = ["GCJ02", "BD09", "EPSG:4490"]


def metres(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    return float(GEOD.inv(lon1, lat1, lon2, lat2)[2])


# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("gcj02", "GCJ02"),
        ("GCJ02", "GCJ02"),
        ("GCJ-02", "GCJ02"),
        ("gcj_02", "GCJ02"),
        ("mars", "GCJ02"),
        (" Mars ", "GCJ02"),
        ("bd09", "BD09"),
        ("BD-09", "BD09"),
        ("bd_09", "BD09"),
        ("baidu", "BD09"),
        ("Baidu", "BD09"),
        ("epsg:4490", "EPSG:4490"),
        ("CGCS2000", "EPSG:4490"),
        ("WGS84", "EPSG:4326"),
        (None, "EPSG:4326"),
    ],
)
def test_crs_names_and_aliases(name: str | None, canonical: str) -> None:
    assert crs.canonical_crs(name) == canonical


def test_unknown_crs_lists_the_supported_ones() -> None:
    with pytest.raises(InvalidInput) as err:
        crs.canonical_crs("GCJ03")
    assert err.value.detail == "Unknown crs 'GCJ03': use one of BD09, EPSG:4326, EPSG:4490, GCJ02"
    with pytest.raises(InvalidInput) as err:
        crs.to_wgs84(117.27, 31.86, "bd-11")
    assert err.value.detail == "Unknown crs 'bd-11': use one of BD09, EPSG:4326, EPSG:4490, GCJ02"


def test_shifted_crs_recognises_only_the_phone_map_systems() -> None:
    assert crs.shifted_crs("gcj-02") == "GCJ02"
    assert crs.shifted_crs("baidu") == "BD09"
    assert crs.shifted_crs("EPSG:4490") is None
    assert crs.shifted_crs("EPSG:4548") is None
    assert crs.shifted_crs(None) is None


# --------------------------------------------------------------------------------------------
# Published reference pairs
# --------------------------------------------------------------------------------------------

# wandergis/coordtransform, test/app.js (the widely copied JavaScript implementation)
WGS_TIANANMEN = (116.404, 39.915)
GCJ_OF_WGS_TIANANMEN = (116.41024449916938, 39.91640428150164)
BD_OF_GCJ_TIANANMEN = (116.41036949371029, 39.92133699351021)
# coordtransform's closed-form bd09togcj02 and one-step gcj02towgs84 of (116.404, 39.915)
CLOSED_FORM_GCJ_OF_BD = (116.39762729119315, 39.90865673957631)
ONE_STEP_WGS_OF_GCJ = (116.39775550083061, 39.91359571849836)
# the coord-transform crate (docs.rs): gcj2bd((118.0, 32.0))
BD_OF_GCJ_118_32 = (118.00653128313961, 32.00581846664105)


def test_wgs84_to_gcj02_matches_the_published_value() -> None:
    lon, lat = crs.from_wgs84(*WGS_TIANANMEN, "GCJ02")

    assert lon == pytest.approx(GCJ_OF_WGS_TIANANMEN[0], abs=1e-12)
    assert lat == pytest.approx(GCJ_OF_WGS_TIANANMEN[1], abs=1e-12)


def test_gcj02_to_wgs84_inverts_the_published_value() -> None:
    lon, lat = crs.to_wgs84(*GCJ_OF_WGS_TIANANMEN, "GCJ02")

    assert (lon, lat) == pytest.approx(WGS_TIANANMEN, abs=1e-9)


@pytest.mark.parametrize(
    ("gcj", "bd"),
    [((116.404, 39.915), BD_OF_GCJ_TIANANMEN), ((118.0, 32.0), BD_OF_GCJ_118_32)],
)
def test_gcj02_to_bd09_matches_published_values(
    gcj: tuple[float, float], bd: tuple[float, float]
) -> None:
    # GCJ-02 → BD-09 through the public API: GCJ-02 → WGS84 → BD-09
    assert crs.from_wgs84(*crs.to_wgs84(*gcj, "GCJ02"), "BD09") == pytest.approx(bd, abs=1e-9)
    # and back: BD-09 → WGS84 → GCJ-02
    assert crs.from_wgs84(*crs.to_wgs84(*bd, "BD09"), "GCJ02") == pytest.approx(gcj, abs=1e-9)


def test_exact_inverses_stay_within_centimetres_of_the_published_approximations() -> None:
    # coordtransform inverts BD-09 in closed form and GCJ-02 in one step; gridmap iterates to
    # the exact inverse of the forward formulas, a few centimetres from those approximations.
    gcj = crs.from_wgs84(*crs.to_wgs84(116.404, 39.915, "BD09"), "GCJ02")
    assert 0.0 < metres(*gcj, *CLOSED_FORM_GCJ_OF_BD) < 0.1
    wgs = crs.to_wgs84(116.404, 39.915, "GCJ02")
    assert 0.0 < metres(*wgs, *ONE_STEP_WGS_OF_GCJ) < 0.1


def test_the_gcj02_offset_is_hundreds_of_metres_in_hefei() -> None:
    shifted = crs.from_wgs84(117.27, 31.86, "GCJ02")
    assert 100 < metres(117.27, 31.86, *shifted) < 1000


# --------------------------------------------------------------------------------------------
# Round trips (property tests over China)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=200, deadline=None)
@given(lon=CHINA_LON, lat=CHINA_LAT)
def test_wgs84_round_trip_within_a_centimetre(system: str, lon: float, lat: float) -> None:
    there = crs.from_wgs84(lon, lat, system)
    back = crs.to_wgs84(*there, system)

    assert metres(lon, lat, *back) < 0.01


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=200, deadline=None)
@given(lon=CHINA_LON, lat=CHINA_LAT)
def test_phone_map_round_trip_within_a_centimetre(system: str, lon: float, lat: float) -> None:
    wgs = crs.to_wgs84(lon, lat, system)
    back = crs.from_wgs84(*wgs, system)

    assert metres(lon, lat, *back) < 0.01


@pytest.mark.parametrize("system", SYSTEMS)
@settings(max_examples=50, deadline=None)
@given(points=st.lists(st.tuples(CHINA_LON, CHINA_LAT), min_size=1, max_size=50))
def test_vectorised_and_scalar_paths_agree(system: str, points: list[tuple[float, float]]) -> None:
    lon = np.array([p[0] for p in points])
    lat = np.array([p[1] for p in points])

    for convert in (crs.to_wgs84, crs.from_wgs84):
        xs, ys = convert(lon, lat, system)
        for i, (x, y) in enumerate(points):
            sx, sy = convert(x, y, system)
            assert isinstance(sx, float) and isinstance(sy, float)
            assert (sx, sy) == pytest.approx((xs[i], ys[i]), abs=1e-12)


def test_epsg_4490_is_the_same_frame_as_wgs84_to_the_millimetre() -> None:
    lon, lat = crs.to_wgs84(117.27, 31.86, "CGCS2000")
    assert metres(117.27, 31.86, lon, lat) < 0.001


@pytest.mark.parametrize("system", ["GCJ02", "BD09"])
def test_a_batch_of_100000_points_converts_fast(system: str) -> None:
    rng = np.random.default_rng(7)
    lon = rng.uniform(73.0, 135.0, 100_000)
    lat = rng.uniform(18.0, 53.0, 100_000)

    started = time.perf_counter()
    there = crs.from_wgs84(lon, lat, system)
    back = crs.to_wgs84(*there, system)
    seconds = time.perf_counter() - started

    assert seconds < 2.0, f"{system}: 100,000 points there and back took {seconds:.2f} s"
    assert np.isfinite(back).all()
    error = GEOD.inv(lon, lat, back[0], back[1])[2]
    assert float(np.max(error)) < 0.01


# --------------------------------------------------------------------------------------------
# Outside China
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("convert", "system", "detail"),
    [
        (
            crs.to_wgs84,
            "GCJ02",
            "Invalid coordinates for crs GCJ02: (2.35, 48.85) lies outside China, "
            "where GCJ-02 is not defined",
        ),
        (
            crs.to_wgs84,
            "baidu",
            "Invalid coordinates for crs BD09: (2.35, 48.85) lies outside China, "
            "where BD-09 is not defined",
        ),
        (
            crs.from_wgs84,
            "gcj-02",
            "Invalid coordinates for crs GCJ02: (2.35, 48.85) lies outside China, "
            "where GCJ-02 is not defined",
        ),
        (
            crs.from_wgs84,
            "BD09",
            "Invalid coordinates for crs BD09: (2.35, 48.85) lies outside China, "
            "where BD-09 is not defined",
        ),
    ],
)
def test_a_point_outside_china_is_refused_not_passed_through(
    convert: Callable[..., Any], system: str, detail: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        convert(2.35, 48.85, system)  # Paris
    assert err.value.detail == detail


def test_arrays_mark_points_outside_china_and_give_nan_there() -> None:
    lon = np.array([117.27, 2.35, 72.004, 137.8347, 150.0, np.nan])
    lat = np.array([31.86, 48.85, 0.8293, 55.8271, 30.0, 30.0])

    assert crs.outside_china(lon, lat).tolist() == [False, True, False, False, True, True]
    assert crs.in_china(lon, lat).tolist() == [True, False, True, True, False, False]
    for convert in (crs.to_wgs84, crs.from_wgs84):
        x, y = convert(lon, lat, "GCJ02")
        assert np.isnan(x).tolist() == [False, True, False, False, True, True]
        assert np.isnan(y).tolist() == np.isnan(x).tolist()


def test_outside_china_works_for_scalars() -> None:
    assert bool(crs.outside_china(2.35, 48.85))
    assert not bool(crs.outside_china(117.27, 31.86))


def test_wgs84_and_cgcs2000_are_not_limited_to_china() -> None:
    assert crs.to_wgs84(2.35, 48.85, "EPSG:4326") == (2.35, 48.85)
    lon, lat = crs.to_wgs84(2.35, 48.85, "EPSG:4490")
    assert metres(2.35, 48.85, lon, lat) < 0.001


# --------------------------------------------------------------------------------------------
# Range and swap checks
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lon", "lat", "detail"),
    [
        (190, 31.86, "Invalid value for parameter lon: 190 is outside [-180, 180]"),
        (-180.5, 31.86, "Invalid value for parameter lon: -180.5 is outside [-180, 180]"),
        (117.27, 91, "Invalid value for parameter lat: 91 is outside [-90, 90]"),
        (
            31.86,
            117.27,
            "Invalid value for parameter lat: 117.27 is outside [-90, 90]; "
            "longitude and latitude look swapped",
        ),
        (
            -31.86,
            -117.27,
            "Invalid value for parameter lat: -117.27 is outside [-90, 90]; "
            "longitude and latitude look swapped",
        ),
        (117.27, 200, "Invalid value for parameter lat: 200 is outside [-90, 90]"),
        (math.nan, 31.86, "Invalid value for parameter lon: must be a finite number"),
        (117.27, math.inf, "Invalid value for parameter lat: must be a finite number"),
        (117.27, None, "Invalid value for parameter lat: must be a finite number"),
        (117.27, "north", "Invalid value for parameter lat: must be a finite number"),
    ],
)
def test_range_check_names_the_parameter(lon: object, lat: object, detail: str) -> None:
    with pytest.raises(InvalidInput) as err:
        crs.check_lonlat(lon, lat)
    assert err.value.detail == detail


@pytest.mark.parametrize(("lon", "lat"), [(117.27, 31.86), (-180, -90), (180, 90), (0, 0)])
def test_range_check_accepts_valid_points(lon: float, lat: float) -> None:
    assert crs.check_lonlat(lon, lat) == (float(lon), float(lat))


HEFEI = (116.7, 31.4, 117.9, 32.3)  # the deployment's grids plus a margin


def test_a_swapped_point_is_named_as_a_likely_swap() -> None:
    with pytest.raises(InvalidInput) as err:
        crs.check_extent(31.86, 117.27, HEFEI)
    assert err.value.detail == (
        "Point (lon=31.86, lat=117.27) lies outside the deployment area; longitude and latitude "
        "look swapped — (lon=117.27, lat=31.86) would lie inside"
    )


def test_a_point_elsewhere_is_outside_the_deployment_area() -> None:
    with pytest.raises(InvalidInput) as err:
        crs.check_extent(121.47, 31.23, HEFEI)  # Shanghai
    assert err.value.detail == (
        "Point (lon=121.47, lat=31.23) lies outside the deployment area (116.7, 31.4, 117.9, 32.3)"
    )


@pytest.mark.parametrize(("lon", "lat"), [(117.27, 31.86), (116.7, 31.4), (117.9, 32.3)])
def test_points_inside_the_extent_pass(lon: float, lat: float) -> None:
    crs.check_extent(lon, lat, HEFEI)


def test_an_upside_down_extent_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="extent must be"):
        crs.check_extent(117.27, 31.86, (117.9, 31.4, 116.7, 32.3))
