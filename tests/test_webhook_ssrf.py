"""The webhook SSRF guard: it judges the addresses actually connected to, not the URL text.

A real receiver listens on 127.0.0.1, so every loopback spelling that slipped through would
show up as a request there. Resolvers are injected to play DNS (a public-looking name that
resolves to 127.0.0.1, a name that changes its answer between lookups).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from appliance.net.address_policy import AddressPolicy, category
from appliance.net.http_client import OutboundError, OutboundPolicy, post, system_resolver
from appliance.services import audit, webhook_delivery, webhooks
from appliance.services.authz import Principal

from .support.access import add_user
from .support.appliance import make_config
from .support.mailstack import make_certs, server_context
from .support.webhook_receiver import Receiver

BODY = b'{"id":"evt_test","type":"webhook.test"}'
HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def admin(appliance) -> Principal:
    return Principal(user_id=add_user(appliance, "admin@x.test", role="admin"), email="admin@x.test", role="admin",
                     via="session")


def resolver_for(table: dict[str, list[str]], calls: list | None = None):
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host in table:
            answer = table[host]
            return answer.pop(0) if answer and isinstance(answer[0], list) else answer
        return system_resolver(host, port)
    return resolve


def refused(url: str, policy: OutboundPolicy) -> OutboundError:
    with pytest.raises(OutboundError) as caught:
        post(url, BODY, HEADERS, policy)
    return caught.value


# -- what is blocked ----------------------------------------------------------------------------

BLOCKED_HOSTS = {
    # loopback, written every way a resolver accepts (the receiver is there: nothing may arrive)
    "127.0.0.1": "loopback", "127.9.9.9": "loopback", "2130706433": "loopback", "0x7f000001": "loopback",
    "0177.0.0.1": "loopback", "127.1": "loopback", "017700000001": "loopback", "localhost": "loopback",
    "[::1]": "loopback", "[::ffff:127.0.0.1]": "loopback", "[::ffff:7f00:1]": "loopback",
    "[::127.0.0.1]": "loopback", "[64:ff9b::127.0.0.1]": "loopback", "[2002:7f00:1::1]": "loopback",
    # private networks (without the admin's setting)
    "10.0.0.1": "private", "172.16.5.4": "private", "192.168.1.1": "private", "[fd00::1]": "private",
    "[fc00::1]": "private", "[::ffff:10.0.0.1]": "private", "[64:ff9b::a00:1]": "private",
    "[64:ff9b:1::a00:1]": "private",
    # never reachable
    "169.254.169.254": "link_local", "[::ffff:169.254.169.254]": "link_local", "[fe80::1]": "link_local",
    "100.64.0.1": "shared", "100.100.100.200": "shared",
    "0.0.0.0": "unspecified", "0": "unspecified", "[::]": "unspecified",
    "224.0.0.1": "multicast", "[ff02::1]": "multicast", "255.255.255.255": "reserved", "240.0.0.1": "reserved",
    "192.0.2.10": "reserved", "198.18.0.1": "reserved", "[2001:db8::1]": "reserved", "[2001::1]": "reserved",
}


def test_every_blocked_form_is_refused_at_connect_time(receiver):
    policy = OutboundPolicy(timeout=2)
    for host, kind in BLOCKED_HOSTS.items():
        error = refused(f"http://{host}:{receiver.port}/hook", policy)
        assert error.code == "blocked_address", (host, error.message)
        assert {"loopback": "loopback", "private": "private network", "link_local": "link-local",
                "shared": "carrier-grade NAT", "unspecified": "unspecified", "multicast": "multicast",
                "reserved": "reserved"}[kind] in error.message, (host, error.message)
    assert receiver.requests == []


def test_the_categories_of_addresses():
    for text, kind in [("8.8.8.8", "public"), ("93.184.216.34", "public"), ("2606:4700::1111", "public"),
                       ("64:ff9b::808:808", "public"), ("::ffff:8.8.8.8", "public"), ("172.32.0.1", "public"),
                       ("100.128.0.1", "public"), ("172.31.255.255", "private"), ("100.127.255.255", "shared"),
                       ("169.254.0.1", "link_local"), ("fec0::1", "private"), ("::2", "unspecified")]:
        assert category(ipaddress.ip_address(text)) == kind, text
    assert AddressPolicy(allow_private=True).check("10.1.2.3")
    with pytest.raises(Exception, match="loopback"):
        AddressPolicy(allow_private=True).check("127.0.0.1")  # private does not include loopback
    with pytest.raises(Exception, match="link-local"):
        AddressPolicy(allow_private=True, allow_loopback=True).check("169.254.169.254")  # never


def test_a_name_is_judged_by_every_address_it_resolves_to(receiver):
    policy = OutboundPolicy(timeout=2, resolver=resolver_for({
        "crm.example.com": ["127.0.0.1"],                         # a public-looking name pointing inside
        "mixed.example.com": ["93.184.216.34", "10.0.0.7"],       # one bad address spoils the name
        "metadata.example.com": ["169.254.169.254"],
    }))
    for name in ("crm.example.com", "mixed.example.com", "metadata.example.com"):
        assert refused(f"http://{name}:{receiver.port}/", policy).code == "blocked_address"
    # the real resolver, too: localhost is loopback wherever it points
    assert refused(f"http://localhost:{receiver.port}/", OutboundPolicy(timeout=2)).code == "blocked_address"
    assert refused("http://no-such-host.invalid/", OutboundPolicy(timeout=2)).code == "dns_failed"
    assert receiver.requests == []


def test_the_checked_address_is_the_one_connected_to(receiver):
    """DNS rebinding: the name answers 127.0.0.1 (allowed here) once, then something else.
    There is no second lookup: the socket goes to the address that was checked."""
    calls: list[str] = []
    policy = OutboundPolicy(addresses=AddressPolicy(allow_loopback=True), timeout=5, resolver=resolver_for(
        {"rebind.example.com": [["127.0.0.1"], ["169.254.169.254"], ["169.254.169.254"]]}, calls))
    response = post(f"http://rebind.example.com:{receiver.port}/in", BODY, HEADERS, policy)
    assert response.status == 200 and response.address == "127.0.0.1"
    assert calls == ["rebind.example.com"]
    [got] = receiver.requests
    assert got.headers["Host"] == f"rebind.example.com:{receiver.port}" and got.body == BODY
    # and the next lookup's answer is judged afresh
    assert refused(f"http://rebind.example.com:{receiver.port}/in", policy).code == "blocked_address"


def test_redirects_are_not_followed(appliance, admin):
    target = Receiver()
    first = Receiver(default=302, location=target.url("/elsewhere"))
    try:
        policy = OutboundPolicy(addresses=AddressPolicy(allow_loopback=True), timeout=5)
        assert post(first.url(), BODY, HEADERS, policy).status == 302
        assert len(first.requests) == 1 and target.requests == []

        # through the delivery pipeline: a failed attempt, retried later, never followed
        hook = webhooks.create(appliance.db, appliance.keys, appliance.config, admin,
                               {"url": f"http://crm.example.com:{first.port}/hook", "events": ["*"]})
        with appliance.db.transaction() as conn:
            webhooks.emit(conn, "campaign.paused", {"campaign": {"id": 1}})
        rebound = replace(policy, resolver=resolver_for({"crm.example.com": ["127.0.0.1"]}))
        assert webhook_delivery.deliver_due(appliance.db, appliance.keys, rebound)["failed_attempts"] == 1
        [delivery] = webhook_delivery.delivery_log(appliance.db, admin, hook["id"])
        assert delivery["status"] == "pending" and delivery["last_status_code"] == 302
        assert "redirects are not followed" in delivery["last_error"] and target.requests == []
    finally:
        first.stop()
        target.stop()


def test_a_delivery_to_a_name_that_resolves_inside_is_refused_and_logged(appliance, admin, receiver):
    """The URL passes the save-time checks (it is a name); the connect-time guard refuses it."""
    hook = webhooks.create(appliance.db, appliance.keys, appliance.config, admin,
                           {"url": f"http://crm.example.com:{receiver.port}/hook", "events": ["*"]})
    with appliance.db.transaction() as conn:
        webhooks.emit(conn, "lead.status_changed", {"lead": {"id": 1}})
    policy = replace(webhook_delivery.policy_for(appliance.db, appliance.config),
                     resolver=resolver_for({"crm.example.com": ["127.0.0.1"]}))
    assert webhook_delivery.deliver_due(appliance.db, appliance.keys, policy) == {"delivered": 0, "failed_attempts": 1}
    [delivery] = webhook_delivery.delivery_log(appliance.db, admin, hook["id"])
    assert delivery["last_error"].startswith("blocked_address: 127.0.0.1 is a loopback address")
    assert delivery["last_status_code"] is None and receiver.requests == []


# -- what an admin or the operator may allow ---------------------------------------------------

def test_private_networks_only_with_the_admin_setting(appliance, client, admin):
    from appliance.services import api_keys
    key = api_keys.create(appliance.db, admin, name="k", scopes=["read", "write", "admin"], cost=12)["key"]
    auth = {"Authorization": f"Bearer {key}"}
    private = {"url": "http://10.20.30.40:8080/hook", "events": ["*"]}
    r = client.post("/api/v1/webhooks", json=private, headers=auth)
    assert r.status_code == 400 and "Settings → Webhooks" in r.get_json()["error"]["details"]["fields"]["url"]
    assert client.get("/api/v1/settings/webhooks", headers=auth).get_json() == {"allow_private_networks": False}
    r = client.put("/api/v1/settings/webhooks", json={"allow_private_networks": "yes"}, headers=auth)
    assert r.status_code == 400 and "allow_private_networks" in r.get_json()["error"]["details"]["fields"]

    assert client.put("/api/v1/settings/webhooks", json={"allow_private_networks": True},
                      headers=auth).get_json() == {"allow_private_networks": True}
    assert audit.search(appliance.db, action="webhook.settings_changed", limit=1)[0]["metadata"] == {
        "allow_private_networks": True}
    assert client.post("/api/v1/webhooks", json=private, headers=auth).status_code == 201
    # the guard now lets a private address through to the connection attempt itself
    policy = replace(webhook_delivery.policy_for(appliance.db, appliance.config), timeout=0.5,
                     resolver=resolver_for({"crm.internal": ["10.255.255.1"]}))
    assert policy.addresses.allow_private and not policy.addresses.allow_loopback
    try:  # whatever the network then does with it (no route, a timeout, an answer) ...
        post("http://crm.internal/hook", BODY, HEADERS, policy)
    except OutboundError as exc:
        assert exc.code != "blocked_address", exc.message  # ... the guard did not stop it
    # loopback stays refused: it has its own switch, the webhook_allow_loopback option
    r = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/", "events": ["*"]}, headers=auth)
    assert r.status_code == 400 and "webhook_allow_loopback" in r.get_json()["error"]["details"]["fields"]["url"]
    assert refused("http://127.0.0.1:9/", policy).code == "blocked_address"


def test_loopback_only_with_the_option(root, receiver):
    from appliance.runtime import open_appliance
    allowed = open_appliance(make_config(root, webhook_allow_loopback="true"), create=True, env={})
    try:
        admin = Principal(user_id=add_user(allowed, "a@x.test", role="admin"), email="a@x.test", role="admin",
                          via="session")
        hook = webhooks.create(allowed.db, allowed.keys, allowed.config, admin,
                               {"url": receiver.url(host="localhost"), "events": ["*"]})
        result = webhook_delivery.send_test(allowed.db, allowed.keys,
                                            webhook_delivery.policy_for(allowed.db, allowed.config), admin, hook["id"])
        assert result["status"] == "delivered" and len(receiver.requests) == 1
        # link-local stays refused whatever is allowed
        assert not webhooks.address_policy(allowed.db, allowed.config).allow_private
        with pytest.raises(Exception, match="link-local"):
            webhooks.address_policy(allowed.db, allowed.config).check("169.254.169.254")
    finally:
        allowed.close()


# -- https ----------------------------------------------------------------------------------------

def test_https_verifies_the_certificate_against_the_host_name(tmp_path):
    ca = make_certs(tmp_path / "tls")  # a private CA; the certificate names localhost and 127.0.0.1-3
    secure = Receiver(tls=server_context(tmp_path / "tls"))
    try:
        allow = AddressPolicy(allow_loopback=True)
        trusted = OutboundPolicy(addresses=allow, timeout=5, ca_file=str(ca))
        assert post(secure.url(host="localhost"), BODY, HEADERS, trusted).status == 200
        assert secure.requests[0].headers["Host"] == f"localhost:{secure.port}"

        # same socket address, another name: the certificate does not name it (SNI and the
        # check use the URL's host, not the IP connected to)
        renamed = replace(trusted, resolver=resolver_for({"crm.example.com": ["127.0.0.1"]}))
        error = refused(f"https://crm.example.com:{secure.port}/hook", renamed)
        assert error.code == "certificate_untrusted" and "crm.example.com" in error.message
        # without the private CA, the certificate is not trusted at all
        assert refused(secure.url(host="localhost"), OutboundPolicy(addresses=allow, timeout=5)).code == \
            "certificate_untrusted"
        assert len(secure.requests) == 1
    finally:
        secure.stop()


def test_a_slow_receiver_times_out(receiver):
    receiver.delay = 3
    policy = OutboundPolicy(addresses=AddressPolicy(allow_loopback=True), timeout=0.5)
    assert refused(receiver.url(), policy).code == "timeout"


def test_the_delivery_tick_uses_the_current_setting(appliance, admin):
    assert not webhook_delivery.policy_for(appliance.db, appliance.config).addresses.allow_private
    webhooks.save_settings(appliance.db, admin, {"allow_private_networks": True})
    policy = webhook_delivery.policy_for(appliance.db, appliance.config)
    assert policy.addresses.allow_private and policy.timeout == appliance.config.webhook_timeout_seconds
