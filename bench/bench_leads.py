"""Leads at scale: CSV import of N realistic leads (custom columns, tags, quoted values)
through the service over a real encrypted database, then the list API (first page, a page
deep in the list, tag and status filters, searches), the list page and a full export.
Prints rows/s, peak RSS and per-request times. The target: 100,000 leads in under 5 s.

    .venv/bin/python bench/bench_leads.py [N]
"""

from __future__ import annotations

import csv
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from appliance.runtime import open_appliance  # noqa: E402
from appliance.services import lead_import  # noqa: E402
from appliance.services.authz import Principal  # noqa: E402
from tests.support.access import add_user, login  # noqa: E402
from tests.support.appliance import make_config  # noqa: E402
from webui import create_app  # noqa: E402
from webui.limits import limiter  # noqa: E402

FIRST = ["Anna", "Ben", "Chloé", "David", "Elif", "Felix", "Grace", "Hiro", "Ines", "Jonas", "Karin", "Liam",
         "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera", "Wen", "Yusuf", "Zoë"]
LAST = ["Schmidt", "Müller", "García", "Nguyen", "O'Brien", "Kowalski", "Rossi", "Dubois", "Jensen", "Novak",
        "Smith", "Okafor", "Tanaka", "Silva", "Andersson", "Fischer", "Kaya", "Haddad", "Lefèvre", "Brown"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Stark Industries", "Wayne Enterprises", "Hooli", "Vandelay",
             "Soylent", "Tyrell", "Cyberdyne", "Aperture", "Wonka", "Gringotts", "Oscorp", "Massive Dynamic"]
TITLES = ["CEO", "CTO", "Head of Sales", "VP Marketing", "Founder", "Operations Manager", "Engineer", "Buyer"]
ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", ""]
INDUSTRIES = ["SaaS", "Manufacturing", "Retail", "Logistics", "Healthcare", "Finance, Insurance"]
LISTS = ["webinar", "trade-fair", "inbound", "partner", "cold", "newsletter", "events", "dach", "us", "nordics"]
HEADER = ["Email", "First Name", "Last Name", "Company", "Job Title", "Phone", "Website", "Time Zone", "Tags",
          "LinkedIn URL", "Industry", "Employees", "City", "Notes"]


def write_csv(path: Path, n: int) -> None:
    """N rows, written as a stream (the generator never holds the file either)."""
    rnd = random.Random(42)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for i in range(n):
            first, last, company = rnd.choice(FIRST), rnd.choice(LAST), rnd.choice(COMPANIES)
            domain = company.lower().replace(" ", "") + f"{i % 997}.example"
            writer.writerow([
                f"{first}.{last}.{i}@{domain}".replace("'", "").replace("é", "e").replace("ë", "e").replace("ü", "u"),
                first, last, company, rnd.choice(TITLES), f"+49 30 {rnd.randint(1000000, 9999999)}",
                f"https://www.{domain}", rnd.choice(ZONES), ";".join(rnd.sample(LISTS, rnd.randint(1, 2))),
                f"https://www.linkedin.com/in/{first.lower()}-{i}", rnd.choice(INDUSTRIES), rnd.randint(5, 5000),
                rnd.choice(["Berlin", "London", "New York", "Tokyo", "São Paulo"]),
                "Met at the booth,\nasked for a \"demo\"" if i % 50 == 0 else ""])


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(n: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    try:
        run(root, n)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, n: int) -> None:
    app = open_appliance(make_config(root), env={})
    limiter.enabled = False
    user_id = add_user(app, "member@bench.test", role="member")
    member = Principal(user_id, "member@bench.test", "member", "session")
    source = root / "leads.csv"
    write_csv(source, n)
    print(f"generated {n} rows, {source.stat().st_size / 2**20:.1f} MiB; peak RSS before import {rss_mib():.0f} MiB")

    started, cpu = time.perf_counter(), time.process_time()
    with source.open("rb") as fh:
        result = lead_import.import_csv(app.db, member, fh, mode="skip", tag="bench", source="bench")
    took, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert result["imported"] == n and not result["errors"], {k: v for k, v in result.items() if k != "errors"}
    print(f"import {n} leads: {took:.2f} s ({n / took:,.0f} rows/s; {cpu:.2f} s CPU); "
          f"peak RSS after {rss_mib():.0f} MiB")

    started = time.perf_counter()
    with source.open("rb") as fh:
        again = lead_import.import_csv(app.db, member, fh, mode="merge")
    took = time.perf_counter() - started
    print(f"re-import the same file, merge mode ({again['updated']} merged): {took:.2f} s ({n / took:,.0f} rows/s)")
    print(f"database file: {app.config.database_path.stat().st_size / 2**20:.0f} MiB")

    web = create_app(app)
    client = web.test_client()
    headers = login(client, "member@bench.test").headers(bearer=True)
    cookie = web.test_client()
    login(cookie, "member@bench.test")
    deep = client.get("/api/v1/leads?limit=1", headers=headers).get_json()["items"][0]["id"] - n + 100
    probe = "Tanaka"
    for label, path, c in (("API first page", "/api/v1/leads?limit=50", client),
                           ("API page deep in the list", f"/api/v1/leads?limit=50&cursor={deep}", client),
                           ("API tag filter", "/api/v1/leads?tag=nordics&limit=50", client),
                           ("API tag filter, deep page", f"/api/v1/leads?tag=nordics&limit=50&cursor={deep}", client),
                           ("API status filter", "/api/v1/leads?status=new&limit=50", client),
                           ("API search (name, dense)", f"/api/v1/leads?q={probe}&limit=50", client),
                           ("API search (rare, full scan)", "/api/v1/leads?q=nobody-like-this&limit=50", client),
                           ("API search (address prefix)", "/api/v1/leads?q=zo.tanaka.9@&limit=50", client),
                           ("API search (@domain)", "/api/v1/leads?q=@hooli5.example&limit=50", client),
                           ("UI list page", "/leads", cookie),
                           ("UI list, tag + search", f"/leads?tag=dach&q={probe}", cookie)):
        best = float("inf")
        for _ in range(10):
            t = time.perf_counter()
            resp = c.get(path, headers=headers if c is client else None)
            best = min(best, time.perf_counter() - t)
            assert resp.status_code == 200, (path, resp.status_code)
        print(f"{label:32} best of 10: {best * 1000:7.1f} ms")

    t = time.perf_counter()
    resp = client.get("/api/v1/leads/export", headers=headers)
    size = 0
    rows = -1
    for chunk in resp.response:
        size += len(chunk)
        rows += chunk.count(b"\n") if isinstance(chunk, bytes) else chunk.count("\n")
    took = time.perf_counter() - t
    print(f"export all {n} leads as CSV: {took:.2f} s, {size / 2**20:.1f} MiB; peak RSS {rss_mib():.0f} MiB")
    app.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
