"""Response headers (Talisman: strict CSP, HSTS, nosniff, referrer policy) and trusted proxies."""

from __future__ import annotations

import ipaddress

from flask import Flask
from flask_talisman import Talisman

from appliance.config import Config

# No inline script or style anywhere, so no 'unsafe-inline' and no nonces are needed.
CSP = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "object-src": "'none'",
    "base-uri": "'none'",
}
HSTS_MAX_AGE = 63072000  # two years, the preload list's expectation


def init_app(app: Flask, config: Config) -> None:
    Talisman(
        app,
        # HTTPS is terminated by the front (nginx); the app itself serves plain HTTP on
        # loopback, so it cannot redirect. HSTS goes out whenever the request came over HTTPS.
        force_https=False,
        strict_transport_security=True,
        strict_transport_security_preload=True,
        strict_transport_security_max_age=HSTS_MAX_AGE,
        strict_transport_security_include_subdomains=True,
        content_security_policy=CSP,
        frame_options="DENY",
        referrer_policy="same-origin",
        session_cookie_secure=False,  # decided per request by the session layer (HTTPS or not)
        permissions_policy={"geolocation": "()", "camera": "()", "microphone": "()"},
    )
    app.wsgi_app = TrustedProxyMiddleware(app.wsgi_app, config.trusted_proxies)


class TrustedProxyMiddleware:
    """Honour X-Forwarded-For/-Proto only when the direct peer is a configured proxy.

    Anyone else's forwarding headers are removed, so a client cannot spoof its address
    (and dodge a rate limit) or claim HTTPS. From a trusted proxy, the client is the
    right-most address in X-Forwarded-For that is not itself a trusted proxy.
    """

    def __init__(self, app, networks):
        self.app = app
        self.networks = tuple(networks)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def __call__(self, environ, start_response):
        forwarded_for = environ.pop("HTTP_X_FORWARDED_FOR", "")
        forwarded_proto = environ.pop("HTTP_X_FORWARDED_PROTO", "")
        if self.networks and self._trusted(environ.get("REMOTE_ADDR", "")):
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            while hops and self._trusted(hops[-1]):
                hops.pop()
            if hops:
                environ["REMOTE_ADDR"] = hops[-1]
            if forwarded_proto.strip().lower() in ("http", "https"):
                environ["wsgi.url_scheme"] = forwarded_proto.strip().lower()
        return self.app(environ, start_response)
