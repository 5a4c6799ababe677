"""/.well-known/security.txt (RFC 9116): where to report a vulnerability, until when."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, Response

from ..context import appliance, public_url

bp = Blueprint("wellknown", __name__)
STARTED = datetime.now(timezone.utc)


@bp.get("/.well-known/security.txt")
def security_txt():
    config = appliance().config
    if config.security_txt_expires is not None:
        expires = datetime.combine(config.security_txt_expires, datetime.min.time(), timezone.utc)
    else:
        expires = STARTED + timedelta(days=365)
    contact = config.security_contact
    if "@" in contact and not contact.startswith(("mailto:", "https:")):
        contact = "mailto:" + contact
    body = (f"Contact: {contact}\n"
            f"Expires: {expires.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
            f"Preferred-Languages: en\n"
            f"Canonical: {public_url()}/.well-known/security.txt\n")
    return Response(body, mimetype="text/plain")
