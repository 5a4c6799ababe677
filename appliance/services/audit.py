"""The audit log: who did what, from where, written in the same transaction as the change.

Rows are hash-chained (each carries the SHA-256 of its content and the previous row's hash)
and the table refuses UPDATE and DELETE; `verify()` walks the chain and names the first
row that was edited, removed or inserted out of band.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

from ..db import Database
from ..db import audit_repo
from ..db.database import Connection, Row
from ..db.timefmt import utcnow_iso


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, an API key (on behalf of its user), the system, or nobody yet."""

    type: str  # user | api_key | system | anonymous
    id: int | None
    label: str
    ip: str | None = None

    @classmethod
    def system(cls, label: str = "system") -> "Actor":
        return cls("system", None, label)

    @classmethod
    def anonymous(cls, ip: str | None, label: str = "anonymous") -> "Actor":
        return cls("anonymous", None, label, ip)


def entry_hash(prev_hash: str, entry: dict) -> str:
    content = [entry[c] for c in audit_repo.COLUMNS[:-2]]
    canonical = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev_hash}|{canonical}".encode()).hexdigest()


def record(conn: Connection, actor: Actor, action: str, *, target_type: str | None = None,
           target_id: object = None, metadata: dict | None = None) -> int:
    """Append one entry. Call inside the transaction of the change it records (BEGIN IMMEDIATE
    holds the write lock, so reading the last hash and appending cannot interleave)."""
    if not conn.in_transaction:
        raise RuntimeError("audit.record must run inside the transaction of the change it records")
    entry = {
        "at": utcnow_iso(), "actor_type": actor.type, "actor_id": actor.id, "actor_label": actor.label,
        "ip": actor.ip, "action": action, "target_type": target_type,
        "target_id": None if target_id is None else str(target_id),
        "metadata": json.dumps(metadata or {}, separators=(",", ":"), sort_keys=True, default=str),
    }
    entry["prev_hash"] = audit_repo.last_hash(conn)
    entry["hash"] = entry_hash(entry["prev_hash"], entry)
    return audit_repo.insert(conn, entry)


def record_now(db: Database, actor: Actor, action: str, **kw) -> int:
    """An entry for an event that changes nothing else (e.g. a failed login)."""
    with db.transaction() as conn:
        return record(conn, actor, action, **kw)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    problem: str | None = None


def verify(db: Database) -> VerifyResult:
    prev = audit_repo.GENESIS
    expected_id = None
    checked = 0
    for row in audit_repo.all_in_order(db.connection()):
        entry = dict(row)
        if expected_id is not None and row["id"] != expected_id:
            return VerifyResult(False, checked, f"entries {expected_id}..{row['id'] - 1} are missing")
        if row["prev_hash"] != prev:
            return VerifyResult(False, checked, f"entry {row['id']} does not follow the entry before it "
                                                "(an entry was removed or inserted)")
        if entry_hash(prev, entry) != row["hash"]:
            return VerifyResult(False, checked, f"entry {row['id']} was modified after it was written")
        prev = row["hash"]
        expected_id = row["id"] + 1
        checked += 1
    return VerifyResult(True, checked)


def to_dict(row: Row) -> dict:
    return {
        "id": row["id"], "at": row["at"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"], "label": row["actor_label"]},
        "ip": row["ip"], "action": row["action"],
        "target": {"type": row["target_type"], "id": row["target_id"]} if row["target_type"] else None,
        "metadata": json.loads(row["metadata"]),
    }


def search(db: Database, *, limit: int = 50, **filters) -> list[dict]:
    return [to_dict(r) for r in audit_repo.search(db.connection(), limit=limit, **filters)]


def csv_safe(value: object) -> str:
    """Spreadsheet-formula escaping (CSV injection): a cell starting with = + - @ or a control
    character is prefixed with a quote so a spreadsheet shows it as text instead of running it."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(entries: Iterable[dict]) -> Iterable[list[str]]:
    yield ["id", "at", "actor_type", "actor", "ip", "action", "target_type", "target_id", "metadata"]
    for e in entries:
        target = e["target"] or {}
        yield [csv_safe(v) for v in (e["id"], e["at"], e["actor"]["type"], e["actor"]["label"], e["ip"],
                                     e["action"], target.get("type"), target.get("id"),
                                     json.dumps(e["metadata"], sort_keys=True))]
