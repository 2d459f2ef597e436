"""ID numbers and the working calendar."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gridmap import idnumber
from gridmap.workcal import CalendarSettings, WorkCalendar

TZ = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("number", "ok"),
    [
        ("11010519491231002X", True),  # the standard's own example
        ("110105194912310021", False),  # wrong check character
        ("11010519490231002X", False),  # 31 February... 1949-02-31 is not a date
        ("1101051949123100", False),
        ("11010519491231002x", False),
    ],
)
def test_id_number_check(number: str, ok: bool) -> None:
    assert idnumber.is_valid(number) is ok


@given(st.text(alphabet="0123456789", min_size=17, max_size=17))
def test_vectorised_check_matches_scalar(first17: str) -> None:
    import numpy as np

    digits = np.array([[int(c) for c in first17]])
    assert idnumber.check_chars(digits)[0] == idnumber.check_char(first17)


def test_working_hours_skip_lunch_nights_and_weekends() -> None:
    cal = WorkCalendar(CalendarSettings(holidays="2026-10-01"))
    fri = dt.datetime(2026, 11, 20, 17, 0, tzinfo=TZ)  # Friday 17:00
    assert cal.add(fri, 2) == dt.datetime(2026, 11, 23, 10, 0, tzinfo=TZ)  # Monday 10:00
    noon = dt.datetime(2026, 11, 23, 11, 30, tzinfo=TZ)
    assert cal.add(noon, 1) == dt.datetime(2026, 11, 23, 13, 30, tzinfo=TZ)
    night = dt.datetime(2026, 11, 23, 22, 0, tzinfo=TZ)
    assert cal.deadline(night, 1, "working_days") == dt.datetime(2026, 11, 24, 18, 0, tzinfo=TZ)
    assert cal.deadline(night, 2, "calendar_hours") == dt.datetime(2026, 11, 24, 0, 0, tzinfo=TZ)
    holiday_eve = dt.datetime(2026, 9, 30, 17, 0, tzinfo=TZ)
    assert cal.add(holiday_eve, 2) == dt.datetime(2026, 10, 2, 10, 0, tzinfo=TZ)


def _grid_table():  # type: ignore[no-untyped-def]
    """A 4 x 3 block of 0.004° grids plus an L-shaped one, as the locate index builds them."""
    import shapely

    from gridmap.services.locate import GridTable

    t0 = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    polys = [shapely.box(117 + i * 0.004, 31 + j * 0.004, 117 + (i + 1) * 0.004, 31 + (j + 1) * 0.004)
             for i in range(4) for j in range(3)]  # fmt: skip
    polys.append(shapely.Polygon([(117.016, 31), (117.024, 31), (117.024, 31.012), (117.02, 31.012), (117.02, 31.004), (117.016, 31.004)]))
    rows = [(n + 1, f"3499010010010{n:02d}", f"网格{n}", "general", t0, "349901001001", "社区", "349901001", "街道",
             "349901", "区", shapely.to_wkb(shapely.MultiPolygon([p]))) for n, p in enumerate(polys)]  # fmt: skip
    return GridTable.from_rows(rows), polys


@given(st.floats(117.0, 117.024), st.floats(31.0, 31.012), st.sampled_from([5.0, 30.0, 120.0]))
def test_locate_neighbours_match_a_brute_force_search(lon: float, lat: float, near: float) -> None:
    """Every grid within `near` metres other than the answer is a neighbour, and no other."""
    import numpy as np
    import shapely

    from gridmap.errors import NotFound

    table, _ = _grid_table()
    pt = shapely.Point(lon * table.frame.kx, lat * 110_574.0)
    try:
        answer = table.locate(lon, lat, near)
    except NotFound:
        assert not shapely.intersects(table.geoms, pt).any()
        return
    covering = np.flatnonzero(shapely.intersects(table.geoms, pt))
    k = covering[np.argmin(table.rank[covering])]
    assert answer["grid"]["code"] == table.codes[k]
    d = shapely.distance(table.geoms, pt)
    expected = sorted(str(table.codes[i]) for i in np.flatnonzero(d <= near) if i != k)
    assert sorted(n["code"] for n in answer["neighbours"]) == expected
    assert answer["near_boundary"] == bool(expected)
