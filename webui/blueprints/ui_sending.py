"""Pages: Sending (the queue of upcoming sends per mailbox, messages sent with their status,
and problems: failures with their reasons and uncertain sends for a person to settle).

Two partials of other pages read through template globals registered here, so their views
need not change: the campaign page's numbers (`campaign_stats`) and a mailbox's next sends
(`upcoming_sends`).
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, get_flashed_messages, redirect, render_template, request, url_for

from appliance.services import messages
from appliance.services.errors import Conflict, NotFound, ValidationError
from appliance.services.ids import id_from_text

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_sending", __name__, url_prefix="/sending")
PAGE = 50
PROBLEM_LIST = 100
UPCOMING = 10
SENT_STATUSES = ("sent", "failed", "uncertain", "cancelled", "sending")
HELD_BY = {"no_mailbox": "its mailbox was deleted", "campaign_paused": "campaign paused",
           "campaign_draft": "campaign not launched", "campaign_completed": "campaign completed",
           "mailbox_paused": "mailbox paused", "mailbox_error": "mailbox failing", "mailbox_off": "mailbox sending off"}


def id_arg(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    found = id_from_text(value)
    if found is None:
        abort(400)
    return found


def page_of(rows: list[dict]) -> tuple[list[dict], int | None]:
    """The first PAGE rows of PAGE + 1 fetched, and the cursor of the next page if there is one."""
    items = rows[:PAGE]
    return items, (items[-1]["id"] if len(rows) > PAGE else None)


def render(tab: str, **context):
    flashed = get_flashed_messages(with_categories=True)
    return render_template("sending.html", tab=tab, held_by=HELD_BY, flashed=flashed,
                           can_resolve=current().has_role("member"), **context)


@bp.get("")
@require("viewer")
def queue():
    db = appliance().db
    mailbox_id = id_arg("mailbox_id")
    cursor = request.args.get("cursor") or None
    try:
        rows = messages.queue(db, mailbox_id=mailbox_id, limit=PAGE + 1, cursor=cursor)
    except ValidationError:
        abort(400)
    items = rows[:PAGE]
    next_cursor = messages.queue_cursor(items[-1]) if len(rows) > PAGE else None
    return render("queue", mailboxes=messages.queue_by_mailbox(db), items=items, mailbox_id=mailbox_id,
                  next_cursor=next_cursor, paged=bool(cursor))


@bp.get("/sent")
@require("viewer")
def sent():
    db = appliance().db
    campaign_id, cursor = id_arg("campaign_id"), id_arg("cursor")
    status = request.args.get("status") or None
    if status not in (None, *SENT_STATUSES):
        abort(400)
    rows = messages.search(db, campaign_id=campaign_id, status=status or SENT_STATUSES, cursor=cursor,
                           limit=PAGE + 1)
    items, next_cursor = page_of(rows)
    return render("sent", items=items, campaign_id=campaign_id, status=status, statuses=SENT_STATUSES,
                  campaigns=messages.campaign_choices(db), next_cursor=next_cursor, paged=bool(cursor))


@bp.get("/problems")
@require("viewer")
def problems():
    db = appliance().db
    campaign_id, cursor = id_arg("campaign_id"), id_arg("cursor")
    failed, next_cursor = page_of(messages.search(db, campaign_id=campaign_id, status="failed", cursor=cursor,
                                                  limit=PAGE + 1))
    return render("problems", campaign_id=campaign_id, campaigns=messages.campaign_choices(db),
                  uncertain=messages.search(db, campaign_id=campaign_id, status="uncertain", limit=PROBLEM_LIST),
                  retrying=messages.search(db, campaign_id=campaign_id, status="planned", retrying=True,
                                           limit=PROBLEM_LIST),
                  failed=failed, next_cursor=next_cursor, paged=bool(cursor))


@bp.post("/messages/<int:message_id>/resolve")
@require("member")
def resolve(message_id: int):
    choice = request.form.get("sent")
    if choice not in ("yes", "no"):
        abort(400)
    campaign_id = request.form.get("campaign_id", "")
    back = url_for("ui_sending.problems", campaign_id=id_from_text(campaign_id),
                   _anchor="uncertain")
    try:
        done = messages.resolve_uncertain(appliance().db, current(), message_id, choice == "yes")
    except (Conflict, NotFound) as exc:
        flash(exc.message, "error")
        return redirect(back)
    if choice == "yes":
        flash(f"Recorded as sent to {done['to_email']}: the lead's sequence moves on.", "ok")
    else:
        flash(f"Planned again: the message to {done['to_email']} goes out with the next sends.", "ok")
    return redirect(back)


# -- partials of other pages -------------------------------------------------------------------------

@bp.app_template_global("campaign_stats")
def campaign_stats(campaign_id: int) -> dict:
    return messages.stats(appliance().db, campaign_id)


@bp.app_template_global("upcoming_sends")
def upcoming_sends(mailbox_id: int, limit: int = UPCOMING) -> list[dict]:
    return messages.queue(appliance().db, mailbox_id=mailbox_id, limit=limit)
