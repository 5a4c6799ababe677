"""Settings rows: name -> text value."""

from __future__ import annotations

from .database import Connection
from .timefmt import utcnow_iso


def get(conn: Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
    return None if row is None else row["value"]


def put(conn: Connection, name: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (name, value, utcnow_iso()))
