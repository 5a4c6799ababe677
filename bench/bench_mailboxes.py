"""Mailboxes at scale: CSV import of N mailboxes (no live checks) and the list page / API,
through the real Flask app over a real encrypted database. Prints rates and per-page times.

    .venv/bin/python bench/bench_mailboxes.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.runtime import open_appliance  # noqa: E402
from tests.support.access import add_user, login  # noqa: E402
from tests.support.appliance import make_config  # noqa: E402
from webui import create_app  # noqa: E402
from webui.limits import limiter  # noqa: E402


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    app = open_appliance(make_config(root), env={})
    limiter.enabled = False
    web = create_app(app)
    add_user(app, "admin@bench.test", role="admin")
    client = web.test_client()
    session = login(client, "admin@bench.test")
    headers = session.headers(bearer=True)
    rows = "\n".join(f"rep{i}@bench{i % 50}.test,custom,smtp.bench.test,465,ssl,imap.bench.test,993,ssl,"
                     f"pw{i},{'eu' if i % 3 else 'us'}" for i in range(n))
    body = ("email,provider,smtp_host,smtp_port,smtp_security,imap_host,imap_port,imap_security,password,tags\n"
            + rows + "\n").encode()
    started = time.perf_counter()
    r = client.post("/api/v1/mailboxes/import?check=false", data=body, content_type="text/csv", headers=headers)
    took = time.perf_counter() - started
    assert r.status_code == 200 and r.get_json()["imported"] == n, r.get_json()
    print(f"import {n} mailboxes: {took:.2f} s ({n / took:.0f} rows/s)")

    cookie = web.test_client()
    login(cookie, "admin@bench.test")
    for label, path, c in (("API first page", "/api/v1/mailboxes?limit=50", client),
                           ("API page deep in the list", f"/api/v1/mailboxes?limit=50&cursor={n - 60}", client),
                           ("API tag filter", "/api/v1/mailboxes?tag=us&limit=50", client),
                           ("API search", "/api/v1/mailboxes?q=rep999&limit=50", client),
                           ("UI list page", "/mailboxes", cookie),
                           ("UI filtered by status", "/mailboxes?status=active", cookie)):
        best = float("inf")
        for _ in range(20):
            t = time.perf_counter()
            resp = c.get(path, headers=headers if c is client else None)
            best = min(best, time.perf_counter() - t)
            assert resp.status_code == 200, (path, resp.status_code)
        print(f"{label:28} best of 20: {best * 1000:6.1f} ms")
    app.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
