"""Leads: the people campaigns write to; CSV import (with an optional column mapping) and export."""

from __future__ import annotations

from appliance.services.lead_import import MODES
from appliance.services.lead_input import CONSENTS, MAX_CUSTOM_FIELDS, MAX_CUSTOM_VALUE, STATUSES

from .common import (EMAIL, ID, LIST_PARAMS, NO_CONTENT, TAGS, TIME, csv_body, enum, integer, json_body,
                     nullable, obj, ok, operation, page_of, path_id, query, ref, string)

TAG = "leads"
LEAD_ID = path_id("lead_id", "lead")
FILTERS = [
    query("status", enum(STATUSES), "Only leads with this status."),
    query("tag", string(40), "Only leads with this tag."),
    query("q", string(200), "Part of the name or company, an address prefix, or `@domain` for a whole domain."),
]
TEXT = {"first_name": 200, "last_name": 200, "company": 200, "title": 200, "phone": 50, "website": 500,
        "timezone": 64, "source": 200}
CUSTOM = {"type": "object", "maxProperties": MAX_CUSTOM_FIELDS,
          "additionalProperties": nullable(string(MAX_CUSTOM_VALUE)),
          "description": "Your own fields by name (usable in templates as {{name}}); on update a null or "
                         "empty value removes that field."}
INPUT = {
    "email": EMAIL, **{name: string(limit) for name, limit in TEXT.items()},
    "status": enum(STATUSES), "consent": enum(CONSENTS, description="The CASL consent basis."),
    "tags": {"anyOf": [TAGS, string(1000, description="Tags separated by , ; or |")]},
    "custom": CUSTOM,
}
SHOWN = {"email": EMAIL, **{name: string(limit) for name, limit in TEXT.items()}, "status": enum(STATUSES),
         "consent": enum(CONSENTS), "tags": TAGS, "custom": {"type": "object", "additionalProperties": string()}}
COLUMNS = query("columns", string(4000, pattern=r"^[a-z0-9_:,]*$"), (
    "Where each column goes, in order, separated by commas: a lead field (`email`, `first_name`, ..., `tags`), "
    "`custom:<name>`, or nothing to skip the column. Default: guessed from the header names."))

SCHEMAS = {
    "Lead": obj({"id": ID, **SHOWN, "created_at": TIME, "updated_at": TIME,
                 "label": nullable(string(description="Set from the inbox (interested, meeting_booked ... or custom).")),
                 "soft_bounces": integer(0, description="Temporary bounces so far; the third suppresses the address.")},
                ["id", *SHOWN, "label", "soft_bounces", "created_at", "updated_at"]),
    "LeadCreate": obj(INPUT, ["email"], closed=True),
    "LeadUpdate": obj(INPUT, closed=True, description="Fields given are set (blank clears), `tags` replaces the "
                                                      "list, `custom` is merged."),
    "LeadImport": obj({
        "imported": integer(0), "updated": integer(0), "skipped": integer(0), "invalid": integer(0),
        "errors": ref("ImportErrors"), "errors_listed": integer(0), "rows": integer(0),
        "duplicates_in_file": integer(0), "mode": enum(MODES), "encoding": string(), "delimiter": string(),
        "encoding_note": string(),
    }, ["imported", "updated", "skipped", "errors", "rows"]),
}

PATHS = {
    "/api/v1/leads": {
        "get": operation("list_leads", "List leads, newest first", tag=TAG, scope="read", role="viewer",
                         parameters=[*FILTERS, *LIST_PARAMS], responses={200: ok(page_of(ref("Lead")))}),
        "post": operation("create_lead", "Add a lead", tag=TAG, scope="write", role="member",
                          body=json_body(ref("LeadCreate")), responses={201: ok(ref("Lead"), "Added.")},
                          errors=(409,)),
    },
    "/api/v1/leads/{lead_id}": {
        "get": operation("get_lead", "A lead", tag=TAG, scope="read", role="viewer", parameters=[LEAD_ID],
                         responses={200: ok(ref("Lead"))}),
        "patch": operation("update_lead", "Change a lead", tag=TAG, scope="write", role="member",
                           parameters=[LEAD_ID], body=json_body(ref("LeadUpdate")), responses={200: ok(ref("Lead"))},
                           errors=(409,)),
        "delete": operation("delete_lead", "Delete a lead", tag=TAG, scope="write", role="member",
                            parameters=[LEAD_ID], responses={204: NO_CONTENT}),
    },
    "/api/v1/leads/import": {"post": operation(
        "import_leads", "Import leads from a CSV file", tag=TAG, scope="write", role="member",
        description="Bad rows are listed by line number while the good ones import; an address already "
                    "known is skipped or merged (`mode`); any unmapped column becomes a custom field.",
        parameters=[query("mode", enum(MODES, default="skip"), "For addresses already known: skip, or merge "
                                                                   "(non-empty values replace, tags are added)."),
                    query("tag", string(1000), "Tags added to every imported lead."),
                    query("source", string(200), "The source of rows without their own."), COLUMNS],
        body=csv_body("The CSV file (UTF-8, UTF-16 or Windows-1252; comma, semicolon or tab) with a header line."),
        responses={200: ok(ref("LeadImport"))}, errors=(422,))},
    "/api/v1/leads/export": {"get": operation(
        "export_leads", "Export leads as CSV", tag=TAG, scope="read", role="viewer",
        description="Every lead matching the filters; cells are formula-escaped. Recorded in the audit log.",
        parameters=FILTERS, responses={200: ok(string(), "The CSV file.", "text/csv")})},
}
