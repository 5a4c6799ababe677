"""One-click unsubscribe (RFC 8058): a signed link names the lead and the campaign.

The POST suppresses the address at once (suppression list, reason `unsubscribed`), marks the
lead unsubscribed and stops every active sequence of the lead, all in one transaction, so the
sending engine's claim-time check sees it before any further message. Using the link twice
changes nothing more. GET only shows a confirmation page: link scanners that prefetch URLs
must not unsubscribe anyone.
"""

from __future__ import annotations

from ..db import Database, campaigns_repo, messages_repo
from ..db.timefmt import utcnow_iso
from . import links, suppressions, webhooks
from .audit import Actor


def lead_for(db: Database, keys, token: str):
    """The lead a genuine token names, or None (forged, altered, or the lead was erased)."""
    ids = links.read_unsubscribe_token(keys.tokens, token)
    if ids is None:
        return None
    found = campaigns_repo.leads_by_ids(db.connection(), [ids[0]])
    return found[0] if found else None


def unsubscribe(db: Database, keys, token: str, *, via: str) -> dict | None:
    ids = links.read_unsubscribe_token(keys.tokens, token)
    if ids is None:
        return None
    lead_id, campaign_id = ids
    now = utcnow_iso()
    with db.transaction(durable=True) as conn:  # the person is told it is done
        found = campaigns_repo.leads_by_ids(conn, [lead_id])
        if not found:
            return None
        lead = found[0]
        already = lead["status"] == "unsubscribed"
        suppressions.suppress(conn, Actor("anonymous", None, lead["email"]), lead["email"], reason="unsubscribed",
                              source=f"{via}, campaign {campaign_id}")
        if not already:
            messages_repo.set_lead_status(conn, lead_id, "unsubscribed", now)
            messages_repo.stop_lead_enrollments(conn, lead_id, "unsubscribed")
            messages_repo.add_event(conn, "unsubscribed", campaign_id=campaign_id, lead_id=lead_id, message_id=None,
                                    step=None, variant=None, data={"via": via}, now=now)
            campaign = campaigns_repo.by_id(conn, campaign_id)
            webhooks.emit(conn, "lead.unsubscribed", {
                "lead": webhooks.lead_data(campaigns_repo.leads_by_ids(conn, [lead_id])[0]),
                "campaign": webhooks.campaign_data(campaign) if campaign else None, "via": via})
    return {"email": lead["email"], "already": already}
