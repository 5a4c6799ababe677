"""Campaigns: settings, sequences, mailbox pools, enrolment, launch checks and state changes.

Messages are rendered when they are sent, so editing a step of a running campaign changes
only what has not gone out yet.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from .. import templating
from ..db import Database, campaigns_repo
from ..db.timefmt import utcnow_iso
from . import audit, compose, links, sender_identity, suppressions, webhooks
from .audit import Actor
from .authz import Principal
from .campaign_input import LINK_FIELDS, SENDER_FIELDS, known_variables, parse_campaign
from .errors import Conflict, NotFound, Unprocessable, ValidationError
from .ids import is_id

FLAGS = ("use_lead_timezone", "stop_on_reply", "stop_on_auto_reply", "stop_company_on_reply", "html",
         "unsubscribe_footer", "skip_other_campaigns")
ENROL_BATCH = 900  # stays under SQLite's limit of bound parameters per statement
SKIP_LEAD_STATUSES = {"unsubscribed": "unsubscribed", "bounced": "bounced"}
NON_LEAD_VARIABLES = set(SENDER_FIELDS) | set(LINK_FIELDS)


class LaunchRefused(Unprocessable):
    code = "launch_checks_failed"


def _row(conn, campaign_id: int):
    row = campaigns_repo.by_id(conn, campaign_id)
    if row is None:
        raise NotFound("No such campaign.")
    return row


def public(conn, row, *, with_steps: bool = True) -> dict:
    body = {"id": row["id"], "name": row["name"], "status": row["status"],
            "schedule": json.loads(row["schedule"]), "daily_limit": row["daily_limit"],
            "daily_new_leads": row["daily_new_leads"], "mailbox_tag": row["mailbox_tag"],
            "mailbox_ids": campaigns_repo.mailbox_ids(conn, row["id"]),
            "created_at": row["created_at"], "updated_at": row["updated_at"], "launched_at": row["launched_at"]}
    body.update({flag: bool(row[flag]) for flag in FLAGS})
    counts = campaigns_repo.enrollment_counts(conn, row["id"])
    body["leads"] = {"total": sum(counts.values()), **{k: counts.get(k, 0) for k in ("active", "completed", "stopped")}}
    if with_steps:
        body["steps"] = [{"delay_minutes": s["delay_minutes"],
                          "variants": [{k: v[k] for k in ("label", "subject", "body", "weight")} for v in s["variants"]]}
                         for s in campaigns_repo.steps(conn, row["id"])]
    return body


def get(db: Database, campaign_id: int) -> dict:
    conn = db.connection()
    return public(conn, _row(conn, campaign_id))


def list_campaigns(db: Database, *, status: str | None = None, after_id: int = 0, limit: int = 50) -> list[dict]:
    conn = db.connection()
    return [public(conn, r, with_steps=False) for r in campaigns_repo.page(conn, status=status, after_id=after_id,
                                                                         limit=limit)]


def _save_parts(conn, campaign_id: int, fields: dict) -> None:
    if "mailbox_ids" in fields:
        unknown = set(fields["mailbox_ids"]) - campaigns_repo.existing_mailbox_ids(conn, fields["mailbox_ids"])
        if unknown:
            raise ValidationError({"mailbox_ids": f"No such mailbox: {sorted(unknown)}."})
        campaigns_repo.set_mailboxes(conn, campaign_id, fields["mailbox_ids"])
    if "steps" in fields:
        campaigns_repo.replace_steps(conn, campaign_id, fields["steps"])


def create(db: Database, principal: Principal, data: dict) -> dict:
    principal.require("member", "write")
    fields = parse_campaign(data, custom_fields=campaigns_repo.custom_field_names(db.connection()))
    with db.transaction() as conn:
        campaign_id = campaigns_repo.insert(conn, fields, principal.user_id, utcnow_iso())
        _save_parts(conn, campaign_id, fields)
        audit.record(conn, principal.actor(), "campaign.created", target_type="campaign", target_id=campaign_id,
                     metadata={"name": fields["name"]})
        return public(conn, _row(conn, campaign_id))


def update(db: Database, principal: Principal, campaign_id: int, data: dict) -> dict:
    """Edits, also of a running campaign: only messages not yet sent use the new text."""
    principal.require("member", "write")
    if "status" in data:
        raise ValidationError({"status": "Use launch, pause and resume to change the status."})
    fields = parse_campaign(data, custom_fields=campaigns_repo.custom_field_names(db.connection()), partial=True)
    with db.transaction() as conn:
        row = _row(conn, campaign_id)
        if row["status"] == "completed":
            raise Conflict("A completed campaign cannot be edited.", code="campaign_completed")
        campaigns_repo.update(conn, campaign_id, fields, utcnow_iso())
        _save_parts(conn, campaign_id, fields)
        if row["status"] in ("active", "paused"):
            audit.record(conn, principal.actor(), "campaign.edited_while_running", target_type="campaign",
                         target_id=campaign_id, metadata={"fields": sorted(fields)})
        return public(conn, _row(conn, campaign_id))


def delete(db: Database, principal: Principal, campaign_id: int) -> None:
    principal.require("member", "write")
    with db.transaction() as conn:
        row = _row(conn, campaign_id)
        if row["status"] == "active":
            raise Conflict("Pause the campaign before deleting it.", code="campaign_active")
        campaigns_repo.delete(conn, campaign_id)
        audit.record(conn, principal.actor(), "campaign.deleted", target_type="campaign", target_id=campaign_id,
                     metadata={"name": row["name"]})


def enroll(db: Database, principal: Principal, campaign_id: int, lead_ids: list[int]) -> dict:
    """Enrol leads; report how many went in and why the rest did not."""
    principal.require("member", "write")
    if not isinstance(lead_ids, list) or not all(is_id(i) for i in lead_ids):
        raise ValidationError({"lead_ids": "Expected a list of lead ids."})
    skipped = {"not_found": 0, "already_enrolled": 0, "suppressed": 0, "unsubscribed": 0, "bounced": 0,
               "in_other_campaign": 0}
    enrolled = 0
    now = datetime.now(timezone.utc)
    with db.transaction() as conn:
        row = _row(conn, campaign_id)
        if row["status"] == "completed":
            raise Conflict("A completed campaign takes no new leads.", code="campaign_completed")
        due = utcnow_iso() if row["status"] == "active" else None
        unique = list(dict.fromkeys(lead_ids))
        for start in range(0, len(unique), ENROL_BATCH):
            batch = unique[start:start + ENROL_BATCH]
            leads = {r["id"]: r for r in campaigns_repo.leads_by_ids(conn, batch)}
            skipped["not_found"] += len(batch) - len(leads)
            already = campaigns_repo.enrolled_lead_ids(conn, campaign_id, list(leads))
            skipped["already_enrolled"] += len(already)
            candidates = [lid for lid in leads if lid not in already]
            for lid in list(candidates):
                reason = SKIP_LEAD_STATUSES.get(leads[lid]["status"])
                if reason:
                    skipped[reason] += 1
                    candidates.remove(lid)
            blocked = suppressions.suppressed_among(conn, [leads[lid]["email"] for lid in candidates])
            kept = [lid for lid in candidates if leads[lid]["email"] not in blocked]
            skipped["suppressed"] += len(candidates) - len(kept)
            if row["skip_other_campaigns"] and kept:
                elsewhere = campaigns_repo.leads_active_elsewhere(conn, campaign_id, kept)
                skipped["in_other_campaign"] += len(elsewhere)
                kept = [lid for lid in kept if lid not in elsewhere]
            enrolled += campaigns_repo.enroll(conn, campaign_id, kept, due, now.strftime("%Y-%m-%dT%H:%M:%SZ"))
        audit.record(conn, principal.actor(), "campaign.leads_enrolled", target_type="campaign",
                     target_id=campaign_id, metadata={"enrolled": enrolled, **{k: v for k, v in skipped.items() if v}})
    return {"enrolled": enrolled, "skipped": sum(skipped.values()), "reasons": {k: v for k, v in skipped.items() if v}}


def enroll_tag(db: Database, principal: Principal, campaign_id: int, tag: str) -> dict:
    return enroll(db, principal, campaign_id, campaigns_repo.lead_ids_with_tag(db.connection(), tag.strip().lower()))


def enrolled_leads(db: Database, campaign_id: int, *, limit: int = 50) -> list[dict]:
    """The first leads with an active enrolment (by id), e.g. to choose one for a preview."""
    conn = db.connection()
    _row(conn, campaign_id)
    return [{k: r[k] for k in ("id", "email", "first_name", "last_name", "company")}
            for r in campaigns_repo.sample_enrolled_leads(conn, campaign_id, 0, limit)]


def launch_checks(db: Database, campaign_id: int, *, scan_leads: int | None = None) -> list[dict]:
    """Every check with ok/failed and a sentence; launch refuses while any fails. A page that
    only shows the checks may cap how many leads the lead-values check reads (`scan_leads`);
    launching always reads them all."""
    conn = db.connection()
    row = _row(conn, campaign_id)
    steps = campaigns_repo.steps(conn, campaign_id)
    identity = sender_identity.get(db)
    checks = []

    def add(name: str, ok: bool, message: str, details: dict | None = None) -> None:
        checks.append({"check": name, "ok": ok, "message": message, "details": details or {}})

    missing = sender_identity.problems(identity)
    add("sender_identity", not missing, "Sender identity is set." if not missing else
        " ".join(missing))
    add("steps", bool(steps), "The sequence has steps." if steps else "Add at least one step.")
    known = campaign_known_variables(conn)
    bad = {}
    for step in steps:
        for v in step["variants"]:
            for part in ("subject", "body"):
                errors = templating.check(v[part], known)
                if errors:
                    bad[f"steps.{step['position']}.variants.{v['label']}.{part}"] = "; ".join(map(str, errors))
    add("templates", not bad, "All templates are valid." if not bad else "Fix the templates.", bad)
    has_link = all("{{unsubscribe_url" in v["body"] for s in steps for v in s["variants"])
    add("unsubscribe", bool(row["unsubscribe_footer"]) or has_link,
        "Every message carries an unsubscribe link." if row["unsubscribe_footer"] or has_link else
        "Turn the automatic unsubscribe footer on, or put {{unsubscribe_url}} in every email.")
    pool = campaigns_repo.pool(conn, campaign_id, row["mailbox_tag"])
    healthy = [m for m in pool if m["status"] == "active" and m["sending_enabled"]]
    add("mailboxes", bool(healthy), f"{len(healthy)} of {len(pool)} mailboxes in the pool can send." if healthy else
        "Add at least one healthy mailbox (active, sending on) to the pool.")
    counts = campaigns_repo.enrollment_counts(conn, campaign_id)
    active = counts.get("active", 0)
    add("leads", active > 0, f"{active} lead{'s' if active != 1 else ''} enrolled." if active
        else "Enrol at least one lead.")
    if steps and not bad:
        gaps = _leads_missing_values(conn, row, steps, scan=scan_leads)
        add("lead_values", not gaps, "Every lead has the values the templates need." if not gaps else
            f"{len(gaps)} lead(s) lack values the templates need without a fallback (add a fallback like "
            "{{first_name|there}}, fill the field, or remove the lead).", {"leads": gaps[:20]})
    return checks


def campaign_known_variables(conn) -> set[str]:
    return known_variables(campaigns_repo.custom_field_names(conn))


def _leads_missing_values(conn, row, steps: list[dict], limit: int = 20, page: int = 500,
                          scan: int | None = None) -> list[dict]:
    """Enrolled leads lacking a lead value that a template needs without a fallback (the first
    `limit` of them, among the first `scan` leads when given). Sender and link values come
    from the mailbox and the appliance."""
    parsed = [templating.parse(v[part]) for s in steps for v in s["variants"] for part in ("subject", "body")]
    gaps, after, read = [], 0, 0
    while len(gaps) < limit and after is not None and (scan is None or read < scan):
        leads = campaigns_repo.sample_enrolled_leads(conn, row["id"], after, page)
        after = leads[-1]["id"] if len(leads) == page else None
        read += len(leads)
        for lead in leads:
            values = compose.lead_values(lead)
            lacking = sorted({name for nodes in parsed for name in templating.missing_values(nodes, values)
                              if name not in NON_LEAD_VARIABLES})
            if lacking:
                gaps.append({"lead_id": lead["id"], "email": lead["email"], "missing": lacking})
    return gaps[:limit]


def _transition(db: Database, principal: Principal, campaign_id: int, to: str, expect: tuple[str, ...],
                action: str) -> dict:
    with db.transaction() as conn:
        row = _row(conn, campaign_id)
        if not campaigns_repo.set_status(conn, campaign_id, to, utcnow_iso(), expect=expect):
            raise Conflict(f"The campaign is {row['status']}; it cannot be {action.split('.')[1]}.",
                           code="wrong_status")
        if to == "active":
            campaigns_repo.schedule_unplanned(conn, campaign_id, utcnow_iso())
        audit.record(conn, principal.actor(), action, target_type="campaign", target_id=campaign_id,
                     metadata={"from": row["status"]})
        if action in webhooks.EVENT_TYPES:  # campaign.launched, campaign.paused
            webhooks.emit(conn, action, {"campaign": webhooks.campaign_data(_row(conn, campaign_id)),
                                         "previous_status": row["status"], "by": principal.email})
        return public(conn, _row(conn, campaign_id))


def launch(db: Database, principal: Principal, campaign_id: int) -> dict:
    principal.require("member", "write")
    failed = [c for c in launch_checks(db, campaign_id) if not c["ok"]]
    if failed:
        raise LaunchRefused("The campaign cannot launch yet: " + " ".join(c["message"] for c in failed),
                            details={"checks": failed})
    return _transition(db, principal, campaign_id, "active", ("draft",), "campaign.launched")


def pause(db: Database, principal: Principal, campaign_id: int) -> dict:
    principal.require("member", "write")
    return _transition(db, principal, campaign_id, "paused", ("active",), "campaign.paused")


def resume(db: Database, principal: Principal, campaign_id: int) -> dict:
    principal.require("member", "write")
    failed = [c for c in launch_checks(db, campaign_id) if not c["ok"]]
    if failed:
        raise LaunchRefused("The campaign cannot resume yet: " + " ".join(c["message"] for c in failed),
                            details={"checks": failed})
    return _transition(db, principal, campaign_id, "active", ("paused",), "campaign.resumed")


def complete_finished(db: Database) -> int:
    """Active campaigns whose every enrolled lead has finished (sequence done or stopped) become
    completed, each with a campaign.completed event. Run by the scheduler."""
    completed = 0
    conn = db.connection()
    for row in campaigns_repo.page(conn, status="active", after_id=0, limit=10_000):
        if not _finished(campaigns_repo.enrollment_counts(conn, row["id"])):
            continue
        with db.transaction() as tx:
            counts = campaigns_repo.enrollment_counts(tx, row["id"])  # again, under the write lock
            if _finished(counts) and campaigns_repo.set_status(tx, row["id"], "completed", utcnow_iso(),
                                                               expect=("active",)):
                audit.record(tx, Actor.system("scheduler"), "campaign.completed", target_type="campaign",
                             target_id=row["id"], metadata={"leads": counts})
                webhooks.emit(tx, "campaign.completed", {"campaign": webhooks.campaign_data(_row(tx, row["id"])),
                                                         "leads": {"total": sum(counts.values()), **counts}})
                completed += 1
    return completed


def _finished(enrollment_counts: dict[str, int]) -> bool:
    return bool(enrollment_counts) and not enrollment_counts.get("active")


def preview(db: Database, keys, campaign_id: int, lead_id: int, base_url: str) -> list[dict]:
    """Every step and variant rendered for one lead, as the lead would get it."""
    conn = db.connection()
    row = _row(conn, campaign_id)
    lead = campaigns_repo.leads_by_ids(conn, [lead_id])
    if not lead:
        raise NotFound("No such lead.")
    lead = lead[0]
    steps = campaigns_repo.steps(conn, campaign_id)
    pool = campaigns_repo.pool(conn, campaign_id, row["mailbox_tag"])
    identity = sender_identity.get(db)
    url = links.unsubscribe_url(base_url, keys.tokens, lead_id, campaign_id)
    out = []
    for step in steps:
        variants = []
        for v in step["variants"]:
            try:
                r = compose.render_step(campaign=row, steps=steps, position=step["position"], lead=lead,
                                        mailbox=pool[0] if pool else None, identity=identity,
                                        unsubscribe_url=url, variant=v)
                variants.append({"label": v["label"], "subject": r.subject, "body": r.text, "html": r.html,
                                 "missing": []})
            except templating.MissingValue as exc:
                variants.append({"label": v["label"], "subject": None, "body": None, "html": None,
                                 "missing": [exc.name]})
        out.append({"position": step["position"], "delay_minutes": step["delay_minutes"], "variants": variants})
    return out
