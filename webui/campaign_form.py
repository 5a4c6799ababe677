"""The campaign editor's form: the posted form read into the editor state (text kept as typed,
so nothing is lost on a re-render), the structure changes of "Add step", "Add variant" and
"Remove", the state turned into the campaigns service's input, the service's errors placed
next to their inputs, and what the editor template needs besides the state.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import available_timezones

from flask import abort, request

from appliance.services import mailboxes
from appliance.services.campaign_input import DAYS, DELAY_UNITS, MAX_STEPS, MAX_VARIANTS
from appliance.services.errors import NotFound
from appliance.services.ids import id_from_text

from .auth import current
from .context import appliance

POOL_LIST_LIMIT = 1000
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


def number_or_text(text: str, *, blank=None):
    """A whole number when the text is one; otherwise the text itself, so the service refuses
    it with its own message next to the field."""
    if text == "":
        return blank
    return int(text) if _WHOLE.match(text) else text


def service_input(state: dict) -> dict:
    schedule = {"always": True} if state["schedule_mode"] == "always" else {
        "timezone": state["timezone"], "days": state["days"], "start": state["start"], "end": state["end"]}
    data = {"name": state["name"], "schedule": schedule, "daily_limit": number_or_text(state["daily_limit"]),
            "daily_new_leads": number_or_text(state["daily_new_leads"]), "mailbox_ids": state["mailbox_ids"],
            "mailbox_tag": state["mailbox_tag"] if state["pool_mode"] == "tag" else None}
    data.update({flag: state[flag] for flag in FLAG_NAMES})
    data["steps"] = [{"delay": {"value": number_or_text(s["delay_value"], blank=""), "unit": s["delay_unit"]},
                      "variants": [{"subject": v["subject"], "body": v["body"],
                                    "weight": number_or_text(v["weight"], blank=1)}
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


def editor_context(state: dict, errors: dict, campaign: dict | None) -> dict:
    can_edit = current().has_role("member")
    return {"state": state, "errors": errors, "unplaced": unplaced_errors(errors, state), "can_edit": can_edit,
            "editable": can_edit and (campaign is None or campaign["status"] != "completed"),
            "timezones": timezones(), "days": DAY_NAMES, "units": UNITS, "flags": FLAGS,
            "mailbox_options": mailbox_options(state["mailbox_ids"]),
            "mailbox_tags": mailboxes.overview(appliance().db)["tags"],
            "max_steps": MAX_STEPS, "max_variants": MAX_VARIANTS,
            "pool_limit": POOL_LIST_LIMIT}
