"""Sending windows: "Mon–Fri 09:00–17:00 Europe/Berlin", or always; and local days for caps."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def zone(name: str | None) -> ZoneInfo | timezone:
    if not name:
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def window_zone(schedule: dict, lead_timezone: str | None, use_lead_timezone: bool):
    """The lead's own zone when the campaign says so and the lead has a valid one."""
    if use_lead_timezone and lead_timezone:
        tz = zone(lead_timezone)
        if tz is not timezone.utc or lead_timezone in ("UTC", "Etc/UTC"):
            return tz
    return zone(schedule.get("timezone"))


def _parse(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def next_open(schedule: dict, now: datetime, tz) -> datetime:
    """`now` if the window is open, else the next moment it opens (UTC)."""
    if schedule.get("always", False) or not schedule.get("days"):
        return now
    local = now.astimezone(tz)
    start, end = _parse(schedule["start"]), _parse(schedule["end"])
    for offset in range(8):
        day = (local + timedelta(days=offset)).date()
        if DAYS[day.weekday()] not in schedule["days"]:
            continue
        opens = datetime.combine(day, start, tz)
        closes = datetime.combine(day, end, tz)
        if offset == 0 and opens <= local < closes:
            return now
        if local < opens:
            return opens.astimezone(timezone.utc)
    return now + timedelta(days=7)  # unreachable with at least one day listed


def is_open(schedule: dict, now: datetime, tz) -> bool:
    return next_open(schedule, now, tz) == now


def day_start(now: datetime, tz) -> datetime:
    """Local midnight of `now`'s day in `tz`, as UTC: daily caps count from here."""
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tz).astimezone(timezone.utc)


def next_day_start(now: datetime, tz) -> datetime:
    local = now.astimezone(tz)
    return datetime.combine(local.date() + timedelta(days=1), time(0), tz).astimezone(timezone.utc)
