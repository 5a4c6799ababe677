"""Every blueprint of the app, registered in this order by webui.create_app()."""

from . import api_auth, api_keys, api_users, health, pages, setup, ui_api_keys, ui_auth, ui_users, wellknown
from . import api_audit, ui_audit
from . import ui_oidc
from . import api_mailboxes, ui_mailboxes
from . import api_leads, ui_leads
from . import api_suppressions, ui_suppressions, api_settings, ui_settings
from . import api_campaigns, ui_campaigns
from . import api_jobs
from . import api_messages, ui_sending
from . import unsubscribe
from . import api_webhooks, ui_webhooks
from . import api_replies, ui_inbox
from . import api_openapi

BLUEPRINTS = [
    health.bp,
    wellknown.bp,
    pages.bp,
    setup.bp,
    ui_auth.bp,
    ui_oidc.bp,
    ui_users.bp,
    ui_audit.bp,
    ui_api_keys.bp,
    api_auth.bp,
    api_users.bp,
    api_audit.bp,
    api_keys.bp,
    api_jobs.bp,
    api_mailboxes.bp,
    ui_mailboxes.bp,
    api_leads.bp,
    ui_leads.bp,
    api_suppressions.bp,
    ui_suppressions.bp,
    api_settings.bp,
    ui_settings.bp,
    api_campaigns.bp,
    unsubscribe.bp,
    ui_campaigns.bp,
    api_messages.bp,
    ui_sending.bp,
    api_webhooks.bp,
    ui_webhooks.bp,
    api_replies.bp,
    ui_inbox.bp,
    api_openapi.bp,
]
