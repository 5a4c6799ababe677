"""Times are stored as ISO 8601 UTC text with a Z, which sorts and compares as text."""

from __future__ import annotations

from datetime import datetime, timezone


def to_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def utcnow_iso() -> str:
    return to_iso(datetime.now(timezone.utc))


def from_iso(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
