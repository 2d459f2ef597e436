"""The working calendar that case deadlines run on (working hours, working days, holidays)."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from zoneinfo import ZoneInfo

from pydantic_settings import BaseSettings, SettingsConfigDict


class CalendarSettings(BaseSettings):
    """Working periods each working day, and holidays / make-up working days (调休)."""

    model_config = SettingsConfigDict(env_prefix="GRIDMAP_CAL_", extra="ignore")

    timezone: str = "Asia/Shanghai"
    periods: str = "09:00-12:00,13:00-18:00"
    workdays: str = "0,1,2,3,4"  # Monday = 0
    holidays: str = ""  # comma-separated dates that are days off although weekdays
    extra_workdays: str = ""  # comma-separated weekend dates that are working days


class WorkCalendar:
    """Add working time to an instant and measure working time between instants."""

    def __init__(self, settings: CalendarSettings | None = None) -> None:
        s = settings or CalendarSettings()
        self.tz = ZoneInfo(s.timezone)
        self.periods = [
            tuple(dt.time.fromisoformat(x) for x in p.split("-")) for p in s.periods.split(",") if p.strip()
        ]
        self.workdays = {int(x) for x in s.workdays.split(",") if x.strip()}
        self.holidays = {dt.date.fromisoformat(x.strip()) for x in s.holidays.split(",") if x.strip()}
        self.extra = {dt.date.fromisoformat(x.strip()) for x in s.extra_workdays.split(",") if x.strip()}
        self.day_hours = sum(
            (dt.datetime.combine(dt.date.min, b) - dt.datetime.combine(dt.date.min, a)).total_seconds() / 3600
            for a, b in self.periods
        )

    def is_workday(self, day: dt.date) -> bool:
        if day in self.extra:
            return True
        return day.weekday() in self.workdays and day not in self.holidays

    def add(self, start: dt.datetime, hours: float) -> dt.datetime:
        """The instant `hours` of working time after `start` (aware datetimes)."""
        remaining = dt.timedelta(hours=hours)
        local = start.astimezone(self.tz)
        day = local.date()
        for _ in range(3660):  # ten years of days bounds the loop whatever the input
            if self.is_workday(day):
                for a, b in self.periods:
                    pa = dt.datetime.combine(day, a, self.tz)
                    pb = dt.datetime.combine(day, b, self.tz)
                    begin = max(pa, local)
                    if begin >= pb:
                        continue
                    if begin + remaining <= pb:
                        return (begin + remaining).astimezone(start.tzinfo)
                    remaining -= pb - begin
            day += dt.timedelta(days=1)
            local = dt.datetime.combine(day, dt.time.min, self.tz)
        raise ValueError("time limit too long for the working calendar")

    def deadline(self, start: dt.datetime, limit: float, unit: str) -> dt.datetime:
        """Deadline for a time limit given in working hours, working days or calendar hours."""
        if unit == "calendar_hours":
            return start + dt.timedelta(hours=limit)
        if unit == "working_days":
            return self.add(start, limit * self.day_hours)
        return self.add(start, limit)


@lru_cache
def calendar() -> WorkCalendar:
    return WorkCalendar()
