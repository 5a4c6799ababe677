"""Pages: Inbox (every reply, bounce and auto-reply across all mailboxes, with filters), the
conversation with a lead (our steps and their mail in order, sanitised), responding, labels.

Inbound HTML is shown sanitised and without remote images, inside the page's strict CSP.
"Show images" is a per-message choice: the page then frames /inbox/<id>/frame, a document
served with its own narrow CSP (images from http(s) only, nothing else, sandboxed: no script,
an opaque origin) and no referrer, so a hostile message still runs nothing and reads nothing.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, get_flashed_messages, redirect, render_template, request, url_for

from appliance.services import inbox, inbox_labels, inbox_reply, messages
from appliance.services.errors import ServiceError, ValidationError
from appliance.services.lead_input import STATUSES

from ..auth import current, require
from ..context import appliance

bp = Blueprint("ui_inbox", __name__, url_prefix="/inbox")
PAGE = 50
FILTERS = ("campaign_id", "mailbox_id", "lead_id", "lead_status", "label", "kind", "unread", "q")
# The framed message with its images: its own policy instead of the app's (see the docstring).
FRAME_POLICY = {
    "default-src": "'none'",
    "img-src": "http: https:",
    "style-src": "'none'",
    "frame-ancestors": "'self'",
    "base-uri": "'none'",
    "form-action": "'none'",
    "sandbox": "allow-popups allow-popups-to-escape-sandbox",
}


def _own_headers(**options):
    """Per-view header options, read by the app's header middleware (Talisman)."""
    def decorate(view):
        view.talisman_view_options = options
        return view
    return decorate


@bp.app_template_global("inbox_unread")
def inbox_unread() -> str:
    count = inbox.unread_count(appliance().db)
    return f"{count - 1}+" if count >= inbox.UNREAD_CAP else str(count) if count else ""


def _choices() -> dict:
    db = appliance().db
    return {"campaigns": messages.campaign_choices(db), "mailboxes": inbox.mailbox_choices(db),
            "labels": inbox_labels.labels(db), "statuses": STATUSES, "kinds": inbox.KINDS}


@bp.get("")
@require("viewer")
def index():
    args = {name: request.args.get(name, "").strip() or None for name in FILTERS}
    cursor = request.args.get("cursor", type=int) or 0
    try:
        items = inbox.search(appliance().db, cursor=cursor, limit=PAGE, **args)
    except ValidationError as exc:
        return render_template("inbox.html", items=[], args=args, errors=exc.fields, next_cursor=None,
                               cursor=0, active={}, **_choices()), 400
    next_cursor = items[-1]["id"] if len(items) == PAGE else None
    return render_template("inbox.html", items=items, args=args, errors={}, next_cursor=next_cursor,
                           cursor=cursor, active={k: v for k, v in args.items() if v}, **_choices())


def _render_thread(message: dict, *, draft: str = "", error: str | None = None, status: int = 200):
    me = current()
    return render_template("inbox_thread.html", message=message, draft=draft, error=error,
                           images=request.args.get("images") == "1", safe_body=inbox.safe_body,
                           labels=inbox_labels.labels(appliance().db),
                           flashed=get_flashed_messages(with_categories=True), can_respond=me.has_role("member"),
                           can_label=me.has_role("member")), status


@bp.get("/<int:inbox_id>")
@require("viewer")
def thread(inbox_id: int):
    """Opening a message marks it read (for the whole team)."""
    return _render_thread(inbox.open_message(appliance().db, current(), inbox_id))


@bp.get("/<int:inbox_id>/frame")
@require("viewer")
@_own_headers(content_security_policy=FRAME_POLICY, frame_options="SAMEORIGIN")
def frame(inbox_id: int):
    message = inbox.get(appliance().db, inbox_id, images=True)
    return render_template("inbox_frame.html", body=inbox.safe_body(message))


@bp.post("/<int:inbox_id>/respond")
@require("member")
def respond(inbox_id: int):
    app = appliance()
    draft = request.form.get("body", "")
    try:
        reply = inbox_reply.respond(app.db, app.keys, current(), inbox_id, {"body": draft})
    except ServiceError as exc:
        if exc.status in (401, 403, 404):
            raise
        # whatever went wrong, the text stays in the form
        return _render_thread(inbox.get(app.db, inbox_id), draft=draft, error=exc.message, status=exc.status)
    note = {"saved": " and saved to Sent", "failed": "; the copy to Sent failed"}.get(reply["sent_copy"], "")
    flash(f"Reply sent to {reply['to_address']}{note}.", "ok")
    return redirect(url_for("ui_inbox.thread", inbox_id=inbox_id, _anchor=f"m-{reply['id']}"))


@bp.post("/<int:inbox_id>/label")
@require("member")
def label(inbox_id: int):
    lead_id = request.form.get("lead_id", type=int)
    if not lead_id:
        abort(400)
    try:
        done = inbox_labels.set_lead_label(appliance().db, current(), lead_id, request.form.get("label") or None)
    except ValidationError as exc:
        flash(next(iter(exc.fields.values()), exc.message), "error")
    else:
        flash(f"Label: {done['label'].replace('_', ' ')}." if done["label"] else "Label removed.", "ok")
    return redirect(url_for("ui_inbox.thread", inbox_id=inbox_id))


@bp.post("/<int:inbox_id>/unread")
@require("viewer")
def mark_unread(inbox_id: int):
    inbox.set_unread(appliance().db, current(), inbox_id, True)
    return redirect(url_for("ui_inbox.index"))


# -- custom labels -----------------------------------------------------------------------------------

@bp.get("/labels")
@require("viewer")
def labels_page(form: dict | None = None, errors: dict | None = None, status: int = 200):
    me = current()
    return render_template("inbox_labels.html", labels=inbox_labels.labels(appliance().db), form=form or {},
                           errors=errors or {}, flashed=get_flashed_messages(with_categories=True),
                           can_create=me.has_role("member"), can_delete=me.has_role("admin")), status


@bp.post("/labels")
@require("member")
def create_label():
    form = {"name": request.form.get("name", ""), "color": request.form.get("color", "")}
    try:
        created = inbox_labels.create_label(appliance().db, current(), form)
    except ServiceError as exc:
        if exc.status in (401, 403):
            raise
        errors = getattr(exc, "fields", None) or {"name": exc.message}
        return labels_page(form=form, errors=errors, status=exc.status)
    flash(f"Label {created['name']} created.", "ok")
    return redirect(url_for("ui_inbox.labels_page"))


@bp.post("/labels/<name>/delete")
@require("admin")
def delete_label(name: str):
    done = inbox_labels.delete_label(appliance().db, current(), name)
    flash(f"Label {done['name']} deleted; {done['leads_cleared']} lead(s) lost it.", "ok")
    return redirect(url_for("ui_inbox.labels_page"))
