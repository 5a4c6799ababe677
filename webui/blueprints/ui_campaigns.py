"""Pages: Campaigns (list with headline numbers; the editor for settings, mailbox pool and the
sequence; live preview, enrolment, launch checks, test send).

The editor works without JavaScript: "Add step", "Add variant" and "Remove" are submit
buttons (name="action") that re-render the posted form with its structure changed and
nothing lost; only "Save" calls the campaigns service, and every field it refuses is shown
next to its input with the typed content kept.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import available_timezones

from flask import Blueprint, abort, flash, get_flashed_messages, redirect, render_template, request, url_for

from appliance.services import campaigns, leads as leads_service, mailboxes, test_send
from appliance.services.campaign_input import DAYS, DELAY_UNITS, MAX_STEPS, MAX_VARIANTS, SENDER_FIELDS
from appliance.services.errors import Conflict, NotFound, ServiceError, ValidationError
from appliance.services.ids import id_from_text

from ..auth import current, require
from ..context import appliance, public_url

# The page shows the launch checks on every view; reading 100k leads each time would be slow,
# so it checks the first few thousand (launching itself checks them all).
PAGE_SCAN_LEADS = 5000
bp = Blueprint("ui_campaigns", __name__, url_prefix="/campaigns")
PAGE = 50
PREVIEW_LEADS = 50
POOL_LIST_LIMIT = 1000
STATUSES = ("draft", "active", "paused", "completed")
DAY_NAMES = dict(zip(DAYS, ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")))
FLAGS = (  # name, label, hint (the schedule's use_lead_timezone is shown with the schedule)
    ("stop_on_reply", "Stop for a lead who replies", "Recommended: a reply ends the sequence for that lead."),
    ("stop_on_auto_reply", "Also stop on an auto-reply", "Out-of-office and other automatic answers."),
    ("stop_company_on_reply", "Stop for the whole company on a reply",
     "Everyone at the same email domain leaves the sequence when one of them replies."),
    ("html", "Send HTML", "Plain text (the default) reaches inboxes best."),
    ("unsubscribe_footer", "Add the unsubscribe footer",
     "The sender identity and an unsubscribe link under every email. Without it, put "
     "{{unsubscribe_url}} in every email yourself."),
    ("skip_other_campaigns", "Skip leads active in another campaign", "Checked when leads are enrolled."),
)
FLAG_NAMES = tuple(name for name, _, _ in FLAGS) + ("use_lead_timezone",)
CHECK_LABELS = {"sender_identity": "Sender identity", "steps": "Sequence", "templates": "Templates",
                "unsubscribe": "Unsubscribe link", "mailboxes": "Mailboxes", "leads": "Leads",
                "lead_values": "Lead values"}
SKIP_REASONS = {"not_found": "not found", "already_enrolled": "already in this campaign",
                "suppressed": "on the suppression list", "unsubscribed": "unsubscribed", "bounced": "bounced",
                "in_other_campaign": "active in another campaign"}
UNITS = tuple(DELAY_UNITS)  # minutes, hours, days
_STEP_KEY = re.compile(r"^steps-(\d{1,3})-")
_VARIANT_KEY = re.compile(r"^steps-(\d{1,3})-variants-(\d{1,2})-")
_ACTION = re.compile(r"^(save|add_step|add_variant|remove_step|remove_variant)(?::(\d{1,3}))?(?::(\d{1,2}))?$")
_WHOLE = re.compile(r"^\d{1,9}$")
_DELAY_ERROR = re.compile(r"^steps\.(\d+)\.delay(_minutes)?$")


@lru_cache(maxsize=1)
def timezones() -> tuple[str, ...]:
    return tuple(sorted(z for z in available_timezones() if "/" in z or z == "UTC"))


# -- the editor's form state: what the form shows, as text ---------------------------------------

def blank_variant() -> dict:
    return {"subject": "", "body": "", "weight": "1"}


def blank_step(first: bool) -> dict:
    return {"delay_value": "0" if first else "2", "delay_unit": "minutes" if first else "days",
            "variants": [blank_variant()]}


def default_state() -> dict:
    return {"name": "", "schedule_mode": "window", "timezone": "UTC", "days": list(DAYS[:5]), "start": "09:00",
            "end": "17:00", "daily_limit": "", "daily_new_leads": "", "stop_on_reply": True,
            "stop_on_auto_reply": False, "stop_company_on_reply": False, "html": False, "unsubscribe_footer": True,
            "skip_other_campaigns": False, "use_lead_timezone": False, "pool_mode": "mailboxes",
            "mailbox_ids": [], "mailbox_tag": "", "steps": [blank_step(True)]}


def split_delay(minutes: int) -> tuple[str, str]:
    for unit in ("days", "hours"):
        if minutes and minutes % DELAY_UNITS[unit] == 0:
            return str(minutes // DELAY_UNITS[unit]), unit
    return str(minutes), "minutes"


def state_from_campaign(c: dict) -> dict:
    state = default_state()
    schedule = c["schedule"]
    if schedule.get("always"):
        state["schedule_mode"] = "always"
    else:
        state.update(schedule_mode="window", timezone=schedule["timezone"], days=list(schedule["days"]),
                     start=schedule["start"], end=schedule["end"])
    state.update(name=c["name"], daily_limit=str(c["daily_limit"] or ""),
                 daily_new_leads=str(c["daily_new_leads"] or ""), mailbox_ids=list(c["mailbox_ids"]),
                 mailbox_tag=c["mailbox_tag"] or "", pool_mode="tag" if c["mailbox_tag"] else "mailboxes")
    state.update({flag: bool(c[flag]) for flag in FLAG_NAMES})
    state["steps"] = []
    for step in c.get("steps", []):
        value, unit = split_delay(step["delay_minutes"])
        state["steps"].append({"delay_value": value, "delay_unit": unit, "variants": [
            {"subject": v["subject"], "body": v["body"], "weight": str(v["weight"])} for v in step["variants"]]})
    return state


def state_from_form() -> dict:
    """The posted editor, exactly as typed (text stays text, so nothing is lost on a re-render)."""
    f = request.form
    state = {"name": f.get("name", ""),
             "schedule_mode": "always" if f.get("schedule_mode") == "always" else "window",
             "timezone": f.get("schedule-timezone", ""), "days": [d for d in DAYS if d in f.getlist("schedule-days")],
             "start": f.get("schedule-start", "").strip(), "end": f.get("schedule-end", "").strip(),
             "daily_limit": f.get("daily_limit", "").strip(), "daily_new_leads": f.get("daily_new_leads", "").strip(),
             "pool_mode": "tag" if f.get("pool_mode") == "tag" else "mailboxes",
             "mailbox_ids": sorted({i for x in f.getlist("mailbox_ids") if (i := id_from_text(x))}),
             "mailbox_tag": f.get("mailbox_tag", "").strip()}
    state.update({flag: flag in f for flag in FLAG_NAMES})
    step_ids = sorted({int(m.group(1)) for key in f if (m := _STEP_KEY.match(key))})
    variant_ids: dict[int, set[int]] = {}
    for key in f:
        if m := _VARIANT_KEY.match(key):
            variant_ids.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    state["steps"] = []
    for i in step_ids:
        unit = f.get(f"steps-{i}-delay_unit", "days")
        state["steps"].append({
            "delay_value": f.get(f"steps-{i}-delay_value", "").strip(),
            "delay_unit": unit if unit in DELAY_UNITS else "days",
            "variants": [{"subject": f.get(f"steps-{i}-variants-{j}-subject", ""),
                          # browsers send CRLF line ends from a textarea
                          "body": f.get(f"steps-{i}-variants-{j}-body", "").replace("\r\n", "\n"),
                          "weight": f.get(f"steps-{i}-variants-{j}-weight", "").strip()}
                         for j in sorted(variant_ids.get(i, ()))]})
    return state


def _number(text: str, *, blank=None):
    """A whole number when the text is one; otherwise the text itself, so the service refuses
    it with its own message next to the field."""
    if text == "":
        return blank
    return int(text) if _WHOLE.match(text) else text


def service_input(state: dict) -> dict:
    schedule = {"always": True} if state["schedule_mode"] == "always" else {
        "timezone": state["timezone"], "days": state["days"], "start": state["start"], "end": state["end"]}
    data = {"name": state["name"], "schedule": schedule, "daily_limit": _number(state["daily_limit"]),
            "daily_new_leads": _number(state["daily_new_leads"]), "mailbox_ids": state["mailbox_ids"],
            "mailbox_tag": state["mailbox_tag"] if state["pool_mode"] == "tag" else None}
    data.update({flag: state[flag] for flag in FLAG_NAMES})
    data["steps"] = [{"delay": {"value": _number(s["delay_value"], blank=""), "unit": s["delay_unit"]},
                      "variants": [{"subject": v["subject"], "body": v["body"], "weight": _number(v["weight"], blank=1)}
                                   for v in s["variants"]]}
                     for s in state["steps"]]
    return data


def form_problems(state: dict) -> dict:
    """What only the form can get wrong (the service validates everything else)."""
    if state["pool_mode"] == "tag" and not state["mailbox_tag"]:
        return {"mailbox_tag": "Enter the tag of the mailboxes to send from."}
    return {}


def place_errors(fields: dict) -> dict:
    """The service's dotted field names, as the editor shows them: a step's delay problems all
    go next to its delay input."""
    errors = {}
    for key, message in fields.items():
        if m := _DELAY_ERROR.match(key):
            key = f"steps.{m.group(1)}.delay"
            if message.startswith("Expected a whole number"):
                message = "Enter a whole number, from 0 up to one year."
        errors[key] = message
    return errors


def unplaced_errors(errors: dict, state: dict) -> list[tuple[str, str]]:
    """Errors the editor has no input for (listed at the top, so none goes unseen)."""
    placed = {"name", "schedule", "schedule.timezone", "schedule.days", "schedule.start", "schedule.end",
              "daily_limit", "daily_new_leads", "mailbox_ids", "mailbox_tag", "steps", *FLAG_NAMES}
    for i, step in enumerate(state["steps"]):
        placed.update(f"steps.{i}{part}" for part in ("", ".delay", ".variants"))
        for j in range(len(step["variants"])):
            placed.update(f"steps.{i}.variants.{j}{part}" for part in ("", ".subject", ".body", ".weight"))
    return [(key, message) for key, message in errors.items() if key not in placed]


def apply_action(state: dict, action: str) -> None:
    """Add or remove a step or a variant in the form state (nothing is saved)."""
    m = _ACTION.match(action)
    if not m:
        abort(400)
    kind, i, j = m.group(1), m.group(2), m.group(3)
    steps = state["steps"]
    i = int(i) if i is not None else None
    j = int(j) if j is not None else None
    if kind == "add_step" and len(steps) < MAX_STEPS:
        steps.append(blank_step(first=not steps))
    elif i is None or i >= len(steps):
        return
    elif kind == "remove_step":
        del steps[i]
    elif kind == "add_variant" and len(steps[i]["variants"]) < MAX_VARIANTS:
        steps[i]["variants"].append(blank_variant())
    elif kind == "remove_variant" and j is not None and len(steps[i]["variants"]) > 1 \
            and j < len(steps[i]["variants"]):
        del steps[i]["variants"][j]


def delay_text(position: int, minutes: int) -> str:
    if not minutes:
        return "at launch" if position == 0 else "right after the previous email"
    value, unit = split_delay(minutes)
    word = unit[:-1] if value == "1" else unit
    return f"{value} {word} after " + ("launch" if position == 0 else "the previous email")


# -- options the editor offers -------------------------------------------------------------------

def mailbox_options(selected: list[int]) -> list[dict]:
    """Mailboxes to tick for the pool (the first POOL_LIST_LIMIT, plus any chosen beyond them,
    so saving never drops one)."""
    db, out, after = appliance().db, [], 0
    while len(out) < POOL_LIST_LIMIT:
        batch = mailboxes.search(db, after_id=after, limit=min(500, POOL_LIST_LIMIT - len(out)))
        out.extend(batch)
        if len(batch) < 500:
            break
        after = batch[-1]["id"]
    shown = {m["id"] for m in out}
    for mailbox_id in selected:
        if mailbox_id not in shown:
            try:
                out.append(mailboxes.get(db, mailbox_id))
            except NotFound:
                pass
    return out


def selected_lead_id() -> int | None:
    value = request.args.get("lead_id") or request.form.get("preview_lead_id") or ""
    return id_from_text(value)


def editor_context(state: dict, errors: dict, campaign: dict | None) -> dict:
    can_edit = current().has_role("member")
    return {"state": state, "errors": errors, "unplaced": unplaced_errors(errors, state), "can_edit": can_edit,
            "editable": can_edit and (campaign is None or campaign["status"] != "completed"),
            "timezones": timezones(), "days": DAY_NAMES, "units": UNITS, "flags": FLAGS,
            "mailbox_options": mailbox_options(state["mailbox_ids"]),
            "mailbox_tags": mailboxes.overview(appliance().db)["tags"],
            "max_steps": MAX_STEPS, "max_variants": MAX_VARIANTS,
            "pool_limit": POOL_LIST_LIMIT}


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
    body = {"to": form["to"], "mailbox_id": _number(form["mailbox_id"]), "step": _number(form["step"], blank=0)}
    if form["variant"]:
        body["variant"] = form["variant"]
    if form["lead_id"]:
        body["lead_id"] = _number(form["lead_id"])
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
