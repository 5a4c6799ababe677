"""Outbound messages as people and integrations see them: the list with filters, the queue of
upcoming sends, per-campaign numbers, and settling a send whose fate is unknown.

`uncertain` means a send was interrupted and the Sent folder could not prove either way
whether it went (see reconcile.py). The engine never resends such a message by itself; a
person decides: it went (recorded as sent, the lead's sequence moves on), or it did not
(planned again now, with the same Message-ID).
"""

from __future__ import annotations

from datetime import datetime, timezone

from ..db import Database, campaigns_repo, message_views_repo, messages_repo
from ..db.timefmt import to_iso
from . import audit, compose, reconcile
from .authz import Principal
from .errors import Conflict, NotFound, ValidationError
from .ids import is_id

STATUSES = ("planned", "sending", "sent", "failed", "uncertain", "cancelled")
DONE_STATUSES = ("sending", "sent", "failed", "uncertain", "cancelled")  # off the queue
MESSAGE_COUNTS = ("planned", "sending", "sent", "failed", "cancelled", "uncertain")
EVENT_KINDS = ("replied", "bounced", "auto_replied", "unsubscribed", "complained")
RATES = {"reply_rate": "replied", "bounce_rate": "bounced", "auto_reply_rate": "auto_replied",
         "unsubscribe_rate": "unsubscribed", "complaint_rate": "complained"}
QUEUE_MAILBOXES = 500
CAMPAIGN_CHOICES = 500

PUBLIC_FIELDS = ("id", "campaign_id", "campaign_name", "lead_id", "to_email", "mailbox_id", "mailbox_email", "step",
                 "variant", "status", "message_id", "subject", "planned_at", "claimed_at", "sent_at", "attempts",
                 "smtp_code", "last_error", "created_at")
QUEUE_FIELDS = ("id", "campaign_id", "campaign_name", "campaign_status", "lead_id", "to_email", "mailbox_id",
                "mailbox_email", "mailbox_status", "step", "planned_at", "attempts", "last_error")


def public(row) -> dict:
    return {name: row[name] for name in PUBLIC_FIELDS}


def _statuses(status) -> tuple[str, ...] | None:
    if status is None or status == "":
        return None
    wanted = (status,) if isinstance(status, str) else tuple(status)
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise ValidationError({"status": f"Choose one of: {', '.join(STATUSES)}."})
    return wanted


def search(db: Database, *, campaign_id: int | None = None, lead_id: int | None = None,
           status: str | tuple[str, ...] | None = None, mailbox_id: int | None = None, retrying: bool = False,
           cursor: int | None = None, limit: int = 50) -> list[dict]:
    """Messages newest first; `cursor` is the id of the last one of the previous page.
    `status` is one status or several; `retrying` keeps those with an attempt behind them."""
    rows = message_views_repo.search(db.connection(), campaign_id=campaign_id, lead_id=lead_id,
                                     statuses=_statuses(status), mailbox_id=mailbox_id, retrying=retrying,
                                     before_id=cursor or None, limit=limit)
    return [public(r) for r in rows]


def get(db: Database, message_id: int) -> dict:
    conn = db.connection()
    row = message_views_repo.by_id(conn, message_id)
    if row is None:
        raise NotFound("No such message.")
    body = public(row)
    body["events"] = [{"kind": e["kind"], "at": e["created_at"]}
                      for e in message_views_repo.message_events(conn, message_id)]
    return body


# -- the queue -----------------------------------------------------------------------------------

def _queue_item(row) -> dict:
    item = {name: row[name] for name in QUEUE_FIELDS}
    # what stands between this message and the wire right now, if anything
    if row["mailbox_id"] is None:
        item["held_by"] = "no_mailbox"
    elif row["campaign_status"] != "active":
        item["held_by"] = "campaign_" + row["campaign_status"]
    elif row["mailbox_status"] != "active" or not row["sending_enabled"]:
        item["held_by"] = "mailbox_" + (row["mailbox_status"] if row["mailbox_status"] != "active" else "off")
    else:
        item["held_by"] = None
    return item


def queue_cursor(item: dict) -> str:
    return f"{item['planned_at']}~{item['id']}"


def parse_queue_cursor(text: str | None) -> tuple[str, int] | None:
    if not text:
        return None
    planned_at, _, ident = text.rpartition("~")
    if not planned_at or not (ident.isascii() and ident.isdigit()) or len(planned_at) != 20 \
            or not is_id(int(ident)):
        raise ValidationError({"cursor": "Invalid cursor."})
    return planned_at, int(ident)


def queue(db: Database, mailbox_id: int | None = None, limit: int = 50, cursor: str | None = None) -> list[dict]:
    """Upcoming sends in the order they are due (planned_at, then id), with the sending
    mailbox and why a message is held, if it is (campaign paused, mailbox paused or failing)."""
    rows = message_views_repo.queue(db.connection(), mailbox_id=mailbox_id, after=parse_queue_cursor(cursor),
                                    limit=limit)
    return [_queue_item(r) for r in rows]


def queue_by_mailbox(db: Database, limit: int = QUEUE_MAILBOXES) -> list[dict]:
    """Each mailbox with planned messages: how many, when the next and the last are due, and
    the earliest moment its pacing lets the next one go."""
    return [{"mailbox_id": r["mailbox_id"], "mailbox_email": r["mailbox_email"], "mailbox_status": r["mailbox_status"],
             "sending_enabled": bool(r["sending_enabled"]) if r["sending_enabled"] is not None else None,
             "planned": r["planned"], "next_planned_at": r["next_planned_at"], "last_planned_at": r["last_planned_at"],
             "next_allowed_at": r["next_allowed_at"], "last_sent_at": r["last_sent_at"]}
            for r in message_views_repo.queue_by_mailbox(db.connection(), limit)]


# -- per-campaign numbers ------------------------------------------------------------------------

def _blank() -> dict:
    return {name: 0 for name in (*MESSAGE_COUNTS, *EVENT_KINDS)}


def _with_rates(counts: dict) -> dict:
    sent = counts["sent"]
    for rate, kind in RATES.items():
        counts[rate] = round(counts[kind] / sent, 4) if sent else None
    return counts


def stats(db: Database, campaign_id: int) -> dict:
    """Totals, and per step (0-based, as in the campaign's `steps`) and per variant: messages by
    status and leads by what happened after (replied, bounced, ...), with rates over sent.

    Event numbers count leads: a lead who replied twice to a step counts once there, and once
    in the totals however many steps it answered. A message gets its variant when it is
    composed, so planned messages (and those that failed before composing) sit under
    variant null."""
    conn = db.connection()
    campaign = campaigns_repo.by_id(conn, campaign_id)
    if campaign is None:
        raise NotFound("No such campaign.")
    defined = campaigns_repo.steps(conn, campaign_id)
    cells: dict[tuple[int, str | None], dict] = {}
    for step in defined:
        for v in step["variants"]:
            cells[(step["position"], v["label"])] = _blank()
    totals = _blank()
    for r in message_views_repo.message_counts(conn, campaign_id):
        cells.setdefault((r["step"], r["variant"]), _blank())[r["status"]] += r["n"]
        totals[r["status"]] += r["n"]
    for r in message_views_repo.event_counts(conn, campaign_id, EVENT_KINDS):
        if r["step"] is not None:
            cells.setdefault((r["step"], r["variant"]), _blank())[r["kind"]] += r["n"]
    totals.update(message_views_repo.event_totals(conn, campaign_id, EVENT_KINDS))
    steps: dict[int, dict] = {}
    for (position, label), counts in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or "")):
        step = steps.setdefault(position, {"step": position, **_blank(), "variants": []})
        for name in counts:
            step[name] += counts[name]
        step["variants"].append({"variant": label, **_with_rates(counts)})
    for step in steps.values():
        _with_rates(step)
        step["variants"] = step.pop("variants")  # after the step's own numbers
    enrolled = campaigns_repo.enrollment_counts(conn, campaign_id)
    leads = {"enrolled": sum(enrolled.values()), **{k: enrolled.get(k, 0) for k in ("active", "completed", "stopped")}}
    return {"campaign_id": campaign_id, "leads": leads, "totals": _with_rates(totals),
            "steps": [steps[p] for p in sorted(steps)]}


def campaign_choices(db: Database, limit: int = CAMPAIGN_CHOICES) -> list[dict]:
    return [{"id": r["id"], "name": r["name"], "status": r["status"]}
            for r in message_views_repo.campaign_choices(db.connection(), limit)]


# -- a person settles an uncertain send -----------------------------------------------------------

def _variant_it_had(conn, m) -> str | None:
    """The variant the composer picked: the choice is seeded per lead, campaign and step (see
    compose.rng_for), so it is the same now unless the step's variants were edited since."""
    steps = campaigns_repo.steps(conn, m["campaign_id"])
    if m["step"] >= len(steps) or not steps[m["step"]]["variants"]:
        return None
    rng = compose.rng_for(m["lead_id"], m["campaign_id"], m["step"])
    return compose.pick_variant(steps[m["step"]]["variants"], rng)["label"]


def resolve_uncertain(db: Database, principal: Principal, message_id: int, sent: bool) -> dict:
    """sent=True: it went; recorded as sent at the time it was claimed and the lead's sequence
    moves on. sent=False: it did not; planned again now (same Message-ID). 409 unless the
    message is uncertain. Audited as `message.resolved`."""
    principal.require("member", "write")
    if not isinstance(sent, bool):
        raise ValidationError({"sent": "Expected true (it was sent) or false (send it again)."})
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        m = messages_repo.by_id(conn, message_id)
        if m is None:
            raise NotFound("No such message.")
        if m["status"] != "uncertain":
            raise Conflict(f"The message is {m['status']}; only an uncertain message can be resolved.",
                           code="not_uncertain", details={"status": m["status"]})
        who = principal.actor().label
        if sent:
            reconcile.settle(db, m, found=True, server_files_sent=False)  # joins this transaction
            variant = m["variant"] or _variant_it_had(conn, m)
            if variant:
                message_views_repo.fill_variant(conn, message_id, variant)
            messages_repo.mark_contacted(conn, m["lead_id"], to_iso(now))
            message_views_repo.annotate(conn, message_id, f"interrupted while sending; marked as sent by {who}")
        else:
            note = f"interrupted while sending; {who} decided it did not go: sending again"
            messages_repo.set_status(conn, message_id, "planned", expect="uncertain", planned_at=to_iso(now),
                                     last_error=note)
        audit.record(conn, principal.actor(), "message.resolved", target_type="message", target_id=message_id,
                     metadata={"sent": sent, "campaign_id": m["campaign_id"], "lead_id": m["lead_id"],
                               "step": m["step"], "message_id": m["message_id"]})
    return get(db, message_id)
