"""Outbound webhooks (admins): endpoints, their delivery log, test events, secret rotation, and
the private-network setting of the SSRF guard."""

from __future__ import annotations

from appliance.services.webhook_input import (ALL_EVENTS, DEFAULT_GRACE_HOURS, EVENT_TYPES, MAX_DESCRIPTION,
                                              MAX_GRACE_HOURS, MAX_URL)

from .common import (ID, LIST_PARAMS, NO_CONTENT, TIME, TIME_OR_NULL, array, enum, integer, json_body, nullable,
                     obj, ok, operation, page_of, path_id, query, ref, string)

TAG = "webhooks"
WEBHOOK_ID = path_id("webhook_id", "webhook")
DELIVERY_STATUSES = ("pending", "delivered", "failed")
EVENTS = array(enum((*EVENT_TYPES, ALL_EVENTS)), minItems=1,
               description="Event types to receive; `*` for all, including types added later.")
FIELDS = {
    "url": string(MAX_URL, format="uri", description="https://, or http:// on a private network. No user name "
                                                     "or password in it."),
    "events": EVENTS,
    "description": string(MAX_DESCRIPTION),
    "enabled": {"type": "boolean", "description": "Enabling again resumes the deliveries that were waiting."},
}
WEBHOOK = {
    "id": ID, **FIELDS, "disabled_reason": nullable(string()), "consecutive_failures": integer(0),
    "failing_since": TIME_OR_NULL, "last_success_at": TIME_OR_NULL, "last_failure_at": TIME_OR_NULL,
    "previous_secret_valid_until": {**TIME_OR_NULL, "description": "While set, deliveries carry a second "
                                                                   "`v1=` signature made with the previous secret."},
    "created_at": TIME, "updated_at": TIME,
}
SECRET = string(description="The signing secret (`whsec_...`). Shown in this response only.")
ATTEMPT = obj({"attempt": integer(1), "at": TIME, "status_code": nullable(integer()), "duration_ms": integer(0),
               "error": nullable(string()), "response": string(description="The start of the response body.")},
              ["attempt", "at", "status_code", "duration_ms", "error", "response"])

SCHEMAS = {
    "Webhook": obj(WEBHOOK, list(WEBHOOK)),
    "WebhookDetail": {"allOf": [ref("Webhook"), obj({"pending_deliveries": integer(0)}, ["pending_deliveries"])]},
    "WebhookWithSecret": {"allOf": [ref("WebhookDetail"), obj({"secret": SECRET}, ["secret"])]},
    "WebhookCreate": obj(FIELDS, ["url", "events"], closed=True),
    "WebhookUpdate": obj(FIELDS, closed=True, description="Only the fields given change."),
    "WebhookRotate": obj({"grace_hours": integer(0, MAX_GRACE_HOURS, default=DEFAULT_GRACE_HOURS, description=(
        "How long the previous secret keeps signing too; 0 stops it at once."))}, closed=True),
    "WebhookDelivery": obj({
        "id": ID, "event_id": string(), "event_type": string(), "status": enum(DELIVERY_STATUSES),
        "attempts": integer(0), "next_attempt_at": TIME_OR_NULL, "last_status_code": nullable(integer()),
        "last_error": nullable(string()), "duration_ms": nullable(integer(0)), "created_at": TIME,
        "finished_at": TIME_OR_NULL, "log": array(ATTEMPT, description="Every attempt, oldest first.")},
        ["id", "event_id", "event_type", "status", "attempts", "next_attempt_at", "last_status_code", "last_error",
         "duration_ms", "created_at", "finished_at", "log"]),
    "WebhookSettings": obj({"allow_private_networks": {"type": "boolean", "description": (
        "Let webhooks reach 10/8, 172.16/12, 192.168/16 and fc00::/7 (on-premises receivers).")}},
        ["allow_private_networks"], closed=True),
}


def _admin(operation_id: str, summary: str, **kwargs) -> dict:
    return operation(operation_id, summary, tag=TAG, scope="admin", role="admin", **kwargs)


PATHS = {
    "/api/v1/webhooks": {
        "get": _admin("list_webhooks", "List webhooks", parameters=LIST_PARAMS,
                      responses={200: ok(page_of(ref("Webhook")))}),
        "post": _admin("create_webhook", "Add a webhook", body=json_body(ref("WebhookCreate")),
                       description="The response carries the signing secret, the only time it is shown.",
                       responses={201: ok(ref("WebhookWithSecret"), "Created.")}),
    },
    "/api/v1/webhooks/{webhook_id}": {
        "get": _admin("get_webhook", "A webhook with its health", parameters=[WEBHOOK_ID],
                      responses={200: ok(ref("WebhookDetail"))}),
        "patch": _admin("update_webhook", "Change a webhook", parameters=[WEBHOOK_ID],
                        body=json_body(ref("WebhookUpdate")), responses={200: ok(ref("WebhookDetail"))}),
        "delete": _admin("delete_webhook", "Delete a webhook and its waiting deliveries", parameters=[WEBHOOK_ID],
                         responses={204: NO_CONTENT}),
    },
    "/api/v1/webhooks/{webhook_id}/deliveries": {"get": _admin(
        "list_webhook_deliveries", "The delivery log, newest first", parameters=[
            WEBHOOK_ID, query("status", enum(DELIVERY_STATUSES), "Only deliveries in this state."), *LIST_PARAMS],
        responses={200: ok(page_of(ref("WebhookDelivery")))})},
    "/api/v1/webhooks/{webhook_id}/test": {"post": _admin(
        "test_webhook", "Send a test event now", parameters=[WEBHOOK_ID],
        description="A `webhook.test` event, delivered once right away (also to a disabled webhook); the answer "
                    "is its delivery with status code, duration and error.",
        responses={200: ok(ref("WebhookDelivery"))})},
    "/api/v1/webhooks/{webhook_id}/rotate-secret": {"post": _admin(
        "rotate_webhook_secret", "Replace the signing secret", parameters=[WEBHOOK_ID],
        body=json_body(ref("WebhookRotate"), required=False),
        description="The new secret is in this response only. During the grace period each delivery is signed "
                    "with both secrets.",
        responses={200: ok(ref("WebhookWithSecret"))})},
    "/api/v1/settings/webhooks": {
        "get": _admin("get_webhook_settings", "The SSRF guard's private-network setting",
                      responses={200: ok(ref("WebhookSettings"))}),
        "put": _admin("save_webhook_settings", "Allow or refuse private networks for webhooks",
                      body=json_body(ref("WebhookSettings")), responses={200: ok(ref("WebhookSettings"))}),
    },
}
