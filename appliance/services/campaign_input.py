"""Validation of a campaign: settings, schedule, and the sequence with its templates.

Every template problem is reported against its place ("steps.1.variants.0.body") with line
and column, when the campaign is saved: never a surprise at send time.
"""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import available_timezones

from .. import templating
from ..mail.message import has_line_break
from .errors import ValidationError
from .ids import is_id

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
LEAD_FIELDS = ("email", "first_name", "last_name", "company", "title", "phone", "website", "timezone")
SENDER_FIELDS = ("sender_name", "sender_email", "signature", "sender_company", "sender_address",
                 "sender_website")
LINK_FIELDS = ("unsubscribe_url",)
MAX_STEPS = 20
MAX_VARIANTS = 8
DELAY_UNITS = {"minutes": 1, "hours": 60, "days": 1440}


def known_variables(custom_fields: set[str]) -> set[str]:
    return set(LEAD_FIELDS) | set(SENDER_FIELDS) | set(LINK_FIELDS) | custom_fields


def _bool(value: Any, name: str, problems: dict) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "on", "off"):
        return value.lower() in ("true", "1", "on")
    problems[name] = "Expected true or false."
    return False


def parse_schedule(value: Any, problems: dict) -> dict:
    if value is None or value == {"always": True}:
        return {"always": True}
    if not isinstance(value, dict):
        problems["schedule"] = 'Expected {"always": true} or {"timezone", "days", "start", "end"}.'
        return {"always": True}
    tz = value.get("timezone", "")
    if not isinstance(tz, str) or tz not in available_timezones():
        problems["schedule.timezone"] = "Choose a time zone like Europe/Berlin or America/New_York."
    days = value.get("days")
    if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
        problems["schedule.days"] = f"Choose one or more of: {', '.join(DAYS)}."
        days = []
    start, end = str(value.get("start", "")), str(value.get("end", ""))
    for name, text in (("start", start), ("end", end)):
        if not _TIME.match(text):
            problems[f"schedule.{name}"] = "Use a 24-hour time like 09:00."
    if _TIME.match(start) and _TIME.match(end) and start >= end:
        problems["schedule.end"] = "The sending window must end after it starts (same day)."
    return {"timezone": tz, "days": [d for d in DAYS if d in days], "start": start, "end": end}


def _delay_minutes(step: dict, where: str, problems: dict) -> int:
    if "delay" in step and "delay_minutes" not in step:
        delay = step["delay"]
        if not isinstance(delay, dict) or delay.get("unit") not in DELAY_UNITS:
            problems[f"{where}.delay"] = 'Expected {"value": n, "unit": "minutes" | "hours" | "days"}.'
            return 0
        amount, factor = delay.get("value"), DELAY_UNITS[delay["unit"]]
    else:
        amount, factor = step.get("delay_minutes", 0), 1
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount * factor <= 365 * 1440:
        problems[f"{where}.delay_minutes"] = "Expected a whole number of minutes from 0 to a year."
        return 0
    return amount * factor


def parse_steps(value: Any, known: set[str], problems: dict) -> list[dict]:
    if not isinstance(value, list):
        problems["steps"] = "Expected a list of steps."
        return []
    if len(value) > MAX_STEPS:
        problems["steps"] = f"At most {MAX_STEPS} steps."
    steps = []
    for i, step in enumerate(value[:MAX_STEPS]):
        where = f"steps.{i}"
        if not isinstance(step, dict):
            problems[where] = "Expected an object with delay_minutes and variants."
            continue
        delay = _delay_minutes(step, where, problems)
        variants_in = step.get("variants")
        if not isinstance(variants_in, list) or not variants_in:
            problems[f"{where}.variants"] = "Each step needs at least one variant with a body."
            continue
        if len(variants_in) > MAX_VARIANTS:
            problems[f"{where}.variants"] = f"At most {MAX_VARIANTS} variants."
        variants = []
        for j, variant in enumerate(variants_in[:MAX_VARIANTS]):
            vwhere = f"{where}.variants.{j}"
            if not isinstance(variant, dict):
                problems[vwhere] = "Expected an object with subject, body and weight."
                continue
            subject, body = variant.get("subject") or "", variant.get("body") or ""
            weight = variant.get("weight", 1)
            if not isinstance(subject, str) or not isinstance(body, str):
                problems[vwhere] = "subject and body must be text."
                continue
            if has_line_break(subject):
                problems[f"{vwhere}.subject"] = "A subject is one line."
            if i == 0 and not subject.strip():
                problems[f"{vwhere}.subject"] = "The first email needs a subject (follow-ups may leave it " \
                                                "empty to reply in the same thread)."
            if not body.strip():
                problems[f"{vwhere}.body"] = "Write the email."
            if not isinstance(weight, int) or isinstance(weight, bool) or not 0 <= weight <= 100:
                problems[f"{vwhere}.weight"] = "Expected a whole number from 0 to 100."
                weight = 1
            for part, text in (("subject", subject), ("body", body)):
                errors = templating.check(text, known)
                if errors:
                    problems[f"{vwhere}.{part}"] = "; ".join(str(e) for e in errors)
            variants.append({"label": chr(ord("A") + j), "subject": subject.strip(), "body": body,
                             "weight": weight})
        if variants and not any(v["weight"] for v in variants):
            problems[f"{where}.variants"] = "At least one variant needs a weight above 0."
        steps.append({"position": i, "delay_minutes": delay, "variants": variants})
    return steps


def parse_campaign(data: dict, *, custom_fields: set[str], partial: bool = False) -> dict:
    """Validated fields of a campaign (only those present when partial)."""
    problems: dict[str, str] = {}
    out: dict[str, Any] = {}
    if "name" in data or not partial:
        name = data.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            problems["name"] = "Give the campaign a name (up to 200 characters)."
        else:
            out["name"] = name.strip()
    if "schedule" in data or not partial:
        out["schedule"] = parse_schedule(data.get("schedule"), problems)
    for name in ("daily_limit", "daily_new_leads"):
        if name in data:
            value = data[name]
            if value in (None, ""):
                out[name] = None
            elif isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 100000:
                out[name] = value
            else:
                problems[name] = "Expected a whole number from 1 to 100000, or nothing for no limit."
    for name in ("stop_on_reply", "stop_on_auto_reply", "stop_company_on_reply", "html", "use_lead_timezone",
                 "unsubscribe_footer", "skip_other_campaigns"):
        if name in data:
            out[name] = _bool(data[name], name, problems)
    if "mailbox_ids" in data:
        ids = data["mailbox_ids"]
        if not isinstance(ids, list) or not all(is_id(i) for i in ids):
            problems["mailbox_ids"] = "Expected a list of mailbox ids."
        else:
            out["mailbox_ids"] = sorted(set(ids))
    if "mailbox_tag" in data:
        tag = data["mailbox_tag"]
        if tag not in (None, "") and (not isinstance(tag, str) or len(tag) > 40):
            problems["mailbox_tag"] = "Expected a mailbox tag."
        else:
            out["mailbox_tag"] = (tag or "").strip().lower() or None
    if "steps" in data or not partial:
        out["steps"] = parse_steps(data.get("steps", []), known_variables(custom_fields), problems)
    if problems:
        raise ValidationError(problems)
    return out
