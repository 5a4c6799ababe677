"""The unified inbox: replies and other inbound mail, responding, read state, lead labels."""

from __future__ import annotations

from appliance.services.inbox import KINDS, MAX_Q
from appliance.services.inbox_labels import BUILTIN_LABELS
from appliance.services.inbox_reply import MAX_BODY
from appliance.services.lead_input import STATUSES as LEAD_STATUSES

from .common import (ID, LIST_PARAMS, TIME, TIME_OR_NULL, array, enum, integer, json_body, nullable, obj, ok,
                     operation, page_of, path_id, query, ref, string)

TAG = "inbox"
REPLY_ID = path_id("reply_id", "inbox message")
WHOLE = string(pattern="^[0-9]*$")
LABEL = string(40, pattern="^[a-z0-9_ -]{1,40}$", description="Lower case letters, digits, spaces, _ and -.")
FILTERS = [
    query("campaign_id", WHOLE, "Only mail about this campaign."), query("mailbox_id", WHOLE, "Only to this mailbox."),
    query("lead_id", WHOLE, "Only from this lead."), query("lead_status", enum(LEAD_STATUSES), "The lead's status."),
    query("label", string(40), "The lead's label."), query("kind", enum(KINDS), "reply, bounce, auto_reply ..."),
    query("unread", enum(("true", "false")), "Only unread, or only read, mail."),
    query("q", string(MAX_Q), "Text in the sender's address or name, or the subject (% and _ match literally)."),
]
MESSAGE = {
    "id": ID, "direction": enum(("in", "out")), "kind": string(description=f"One of {', '.join(KINDS)}, or sent."),
    "classification": string(), "unread": {"type": "boolean"}, "received_at": TIME_OR_NULL,
    "from_address": nullable(string()), "from_name": nullable(string()), "to_address": nullable(string()),
    "subject": nullable(string()), "snippet": nullable(string()), "mailbox_id": nullable(integer()),
    "mailbox_email": nullable(string()), "lead_id": nullable(integer()),
    "lead": nullable(obj({"id": ID, "email": string(), "name": string(), "company": nullable(string()),
                          "status": nullable(string()), "label": nullable(string())}, ["id", "email"])),
    "campaign_id": nullable(integer()), "campaign_name": nullable(string()), "message_id": nullable(integer()),
    "truncated": {"type": "boolean"}, "details": {"type": "object"},
}
BODIES = {
    "header_message_id": nullable(string()), "in_reply_to": nullable(string()), "folder": nullable(string()),
    "body_text": nullable(string()), "body_html": nullable(string(description="As received: never render it.")),
    "body_html_safe": nullable(string(description="Sanitised HTML, remote images left out.")),
    "blocked_images": integer(0), "blocked_image_hosts": array(string()), "sent_by": nullable(string()),
}

SCHEMAS = {
    "InboxMessage": obj(MESSAGE, ["id", "direction", "kind", "unread", "lead", "details"]),
    "InboxMessageDetail": {"allOf": [ref("InboxMessage"), obj(BODIES, ["body_text", "body_html_safe"])]},
    "InboxThreadItem": obj({"type": enum(("step", "in", "out")), "at": TIME_OR_NULL}, ["type"], description=(
        "Our campaign steps to the lead (`step`), their mail (`in`) and replies written here (`out`).")),
    "InboxConversation": {"allOf": [ref("InboxMessageDetail"), obj({"thread": array(ref("InboxThreadItem"))},
                                                                   ["thread"])]},
    "SentReply": {"allOf": [ref("InboxMessageDetail"), obj({"sent_copy": enum(("saved", "failed", "not_needed"))},
                                                           ["sent_copy"])]},
    "InboxLabel": obj({"name": string(), "builtin": {"type": "boolean"}, "color": string(),
                       "sets_status": nullable(string()), "created_at": TIME}, ["name", "builtin", "color"]),
}

PATHS = {
    "/api/v1/replies": {"get": operation(
        "list_replies", "Inbound mail across all mailboxes, newest first", tag=TAG, scope="read", role="viewer",
        parameters=[*FILTERS, *LIST_PARAMS], responses={200: ok(page_of(ref("InboxMessage")))})},
    "/api/v1/replies/{reply_id}": {
        "get": operation("get_reply", "A message with its conversation", tag=TAG, scope="read", role="viewer",
                         description="Reading changes nothing; PATCH marks it read.",
                         parameters=[REPLY_ID], responses={200: ok(ref("InboxConversation"))}),
        "patch": operation("mark_reply", "Mark a message read or unread", tag=TAG, scope="write", role="viewer",
                           parameters=[REPLY_ID], body=json_body(obj({"unread": {"type": "boolean"}}, ["unread"])),
                           responses={200: ok(ref("InboxMessage"))}, errors=(409,)),
    },
    "/api/v1/replies/{reply_id}/respond": {"post": operation(
        "respond_to_reply", "Answer the lead, in the same thread", tag=TAG, scope="write", role="member",
        description="Plain text through the mailbox the lead wrote to. 409 when the address is suppressed or the "
                    "mailbox is gone, 422 for an empty body or mail with nobody to answer, 502 when the mail "
                    "server refuses (the text is given back in `details.body`).",
        parameters=[REPLY_ID], body=json_body(obj({"body": string(MAX_BODY)}, ["body"])),
        responses={201: ok(ref("SentReply"), "Sent.")}, errors=(409, 422, 502))},
    "/api/v1/leads/{lead_id}/label": {"put": operation(
        "label_lead", "Label a lead (null clears)", tag=TAG, scope="write", role="member",
        description="interested, not_interested and meeting_booked also set the lead's status.",
        parameters=[path_id("lead_id", "lead")],
        body=json_body(obj({"label": nullable(LABEL)}, ["label"])),
        responses={200: ok(obj({"lead_id": ID, "label": nullable(string()), "status": string()},
                               ["lead_id", "label", "status"]))})},
    "/api/v1/inbox-labels": {
        "get": operation("list_inbox_labels", "The labels: built-in, then custom", tag=TAG, scope="read",
                         role="viewer", description=f"Built in: {', '.join(BUILTIN_LABELS)}.",
                         responses={200: ok(page_of(ref("InboxLabel")))}),
        "post": operation("create_inbox_label", "Create a custom label", tag=TAG, scope="write", role="member",
                          body=json_body(obj({"name": LABEL, "color": string(7, pattern="^(#[0-9a-fA-F]{6})?$")},
                                             ["name"])),
                          responses={201: ok(ref("InboxLabel"), "Created.")}, errors=(409,)),
    },
    "/api/v1/inbox-labels/{name}": {"delete": operation(
        "delete_inbox_label", "Delete a custom label (leads lose it)", tag=TAG, scope="write", role="admin",
        parameters=[{"name": "name", "in": "path", "required": True, "description": "The label.",
                     "schema": string(40)}],
        responses={200: ok(obj({"name": string(), "leads_cleared": integer(0)}, ["name", "leads_cleared"]))},
        errors=(409,))},
}
