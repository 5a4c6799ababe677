"""Shared fixtures: real appliances on real encrypted databases, the live server, the browser."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from appliance.runtime import open_appliance

from .support.appliance import make_config
from .support.live_server import LiveServer
from .support.webhook_receiver import Receiver

pytest_plugins = ["tests.support.mail_fixtures", "tests.support.browser"]


@pytest.fixture
def root(tmp_path) -> Path:
    """A host-like layout: root/keys (master key) apart from root/data (database)."""
    return tmp_path


@pytest.fixture
def config(root):
    return make_config(root)


@pytest.fixture
def appliance(config):
    app = open_appliance(config, create=True, env={})
    yield app
    app.close()


def _live_server():
    root = Path(tempfile.mkdtemp(prefix="mailflow-live-"))
    server = LiveServer(root).start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def live_server():
    """A fresh `mailflow serve` per test; tests that only read share `shared_live_server`."""
    yield from _live_server()


@pytest.fixture(scope="session")
def shared_live_server():
    yield from _live_server()


@pytest.fixture
def web(appliance):
    """The real Flask app over the real encrypted database, in-process (no network)."""
    from webui import create_app
    from webui.limits import limiter

    app = create_app(appliance)
    app.config["TESTING"] = True
    limiter.reset()
    return app


@pytest.fixture
def client(web):
    return web.test_client()


@pytest.fixture
def receiver():
    """A real HTTP endpoint on 127.0.0.1 that records what webhooks deliver."""
    r = Receiver()
    yield r
    r.stop()
