"""Campaigns, their steps and variants, mailbox pools and enrolments."""

from __future__ import annotations

import json

from .database import Connection, Row

SETTINGS = ("name", "status", "schedule", "use_lead_timezone", "daily_new_leads", "daily_limit",
            "stop_on_reply", "stop_on_auto_reply", "stop_company_on_reply", "html", "mailbox_tag",
            "unsubscribe_footer", "skip_other_campaigns", "launched_at")


def _values(fields: dict) -> dict:
    return {k: (json.dumps(v) if k == "schedule" else v) for k, v in fields.items()}


def insert(conn: Connection, fields: dict, created_by: int | None, now: str) -> int:
    fields = _values({k: v for k, v in fields.items() if k in SETTINGS})
    names = list(fields)
    cur = conn.execute(f"INSERT INTO campaigns ({', '.join(names)}, created_by, created_at, updated_at) "
                       f"VALUES ({', '.join('?' for _ in names)}, ?, ?, ?)",
                       [fields[n] for n in names] + [created_by, now, now])
    return cur.lastrowid


def update(conn: Connection, campaign_id: int, fields: dict, now: str) -> None:
    fields = _values({k: v for k, v in fields.items() if k in SETTINGS})
    if fields:  # column names come from SETTINGS, never from input
        sets = ", ".join(f"{n} = ?" for n in fields)
        conn.execute(f"UPDATE campaigns SET {sets}, updated_at = ? WHERE id = ?",
                     list(fields.values()) + [now, campaign_id])


def set_status(conn: Connection, campaign_id: int, status: str, now: str, *, expect: tuple[str, ...]) -> bool:
    """Conditional: only from one of the expected states, so two racing launches do not both win."""
    marks = ", ".join("?" for _ in expect)
    return conn.execute(f"UPDATE campaigns SET status = ?, updated_at = ?, "
                        f"launched_at = CASE WHEN ? = 'active' THEN coalesce(launched_at, ?) ELSE launched_at END "
                        f"WHERE id = ? AND status IN ({marks})",
                        [status, now, status, now, campaign_id, *expect]).rowcount == 1


def by_id(conn: Connection, campaign_id: int) -> Row | None:
    return conn.execute("SELECT * FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()


def page(conn: Connection, *, status: str | None, after_id: int, limit: int) -> list[Row]:
    return conn.execute("SELECT * FROM campaigns WHERE id > ? AND (? IS NULL OR status = ?) ORDER BY id LIMIT ?",
                        (after_id, status, status, limit)).fetchall()


def delete(conn: Connection, campaign_id: int) -> None:
    conn.execute("DELETE FROM campaigns WHERE id = ?", (campaign_id,))


def replace_steps(conn: Connection, campaign_id: int, steps: list[dict]) -> None:
    conn.execute("DELETE FROM campaign_steps WHERE campaign_id = ?", (campaign_id,))
    for step in steps:
        step_id = conn.execute("INSERT INTO campaign_steps (campaign_id, position, delay_minutes) VALUES (?, ?, ?)",
                               (campaign_id, step["position"], step["delay_minutes"])).lastrowid
        conn.executemany("INSERT INTO step_variants (step_id, label, subject, body, weight) VALUES (?, ?, ?, ?, ?)",
                         [(step_id, v["label"], v["subject"], v["body"], v["weight"]) for v in step["variants"]])


def steps(conn: Connection, campaign_id: int) -> list[dict]:
    rows = conn.execute("SELECT s.id AS step_id, s.position, s.delay_minutes, v.id AS variant_id, v.label, "
                        "v.subject, v.body, v.weight FROM campaign_steps s JOIN step_variants v ON v.step_id = s.id "
                        "WHERE s.campaign_id = ? ORDER BY s.position, v.label", (campaign_id,)).fetchall()
    out: list[dict] = []
    for r in rows:
        if not out or out[-1]["position"] != r["position"]:
            out.append({"id": r["step_id"], "position": r["position"], "delay_minutes": r["delay_minutes"],
                        "variants": []})
        out[-1]["variants"].append({"id": r["variant_id"], "label": r["label"], "subject": r["subject"],
                                    "body": r["body"], "weight": r["weight"]})
    return out


def set_mailboxes(conn: Connection, campaign_id: int, mailbox_ids: list[int]) -> None:
    conn.execute("DELETE FROM campaign_mailboxes WHERE campaign_id = ?", (campaign_id,))
    conn.executemany("INSERT INTO campaign_mailboxes (campaign_id, mailbox_id) VALUES (?, ?)",
                     [(campaign_id, m) for m in mailbox_ids])


def mailbox_ids(conn: Connection, campaign_id: int) -> list[int]:
    return [r[0] for r in conn.execute("SELECT mailbox_id FROM campaign_mailboxes WHERE campaign_id = ? "
                                       "ORDER BY mailbox_id", (campaign_id,))]


def pool(conn: Connection, campaign_id: int, tag: str | None) -> list[Row]:
    """The mailboxes a campaign sends from: the chosen ones, or every mailbox with its tag."""
    if tag:
        return conn.execute("SELECT m.* FROM mailboxes m JOIN mailbox_tags t ON t.mailbox_id = m.id "
                            "WHERE t.tag = ? ORDER BY m.id", (tag,)).fetchall()
    return conn.execute("SELECT m.* FROM mailboxes m JOIN campaign_mailboxes c ON c.mailbox_id = m.id "
                        "WHERE c.campaign_id = ? ORDER BY m.id", (campaign_id,)).fetchall()


def existing_mailbox_ids(conn: Connection, ids: list[int]) -> set[int]:
    if not ids:
        return set()
    marks = ", ".join("?" for _ in ids)
    return {r[0] for r in conn.execute(f"SELECT id FROM mailboxes WHERE id IN ({marks})", ids)}


def enrollment_counts(conn: Connection, campaign_id: int) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) AS n FROM enrollments WHERE campaign_id = ? GROUP BY status",
                        (campaign_id,))
    return {r["status"]: r["n"] for r in rows}


def enrolled_lead_ids(conn: Connection, campaign_id: int, lead_ids: list[int]) -> set[int]:
    marks = ", ".join("?" for _ in lead_ids)
    return {r[0] for r in conn.execute(f"SELECT lead_id FROM enrollments WHERE campaign_id = ? AND lead_id IN ({marks})",
                                       [campaign_id, *lead_ids])}


def leads_active_elsewhere(conn: Connection, campaign_id: int, lead_ids: list[int]) -> set[int]:
    marks = ", ".join("?" for _ in lead_ids)
    return {r[0] for r in conn.execute(
        f"SELECT e.lead_id FROM enrollments e JOIN campaigns c ON c.id = e.campaign_id "
        f"WHERE e.lead_id IN ({marks}) AND e.campaign_id != ? AND e.status = 'active' "
        f"AND c.status IN ('active', 'paused')", [*lead_ids, campaign_id])}


def enroll(conn: Connection, campaign_id: int, lead_ids: list[int], due_at: str | None, now: str) -> int:
    conn.executemany("INSERT OR IGNORE INTO enrollments (campaign_id, lead_id, next_due_at, enrolled_at) "
                     "VALUES (?, ?, ?, ?)", [(campaign_id, lead_id, due_at, now) for lead_id in lead_ids])
    return len(lead_ids)


def schedule_unplanned(conn: Connection, campaign_id: int, due_at: str) -> int:
    """At launch: active enrolments not yet planned become due now."""
    return conn.execute("UPDATE enrollments SET next_due_at = ? WHERE campaign_id = ? AND status = 'active' "
                        "AND next_due_at IS NULL", (due_at, campaign_id)).rowcount


def sample_enrolled_leads(conn: Connection, campaign_id: int, after_id: int, limit: int) -> list[Row]:
    return conn.execute("SELECT l.* FROM enrollments e JOIN leads l ON l.id = e.lead_id "
                        "WHERE e.campaign_id = ? AND e.status = 'active' AND l.id > ? ORDER BY l.id LIMIT ?",
                        (campaign_id, after_id, limit)).fetchall()


def custom_field_names(conn: Connection) -> set[str]:
    """Every custom field name any lead has (template variables may use them)."""
    return {r[0] for r in conn.execute("SELECT DISTINCT j.key FROM leads, json_each(leads.custom) AS j")}


def leads_by_ids(conn: Connection, lead_ids: list[int]) -> list[Row]:
    if not lead_ids:
        return []
    marks = ", ".join("?" for _ in lead_ids)
    return conn.execute(f"SELECT * FROM leads WHERE id IN ({marks})", lead_ids).fetchall()


def lead_ids_with_tag(conn: Connection, tag: str) -> list[int]:
    return [r[0] for r in conn.execute("SELECT lead_id FROM lead_tags WHERE tag = ? ORDER BY lead_id", (tag,))]
