"""Outbound messages, the queue of upcoming sends, and settling an uncertain send."""

from __future__ import annotations

from appliance.services.messages import STATUSES

from .common import (ID, LIST_PARAMS, TIME, TIME_OR_NULL, array, enum, integer, json_body, nullable, obj, ok,
                     operation, page_of, path_id, query, ref, string)

TAG = "messages"
WHOLE = string(pattern="^[0-9]+$")
HELD_BY = ("no_mailbox", "campaign_draft", "campaign_paused", "campaign_completed", "mailbox_paused",
           "mailbox_error", "mailbox_off")
MESSAGE = {
    "id": ID, "campaign_id": integer(), "campaign_name": nullable(string()), "lead_id": integer(),
    "to_email": string(), "mailbox_id": nullable(integer()), "mailbox_email": nullable(string()),
    "step": integer(0), "variant": nullable(string()), "status": enum(STATUSES),
    "message_id": nullable(string(description="The Message-ID header, fixed before the first attempt.")),
    "subject": nullable(string()), "planned_at": TIME_OR_NULL, "claimed_at": TIME_OR_NULL, "sent_at": TIME_OR_NULL,
    "attempts": integer(0), "smtp_code": nullable(integer()), "last_error": nullable(string()), "created_at": TIME,
}
QUEUED = {
    "id": ID, "campaign_id": integer(), "campaign_name": nullable(string()), "campaign_status": nullable(string()),
    "lead_id": integer(), "to_email": string(), "mailbox_id": nullable(integer()),
    "mailbox_email": nullable(string()), "mailbox_status": nullable(string()), "step": integer(0),
    "planned_at": TIME, "attempts": integer(0), "last_error": nullable(string()),
    "held_by": nullable(enum(HELD_BY, description="What keeps it from going now, if anything.")),
}

SCHEMAS = {
    "Message": obj(MESSAGE, list(MESSAGE)),
    "MessageDetail": {"allOf": [ref("Message"), obj({"events": array(obj({"kind": string(), "at": TIME},
                                                                           ["kind", "at"]))}, ["events"])]},
    "QueuedMessage": obj(QUEUED, list(QUEUED)),
}

PATHS = {
    "/api/v1/messages": {"get": operation(
        "list_messages", "Outbound messages, newest first", tag=TAG, scope="read", role="viewer",
        parameters=[query("campaign_id", WHOLE, "Only this campaign's."), query("lead_id", WHOLE, "Only to this lead."),
                    query("status", enum(STATUSES), "Only in this state."),
                    query("mailbox_id", WHOLE, "Only through this mailbox."), *LIST_PARAMS],
        responses={200: ok(page_of(ref("Message")))})},
    "/api/v1/messages/{message_id}": {"get": operation(
        "get_message", "A message with its events (replied, bounced ...)", tag=TAG, scope="read", role="viewer",
        parameters=[path_id("message_id", "message")], responses={200: ok(ref("MessageDetail"))})},
    "/api/v1/messages/{message_id}/resolve": {"post": operation(
        "resolve_message", "Settle an uncertain send", tag=TAG, scope="write", role="member",
        description="`sent: true`: it went (the lead's sequence moves on); `false`: send it again (same "
                    "Message-ID). 409 unless the message is uncertain.",
        parameters=[path_id("message_id", "message")],
        body=json_body(obj({"sent": {"type": "boolean"}}, ["sent"])),
        responses={200: ok(ref("MessageDetail"))}, errors=(409,))},
    "/api/v1/queue": {"get": operation(
        "queue", "Upcoming sends in the order they are due", tag=TAG, scope="read", role="viewer",
        parameters=[query("mailbox_id", WHOLE, "Only through this mailbox."), LIST_PARAMS[0],
                    query("cursor", string(100), "`next_cursor` of the previous page (opaque).")],
        responses={200: ok(page_of(ref("QueuedMessage")))})},
}
