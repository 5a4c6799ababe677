"""Campaigns: settings, the sequence, enrolment, launch checks, state changes, preview, test sends."""

from __future__ import annotations

from appliance.services.campaign_input import DAYS, DELAY_UNITS, MAX_STEPS, MAX_VARIANTS

from .common import (EMAIL, ID, LIST_PARAMS, NO_CONTENT, TIME, TIME_OR_NULL, array, enum, integer, json_body,
                     nullable, obj, ok, operation, page_of, path_id, query, ref, string)

TAG = "campaigns"
CAMPAIGN_ID = path_id("campaign_id", "campaign")
STATUSES = ("draft", "active", "paused", "completed")
FLAGS = ("use_lead_timezone", "stop_on_reply", "stop_on_auto_reply", "stop_company_on_reply", "html",
         "unsubscribe_footer", "skip_other_campaigns")
YEAR_MINUTES = 365 * 1440
HHMM = string(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")
SCHEDULE = {"oneOf": [
    obj({"always": {"type": "boolean", "const": True}}, ["always"], closed=True),
    obj({"timezone": string(description="IANA, like Europe/Berlin"),
         "days": array(enum(DAYS), minItems=1, uniqueItems=True), "start": HHMM, "end": HHMM},
        ["timezone", "days", "start", "end"]),
], "description": 'When mail may go: {"always": true}, or a daily window on some days in a time zone.'}
VARIANT = obj({"subject": string(description="One line; may be empty on follow-ups (same thread)."),
               "body": string(minLength=1), "weight": integer(0, 100, default=1)}, ["body"])
STEP = obj({
    "delay_minutes": integer(0, YEAR_MINUTES, description="After the previous step's send."),
    "delay": obj({"value": integer(0), "unit": enum(DELAY_UNITS)}, ["value", "unit"],
                 description="Instead of delay_minutes."),
    "variants": array(VARIANT, minItems=1, maxItems=MAX_VARIANTS),
}, ["variants"])
LIMIT = nullable(integer(1, 100000))
INPUT = {
    "name": string(200, minLength=1), "schedule": SCHEDULE, "daily_limit": LIMIT, "daily_new_leads": LIMIT,
    **{flag: {"type": "boolean"} for flag in FLAGS},
    "mailbox_ids": array(integer(), description="The mailbox pool."),
    "mailbox_tag": nullable(string(40, description="Or: every mailbox with this tag.")),
    "steps": array(STEP, maxItems=MAX_STEPS),
}
SHOWN_SCHEDULE = {"anyOf": [obj({"always": {"type": "boolean"}}, ["always"]),
                            obj({"timezone": string(), "days": array(enum(DAYS)), "start": string(),
                                 "end": string()}, ["timezone", "days", "start", "end"])]}
COUNT = integer(0)
RATE = nullable({"type": "number", "minimum": 0})
NUMBERS = {name: COUNT for name in ("planned", "sending", "sent", "failed", "cancelled", "uncertain", "replied",
                                    "bounced", "auto_replied", "unsubscribed", "complained")}
NUMBERS.update({name: RATE for name in ("reply_rate", "bounce_rate", "auto_reply_rate", "unsubscribe_rate",
                                        "complaint_rate")})
CHECK = obj({"check": string(), "ok": {"type": "boolean"}, "message": string(), "details": {"type": "object"}},
            ["check", "ok", "message", "details"])

SCHEMAS = {
    "CampaignSummary": obj({
        "id": ID, "name": string(), "status": enum(STATUSES), "schedule": SHOWN_SCHEDULE,
        "daily_limit": LIMIT, "daily_new_leads": LIMIT, "mailbox_tag": nullable(string()),
        "mailbox_ids": array(integer()), "created_at": TIME, "updated_at": TIME, "launched_at": TIME_OR_NULL,
        **{flag: {"type": "boolean"} for flag in FLAGS},
        "leads": obj({name: COUNT for name in ("total", "active", "completed", "stopped")},
                     ["total", "active", "completed", "stopped"]),
    }, ["id", "name", "status", "schedule", "mailbox_ids", *FLAGS, "leads"]),
    "Campaign": {"allOf": [ref("CampaignSummary"), obj({"steps": array(obj({
        "delay_minutes": integer(0), "variants": array(obj({
            "label": string(), "subject": string(), "body": string(), "weight": integer(0)},
            ["label", "subject", "body", "weight"]))}, ["delay_minutes", "variants"]))}, ["steps"])]},
    "CampaignCreate": obj(INPUT, ["name"]),
    "CampaignUpdate": obj(INPUT, description="Only the fields given change; `status` changes through launch, "
                                             "pause and resume."),
    "Enrolment": obj({"enrolled": COUNT, "skipped": COUNT, "reasons": {
        "type": "object", "additionalProperties": COUNT,
        "description": "Skipped leads by reason: not_found, already_enrolled, suppressed, unsubscribed, "
                       "bounced, in_other_campaign."}}, ["enrolled", "skipped", "reasons"]),
    "LaunchChecks": obj({"ready": {"type": "boolean"}, "checks": array(CHECK)}, ["ready", "checks"]),
    "Preview": obj({"lead_id": ID, "steps": array(obj({
        "position": integer(0), "delay_minutes": integer(0), "variants": array(obj({
            "label": string(), "subject": nullable(string()), "body": nullable(string()), "html": nullable(string()),
            "missing": array(string(), description="Values the lead lacks (then subject and body are null).")},
            ["label", "subject", "body", "html", "missing"]))}, ["position", "delay_minutes", "variants"]))},
        ["lead_id", "steps"]),
    "CampaignStats": obj({
        "campaign_id": ID,
        "leads": obj({name: COUNT for name in ("enrolled", "active", "completed", "stopped")}),
        "totals": obj(NUMBERS, list(NUMBERS)),
        "steps": array({"allOf": [obj(NUMBERS, list(NUMBERS)), obj({
            "step": integer(0), "variants": array({"allOf": [obj(NUMBERS, list(NUMBERS)), obj({
                "variant": nullable(string())}, ["variant"])]})}, ["step", "variants"])]}),
    }, ["campaign_id", "leads", "totals", "steps"]),
    "TestSent": obj({"sent": {"type": "boolean"}, "to": string(), "message_id": string(), "subject": string(),
                     "variant": nullable(string())}, ["sent", "to", "message_id", "subject"]),
}

CHANGE_STATUS = {"launch": "Launch a draft campaign", "pause": "Pause an active campaign",
                 "resume": "Resume a paused campaign"}
PATHS = {
    "/api/v1/campaigns": {
        "get": operation("list_campaigns", "List campaigns", tag=TAG, scope="read", role="viewer",
                         parameters=[query("status", enum(STATUSES), "Only campaigns in this state."), *LIST_PARAMS],
                         responses={200: ok(page_of(ref("CampaignSummary")))}),
        "post": operation("create_campaign", "Create a campaign (a draft)", tag=TAG, scope="write", role="member",
                          description="Templates are checked when saved: each mistake is reported against its "
                                      "place (`steps.0.variants.1.body`) with line and column.",
                          body=json_body(ref("CampaignCreate")), responses={201: ok(ref("Campaign"), "Created.")}),
    },
    "/api/v1/campaigns/{campaign_id}": {
        "get": operation("get_campaign", "A campaign with its sequence", tag=TAG, scope="read", role="viewer",
                         parameters=[CAMPAIGN_ID], responses={200: ok(ref("Campaign"))}),
        "patch": operation("update_campaign", "Change a campaign", tag=TAG, scope="write", role="member",
                           description="Also while it runs: only messages not yet sent use the new text.",
                           parameters=[CAMPAIGN_ID], body=json_body(ref("CampaignUpdate")),
                           responses={200: ok(ref("Campaign"))}, errors=(409,)),
        "delete": operation("delete_campaign", "Delete a campaign (not while active)", tag=TAG, scope="write",
                            role="member", parameters=[CAMPAIGN_ID], responses={204: NO_CONTENT}, errors=(409,)),
    },
    "/api/v1/campaigns/{campaign_id}/leads": {"post": operation(
        "enroll_leads", "Enrol leads", tag=TAG, scope="write", role="member", parameters=[CAMPAIGN_ID],
        description="By id or by tag; suppressed, unsubscribed, bounced and already enrolled leads are skipped "
                    "and counted by reason.",
        body=json_body({"oneOf": [obj({"lead_ids": array(integer(), maxItems=100000)}, ["lead_ids"]),
                                  obj({"tag": string(40, minLength=1)}, ["tag"])]}),
        responses={200: ok(ref("Enrolment"))}, errors=(409,))},
    "/api/v1/campaigns/{campaign_id}/launch-checks": {"get": operation(
        "launch_checks", "What a launch would check, and the outcome", tag=TAG, scope="read", role="viewer",
        parameters=[CAMPAIGN_ID], responses={200: ok(ref("LaunchChecks"))})},
    **{f"/api/v1/campaigns/{{campaign_id}}/{action}": {"post": operation(
        f"{action}_campaign", summary, tag=TAG, scope="write", role="member", parameters=[CAMPAIGN_ID],
        description="Launch and resume refuse with 422 `launch_checks_failed`, listing every failed check in "
                    "`details.checks`." if action != "pause" else "",
        responses={200: ok(ref("Campaign"))}, errors=(409,) if action == "pause" else (409, 422))}
        for action, summary in CHANGE_STATUS.items()},
    "/api/v1/campaigns/{campaign_id}/preview": {"get": operation(
        "preview_campaign", "Every step and variant rendered for one lead", tag=TAG, scope="read", role="viewer",
        parameters=[CAMPAIGN_ID, query("lead_id", integer(1, 2**63 - 1), "The lead to render for.", required=True)],
        responses={200: ok(ref("Preview"))})},
    "/api/v1/campaigns/{campaign_id}/stats": {"get": operation(
        "campaign_stats", "Numbers per campaign, step and variant", tag=TAG, scope="read", role="viewer",
        description="Messages by status; leads that replied, bounced ... after each step, with rates over sent.",
        parameters=[CAMPAIGN_ID], responses={200: ok(ref("CampaignStats"))})},
    "/api/v1/campaigns/{campaign_id}/test-send": {"post": operation(
        "test_send", "Send one step to any address, marked [Test]", tag=TAG, scope="write", role="member",
        parameters=[CAMPAIGN_ID],
        body=json_body(obj({"to": EMAIL, "mailbox_id": integer(), "step": integer(0, default=0),
                            "variant": string(description="A variant's label (A, B ...); default: as for a lead."),
                            "lead_id": integer(description="Render as for this lead; default: placeholders.")},
                           ["to", "mailbox_id"])),
        responses={200: ok(ref("TestSent"))}, errors=(502,))},
}
