"""Pages: Campaigns (list with headline numbers; the editor for settings, mailbox pool and the
sequence; live preview, enrolment, launch checks, test send).

The editor works without JavaScript: "Add step", "Add variant" and "Remove" are submit
buttons (name="action") that re-render the posted form with its structure changed and
nothing lost; only "Save" calls the campaigns service, and every field it refuses is shown
next to its input with the typed content kept. The form handling itself is in
webui/campaign_form.py; the routes here only tie it to the services.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, get_flashed_messages, redirect, render_template, request, url_for

from appliance.services import campaigns, leads as leads_service, test_send
from appliance.services.campaign_input import SENDER_FIELDS
from appliance.services.errors import Conflict, NotFound, ServiceError, ValidationError
from appliance.services.ids import id_from_text

from ..auth import current, require
from ..campaign_form import (apply_action, default_state, delay_text, editor_context, form_problems,
                             number_or_text, place_errors, service_input, state_from_campaign, state_from_form)
from ..context import appliance, public_url

# The page shows the launch checks on every view; reading 100k leads each time would be slow,
# so it checks the first few thousand (launching itself checks them all).
PAGE_SCAN_LEADS = 5000
bp = Blueprint("ui_campaigns", __name__, url_prefix="/campaigns")
PAGE = 50
PREVIEW_LEADS = 50
STATUSES = ("draft", "active", "paused", "completed")
CHECK_LABELS = {"sender_identity": "Sender identity", "steps": "Sequence", "templates": "Templates",
                "unsubscribe": "Unsubscribe link", "mailboxes": "Mailboxes", "leads": "Leads",
                "lead_values": "Lead values"}
SKIP_REASONS = {"not_found": "not found", "already_enrolled": "already in this campaign",
                "suppressed": "on the suppression list", "unsubscribed": "unsubscribed", "bounced": "bounced",
                "in_other_campaign": "active in another campaign"}


def selected_lead_id() -> int | None:
    value = request.args.get("lead_id") or request.form.get("preview_lead_id") or ""
    return id_from_text(value)


# -- pages -----------------------------------------------------------------------------------------

@bp.get("")
@require("viewer")
def index():
    status = request.args.get("status") or None
    if status not in (None, *STATUSES):
        abort(400)
    cursor = request.args.get("cursor", type=int) or 0
    rows = campaigns.list_campaigns(appliance().db, status=status, after_id=cursor, limit=PAGE + 1)
    items = rows[:PAGE]
    next_cursor = items[-1]["id"] if len(rows) > PAGE else None
    return render_template("campaigns.html", items=items, status=status, statuses=STATUSES,
                           next_cursor=next_cursor, paged=bool(cursor))


@bp.route("/new", methods=["GET", "POST"])
@require("member")
def new():
    state, errors = default_state(), {}
    if request.method == "POST":
        state = state_from_form()
        action = request.form.get("action") or "save"
        if action == "save":
            errors = form_problems(state)
            if not errors:
                try:
                    created = campaigns.create(appliance().db, current(), service_input(state))
                except ValidationError as exc:
                    errors = place_errors(exc.fields)
                else:
                    flash("Campaign created. Enrol leads, check the preview, then launch.", "ok")
                    return redirect(url_for("ui_campaigns.edit", campaign_id=created["id"]))
        else:
            apply_action(state, action)
    return render_template("campaign_edit.html", campaign=None, **editor_context(state, errors, None),
                           form_action=url_for("ui_campaigns.new")), 400 if errors else 200


def render_page(campaign: dict, state: dict | None = None, *, errors: dict | None = None,
                alert: str | None = None, enrol: dict | None = None, launch_refused: bool = False,
                test: dict | None = None, status: int = 200):
    """The edit page of a saved campaign with its panels: preview, leads, launch, test send."""
    db = appliance().db
    campaign_id = campaign["id"]
    flashed = get_flashed_messages(with_categories=True)
    enrol = enrol or {"tag": "", "errors": {}}
    enrol.setdefault("result", next((m for c, m in reversed(flashed) if c == "enrolled"), None))
    test = test or {"form": {}, "errors": {}, "error": None}
    test.setdefault("sent", next((m for c, m in reversed(flashed) if c == "test_sent"), None))
    leads = campaigns.enrolled_leads(db, campaign_id, limit=PREVIEW_LEADS)
    lead_id = selected_lead_id() or (leads[0]["id"] if leads else None)
    preview, preview_error = [], None
    if lead_id is not None:
        try:
            preview = campaigns.preview(db, appliance().keys, campaign_id, lead_id, public_url())
        except NotFound as exc:
            preview_error, lead_id = exc.message, None
    for step in preview:
        step["delay_text"] = delay_text(step["position"], step["delay_minutes"])
    context = editor_context(state or state_from_campaign(campaign), errors or {}, campaign)
    return render_template(
        "campaign_edit.html", campaign=campaign, form_action=url_for("ui_campaigns.save", campaign_id=campaign_id),
        alert=alert, messages=[(c, m) for c, m in flashed if c in ("ok", "error")],
        checks=campaigns.launch_checks(db, campaign_id, scan_leads=PAGE_SCAN_LEADS), check_labels=CHECK_LABELS, launch_refused=launch_refused,
        leads=leads, preview_lead_id=lead_id, sender_fields=SENDER_FIELDS, preview=preview, preview_error=preview_error,
        enrol=enrol, skip_reasons=SKIP_REASONS, test=test, lead_tags=leads_service.all_tags(db),
        variant_labels=sorted({v["label"] for s in campaign["steps"] for v in s["variants"]}),
        **context), status


@bp.get("/<int:campaign_id>")
@require("viewer")
def edit(campaign_id: int):
    return render_page(campaigns.get(appliance().db, campaign_id))


def back_to(campaign_id: int, anchor: str | None = None):
    return redirect(url_for("ui_campaigns.edit", campaign_id=campaign_id, lead_id=selected_lead_id(),
                            _anchor=anchor))


@bp.post("/<int:campaign_id>")
@require("member")
def save(campaign_id: int):
    campaign = campaigns.get(appliance().db, campaign_id)
    state = state_from_form()
    action = request.form.get("action") or "save"
    if action != "save":
        apply_action(state, action)
        return render_page(campaign, state)
    errors = form_problems(state)
    if not errors:
        try:
            campaigns.update(appliance().db, current(), campaign_id, service_input(state))
        except ValidationError as exc:
            errors = place_errors(exc.fields)
        except Conflict as exc:
            return render_page(campaign, state, alert=exc.message, status=exc.status)
        else:
            flash("Saved." + (" Emails not yet sent use the new version." if campaign["status"] in
                              ("active", "paused") else ""), "ok")
            return back_to(campaign_id)
    return render_page(campaign, state, errors=errors, status=400)


@bp.post("/<int:campaign_id>/enroll")
@require("member")
def enroll(campaign_id: int):
    campaign = campaigns.get(appliance().db, campaign_id)
    tag = request.form.get("tag", "").strip()
    if not tag:
        return render_page(campaign, enrol={"tag": tag, "errors": {"tag": "Enter a lead tag."}}, status=400)
    try:
        result = campaigns.enroll_tag(appliance().db, current(), campaign_id, tag)
    except ServiceError as exc:
        fields = exc.fields if isinstance(exc, ValidationError) else {"tag": exc.message}
        return render_page(campaign, enrol={"tag": tag, "errors": fields}, status=exc.status)
    flash({"tag": tag, **result}, "enrolled")
    return back_to(campaign_id, "leads")


def _change_status(campaign_id: int, change, done: str):
    campaign = campaigns.get(appliance().db, campaign_id)
    try:
        change(appliance().db, current(), campaign_id)
    except campaigns.LaunchRefused as exc:
        return render_page(campaign, launch_refused=True, status=exc.status)
    except Conflict as exc:
        flash(exc.message, "error")
        return back_to(campaign_id, "launch")
    flash(done, "ok")
    return back_to(campaign_id, "launch")


@bp.post("/<int:campaign_id>/launch")
@require("member")
def launch(campaign_id: int):
    return _change_status(campaign_id, campaigns.launch, "Launched: the campaign is sending.")


@bp.post("/<int:campaign_id>/pause")
@require("member")
def pause(campaign_id: int):
    return _change_status(campaign_id, campaigns.pause, "Paused: nothing more goes out until you resume.")


@bp.post("/<int:campaign_id>/resume")
@require("member")
def resume(campaign_id: int):
    return _change_status(campaign_id, campaigns.resume, "Resumed: the campaign is sending again.")


@bp.post("/<int:campaign_id>/test-send")
@require("member")
def send_test(campaign_id: int):
    campaign = campaigns.get(appliance().db, campaign_id)
    form = {name: request.form.get(name, "").strip() for name in ("to", "mailbox_id", "step", "variant", "lead_id")}
    body = {"to": form["to"], "mailbox_id": number_or_text(form["mailbox_id"]),
            "step": number_or_text(form["step"], blank=0)}
    if form["variant"]:
        body["variant"] = form["variant"]
    if form["lead_id"]:
        body["lead_id"] = number_or_text(form["lead_id"])
    try:
        result = test_send.send(appliance().db, appliance().keys, current(), campaign_id, body, public_url())
    except ValidationError as exc:
        return render_page(campaign, test={"form": form, "errors": exc.fields, "error": None}, status=400)
    except NotFound as exc:
        return render_page(campaign, test={"form": form, "errors": {"mailbox_id": exc.message}, "error": None},
                           status=400)
    except ServiceError as exc:
        return render_page(campaign, test={"form": form, "errors": {}, "error": exc.message}, status=exc.status)
    flash(result, "test_sent")
    return back_to(campaign_id, "test-send")
