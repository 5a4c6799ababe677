"""Every blueprint of the app, registered in this order by webui.create_app()."""

from . import api_auth, api_users, health, pages, setup, ui_auth, ui_users, wellknown

BLUEPRINTS = [
    health.bp,
    wellknown.bp,
    pages.bp,
    setup.bp,
    ui_auth.bp,
    ui_users.bp,
    api_auth.bp,
    api_users.bp,
]
