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
