"""The unified inbox: every reply, bounce, auto-reply, complaint and unsubscribe mail across all
mailboxes, the conversation with each lead, read state, and lead labels.

Who may do what: everyone signed in reads the inbox and marks messages read or unread (the
state is shared by the team, and opening a message in the UI marks it read for anyone);
members and above respond (inbox_reply.py) and label leads (inbox_labels.py). Reading never
changes state: the API marks read only on an explicit PATCH.
"""

from __future__ import annotations

import json

from ..db import Database, inbox_repo
from . import html_safety
from .authz import Principal
from .errors import Conflict, NotFound, ValidationError
from .ids import is_id
from .inbox_labels import LABEL_NAME
from .lead_input import STATUSES as LEAD_STATUSES

KINDS = ("reply", "bounce", "auto_reply", "complaint", "unsubscribe", "other")
UNREAD_CAP = 1000
THREAD_LIMIT = 100
MAX_Q = 200
CHOICES = 500


# -- how a message is described --------------------------------------------------------------------

def classification(kind: str, details: dict) -> str:
    """The classification in a few words, as the list and the thread show it."""
    if kind == "bounce":
        words = ["bounce"]
        if details.get("status"):
            words.append(str(details["status"]))
        if details.get("hard") is not None:
            words.append("(hard)" if details["hard"] else "(soft)")
        return " ".join(words)
    return {"reply": "reply", "auto_reply": "auto-reply", "complaint": "spam complaint",
            "unsubscribe": "unsubscribe request", "other": "other", "sent": "sent from MailFlow"}.get(kind, kind)


def _details(row) -> dict:
    try:
        value = json.loads(row["details"] or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _lead(row) -> dict | None:
    if row["lead_id"] is None:
        return None
    name = " ".join(p for p in (row["lead_first_name"], row["lead_last_name"]) if p)
    return {"id": row["lead_id"], "email": row["lead_email"], "name": name, "company": row["lead_company"],
            "status": row["lead_status"], "label": row["lead_label"]}


def public(row) -> dict:
    details = _details(row)
    return {
        "id": row["id"], "direction": row["direction"], "kind": row["kind"],
        "classification": classification(row["kind"], details), "unread": bool(row["unread"]),
        "received_at": row["received_at"], "from_address": row["from_address"], "from_name": row["from_name"],
        "to_address": row["to_address"], "subject": row["subject"], "snippet": row["snippet"],
        "mailbox_id": row["mailbox_id"], "mailbox_email": row["mailbox_email"], "lead_id": row["lead_id"],
        "lead": _lead(row), "campaign_id": row["campaign_id"], "campaign_name": row["campaign_name"],
        "message_id": row["message_id"], "truncated": bool(row["truncated"]), "details": details,
    }


def detail(row, *, images: bool = False) -> dict:
    """A message with its bodies: the text, the HTML as received, and the HTML sanitised
    (remote images left out unless `images`)."""
    body = public(row)
    safe = html_safety.sanitize_html(row["body_html"], images=images)
    body.update({
        "header_message_id": row["header_message_id"], "in_reply_to": row["in_reply_to"], "folder": row["folder"],
        "body_text": row["body_text"], "body_html": row["body_html"], "body_html_safe": safe.html,
        "blocked_images": safe.blocked_images, "blocked_image_hosts": list(safe.blocked_hosts),
        "sent_by": row["sent_by_email"] if row["sent_by"] is not None else None,
    })
    return body


def safe_body(message: dict) -> str:
    """What the page shows as the body: the sanitised HTML when there is HTML, else the text
    escaped and linkified."""
    return message["body_html_safe"] or html_safety.text_to_html(message["body_text"])


# -- reading ---------------------------------------------------------------------------------------

def _int_or_none(name: str, value, problems: dict) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not is_id(value):  # also keeps numbers past 64 bits from overflowing in the database
        problems[name] = "Expected a whole number."
        return None
    return value


def filters(*, campaign_id=None, mailbox_id=None, lead_id=None, lead_status=None, label=None, kind=None,
            unread=None, q=None) -> dict:
    """The list filters, checked (shared by the API and the page)."""
    problems: dict[str, str] = {}
    chosen = {name: _int_or_none(name, value, problems) for name, value in
              (("campaign_id", campaign_id), ("mailbox_id", mailbox_id), ("lead_id", lead_id))}
    lead_status = (lead_status or "").strip().lower() or None
    if lead_status and lead_status not in LEAD_STATUSES:
        problems["lead_status"] = f"Choose one of: {', '.join(LEAD_STATUSES)}."
    label = (label or "").strip().lower() or None
    if label and not LABEL_NAME.fullmatch(label):
        problems["label"] = "A label is 1 to 40 lower-case letters, digits, spaces, _ or -."
    kind = (kind or "").strip().lower() or None
    if kind and kind not in KINDS:
        problems["kind"] = f"Choose one of: {', '.join(KINDS)}."
    if isinstance(unread, str):
        unread = {"": None, "true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(
            unread.strip().lower(), "bad")
    if unread not in (None, True, False):
        problems["unread"] = "Expected true or false."
    q = (q or "").strip() or None
    if q and len(q) > MAX_Q:
        problems["q"] = f"Use at most {MAX_Q} characters."
    if problems:
        raise ValidationError(problems, "Some filters need attention.")
    return {**chosen, "lead_status": lead_status, "label": label, "kind": kind, "unread": unread, "q": q}


def search(db: Database, *, cursor: int | None = None, limit: int = 50, **given) -> list[dict]:
    """Inbound messages newest first; `cursor` is the id of the last one of the previous page."""
    rows = inbox_repo.search(db.connection(), **filters(**given), before_id=cursor or None, limit=limit)
    return [public(r) for r in rows]


def _row(conn, inbox_id: int):
    row = inbox_repo.by_id(conn, inbox_id)
    if row is None:
        raise NotFound("No such message.")
    return row


def _step_item(step) -> dict:
    return {"type": "step", "id": step["id"], "at": step["sent_at"], "subject": step["subject"] or "",
            "step": step["step"], "variant": step["variant"], "campaign_id": step["campaign_id"],
            "campaign_name": step["campaign_name"], "mailbox_id": step["mailbox_id"],
            "mailbox_email": step["mailbox_email"], "to_address": step["to_email"], "header_message_id":
            step["message_id"]}


def _message_item(row, images: bool) -> dict:
    return {"type": row["direction"], "at": row["received_at"], **detail(row, images=images)}


def thread(db: Database, inbox_id: int, *, images_for: int | None = None) -> list[dict]:
    """The conversation the message belongs to, oldest first: our steps to the lead (type
    "step"), their mail ("in") and replies written here ("out"). Mail that names no lead
    stands alone, with the step it answers if known."""
    conn = db.connection()
    row = _row(conn, inbox_id)
    if row["lead_id"] is None:
        items = [_message_item(row, images_for == row["id"])]
        step = inbox_repo.step_by_id(conn, row["message_id"]) if row["message_id"] else None
        return ([_step_item(step)] if step else []) + items
    items = [_step_item(s) for s in inbox_repo.thread_steps(conn, row["lead_id"], THREAD_LIMIT)]
    messages = inbox_repo.thread_messages(conn, row["lead_id"], THREAD_LIMIT)
    if all(m["id"] != row["id"] for m in messages):  # older than the window: still shown, in its place
        messages.append(row)
    items += [_message_item(m, images_for == m["id"]) for m in messages]
    items.sort(key=lambda item: (item["at"] or "", item["type"] != "step", item["id"]))
    return items


def get(db: Database, inbox_id: int, *, images: bool = False) -> dict:
    """One message with its thread. Changes nothing (marking read is explicit)."""
    body = detail(_row(db.connection(), inbox_id), images=images)
    body["thread"] = thread(db, inbox_id, images_for=inbox_id if images else None)
    return body


def open_message(db: Database, principal: Principal, inbox_id: int) -> dict:
    """A person opens a message in the UI: mail that came in is marked read, then shown."""
    principal.require("viewer", "write")
    with db.transaction() as conn:
        if _row(conn, inbox_id)["direction"] == "in":
            inbox_repo.set_unread(conn, inbox_id, False)
    return get(db, inbox_id)


def set_unread(db: Database, principal: Principal, inbox_id: int, unread) -> dict:
    principal.require("viewer", "write")
    if not isinstance(unread, bool):
        raise ValidationError({"unread": "Expected true or false."})
    with db.transaction() as conn:
        row = _row(conn, inbox_id)
        if row["direction"] != "in":
            raise Conflict("Only mail that came in has a read state.", code="not_inbound")
        inbox_repo.set_unread(conn, inbox_id, unread)
    return public(_row(db.connection(), inbox_id))


def unread_count(db: Database) -> int:
    return inbox_repo.unread_count(db.connection(), UNREAD_CAP)


# -- filter menus ----------------------------------------------------------------------------------

def mailbox_choices(db: Database) -> list[dict]:
    return [{"id": r["id"], "email": r["email"]} for r in inbox_repo.mailbox_choices(db.connection(), CHOICES)]
