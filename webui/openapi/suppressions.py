"""The suppression list, and the sender identity every email's footer carries."""

from __future__ import annotations

from appliance.services.sender_identity import MAX_ADDRESS, MAX_COMPANY, MAX_WEBSITE
from appliance.services.suppressions import KINDS, MAX_NOTE, MAX_SOURCE, REASONS

from .common import (ID, LIST_PARAMS, NO_CONTENT, TIME, array, csv_body, enum, integer, json_body, nullable, obj,
                     ok, operation, page_of, path_id, query, ref, string)

TAG = "suppressions"
ENTRY_ID = path_id("suppression_id", "suppression entry")
FILTERS = [
    query("kind", enum(KINDS), "Only addresses, or only domains."),
    query("reason", enum(REASONS), "Only entries with this reason."),
    query("q", string(254), "Part of the value or source."),
]
SUPPRESSION = {"id": ID, "value": string(254), "kind": enum(KINDS), "reason": enum(REASONS),
               "source": string(MAX_SOURCE), "created_by": nullable(integer()), "created_at": TIME}

SCHEMAS = {
    "Suppression": obj(SUPPRESSION, list(SUPPRESSION)),
    "SuppressionAdded": {"allOf": [ref("Suppression"), obj({"created": {"type": "boolean"}}, ["created"])]},
    "SuppressionCreate": obj({
        "value": string(description="name@example.com, or example.com (covers its subdomains)"),
        "kind": enum(KINDS, description="Optional: follows from the value."),
        "reason": enum(REASONS, default="manual"), "source": string(MAX_SOURCE)}, ["value"]),
    "SuppressionCheck": obj({"email": string(), "suppressed": {"type": "boolean"},
                             "match": nullable(ref("Suppression"))}, ["email", "suppressed", "match"]),
    "SuppressionImport": obj({"imported": integer(0), "already_suppressed": integer(0), "skipped": integer(0),
                              "errors": ref("ImportErrors"), "errors_truncated": {"type": "boolean"}},
                             ["imported", "already_suppressed", "skipped", "errors", "errors_truncated"]),
    "SenderIdentity": obj({"company": string(MAX_COMPANY), "postal_address": string(MAX_ADDRESS),
                           "website": string(MAX_WEBSITE)}, ["company", "postal_address", "website"]),
    "SenderIdentityView": {"allOf": [ref("SenderIdentity"), obj({
        "problems": array(string(), description="What blocks a launch; empty when complete."),
        "footer_text": string(description="The footer lines every message carries.")},
        ["problems", "footer_text"])]},
}

PATHS = {
    "/api/v1/suppressions": {
        "get": operation("list_suppressions", "List suppressions, newest first", tag=TAG, scope="read",
                         role="viewer", parameters=[*FILTERS, *LIST_PARAMS],
                         responses={200: ok(page_of(ref("Suppression")))}),
        "post": operation("add_suppression", "Suppress an address or a domain", tag=TAG, scope="write",
                          role="member", body=json_body(ref("SuppressionCreate")),
                          responses={201: ok(ref("SuppressionAdded"), "Added."),
                                     200: ok(ref("SuppressionAdded"), "Already listed: the first entry, kept.")}),
    },
    "/api/v1/suppressions/check": {"get": operation(
        "check_suppression", "Is this address suppressed, and by which entry?", tag=TAG, scope="read",
        role="viewer", parameters=[query("email", string(254), "The address.", required=True)],
        responses={200: ok(ref("SuppressionCheck"))})},
    "/api/v1/suppressions/{suppression_id}": {
        "get": operation("get_suppression", "A suppression entry", tag=TAG, scope="read", role="viewer",
                         parameters=[ENTRY_ID], responses={200: ok(ref("Suppression"))}),
        "delete": operation(
            "delete_suppression", "Remove an entry (mail may reach that address again)", tag=TAG, scope="admin",
            role="admin", description="The entry and the note are kept in the audit log.",
            parameters=[ENTRY_ID, query("note", string(MAX_NOTE), "Why, for the audit log.")],
            body=json_body(obj({"note": string(MAX_NOTE)}), required=False),
            responses={204: NO_CONTENT}),
    },
    "/api/v1/suppressions/import": {"post": operation(
        "import_suppressions", "Add many entries from a CSV file", tag=TAG, scope="write", role="member",
        description="A `value` (or `email`/`domain`) column, optional `reason` and `source`. Bad rows are listed "
                    "by line; values already listed keep their first entry.",
        parameters=[query("reason", enum(REASONS), "For rows without their own (default manual)."),
                    query("source", string(MAX_SOURCE), "For rows without their own.")],
        body=csv_body("The CSV file with a header line."),
        responses={200: ok(ref("SuppressionImport"))}, errors=(422,))},
    "/api/v1/suppressions/export": {"get": operation(
        "export_suppressions", "Export the list as CSV", tag=TAG, scope="read", role="viewer",
        parameters=FILTERS, responses={200: ok(string(), "The CSV file (formula-escaped).", "text/csv")})},
    "/api/v1/settings/sender-identity": {
        "get": operation("get_sender_identity", "The sender identity", tag="settings", scope="read",
                         role="viewer", responses={200: ok(ref("SenderIdentityView"))}),
        "put": operation(
            "put_sender_identity", "Replace the sender identity", tag="settings", scope="admin", role="admin",
            description="Company name and postal address are required (CAN-SPAM, CASL); campaigns cannot "
                        "launch without them.",
            body=json_body(obj({"company": string(MAX_COMPANY, minLength=1),
                                "postal_address": string(minLength=1, description=(
                                    f"Up to 8 lines and {MAX_ADDRESS} characters.")),
                                "website": string(MAX_WEBSITE)}, ["company", "postal_address"])),
            responses={200: ok(ref("SenderIdentityView"))}),
    },
}
