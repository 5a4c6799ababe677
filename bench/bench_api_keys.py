"""Benchmark: 1,000 authenticated `GET /api/v1/me` calls with one API key.

The real Flask app (test client, no network) over a real encrypted database in a temporary
directory. With the verified-key cache, a burst pays for one bcrypt (cost 12, ~0.25 s); without
it every call pays one, so the uncached case is measured on a few calls and extrapolated.

    .venv/bin/python bench/bench_api_keys.py [--calls 1000] [--uncached-calls 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bcrypt  # noqa: E402

from appliance.config import load_config  # noqa: E402
from appliance.keys import generate_key_file  # noqa: E402
from appliance.runtime import open_appliance  # noqa: E402
from appliance.services import api_keys, users  # noqa: E402
from appliance.services.authz import Principal  # noqa: E402


def build(root: Path):
    key_file = generate_key_file(root / "keys" / "master.key")
    config = load_config(config_file=os.devnull, env={},
                         flags={"data_dir": str(root / "data"), "key_file": str(key_file), "log_format": "text"})
    appliance = open_appliance(config, create=True, env={})
    user = users.create_admin(appliance.db, email="bench@example.com", password="bench passphrase 123",
                              cost=config.bcrypt_cost)
    who = Principal(user_id=user["id"], email=user["email"], role=user["role"], via="session")
    key = api_keys.create(appliance.db, who, name="bench", scopes=["read"], cost=config.bcrypt_cost)["key"]

    from webui import create_app
    from webui import limits

    app = create_app(appliance)
    # 1,000 calls a few seconds apart exceed the per-IP and per-user limits on purpose; lift
    # them for this process only.
    limits.limiter.enabled = False
    if hasattr(limits, "PER_USER"):
        limits.PER_USER = "1000000 per minute"
    return appliance, app, key


def run(client, key: str, calls: int) -> float:
    headers = {"Authorization": f"Bearer {key}"}
    start = time.perf_counter()
    for _ in range(calls):
        response = client.get("/api/v1/me", headers=headers)
        if response.status_code != 200:
            raise SystemExit(f"unexpected {response.status_code}: {response.get_data(as_text=True)}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--uncached-calls", type=int, default=20)
    args = parser.parse_args()

    checks = []
    real_checkpw = bcrypt.checkpw

    def counting_checkpw(password, hashed):
        checks.append(1)
        return real_checkpw(password, hashed)

    bcrypt.checkpw = counting_checkpw
    root = Path(tempfile.mkdtemp(prefix="mailflow-bench-"))
    appliance = None
    try:
        appliance, app, key = build(root)
        client = app.test_client()

        api_keys.cache.clear()
        cached = run(client, key, args.calls)  # the first call pays the one bcrypt
        cached_checks = len(checks)

        api_keys.cache.clear()
        api_keys.cache.ttl = 0  # every call verifies with bcrypt
        checks.clear()
        uncached = run(client, key, args.uncached_calls)
        uncached_checks = len(checks)
        api_keys.cache.ttl = api_keys.CACHE_SECONDS

        per_uncached = uncached / args.uncached_calls
        extrapolated = per_uncached * args.calls
        print(f"{args.calls} authenticated GET /api/v1/me calls, one API key, encrypted database")
        print(f"  with cache:    {cached:8.2f} s total, {args.calls / cached:8.0f} calls/s, "
              f"{cached / args.calls * 1000:6.2f} ms/call, bcrypt checks: {cached_checks}")
        print(f"  without cache: {per_uncached * 1000:8.1f} ms/call over {args.uncached_calls} calls "
              f"(bcrypt checks: {uncached_checks}), {args.calls / extrapolated:8.2f} calls/s, "
              f"{extrapolated:.0f} s for {args.calls} calls (extrapolated)")
        print(f"  speed-up:      {extrapolated / cached:8.0f}x")
    finally:
        bcrypt.checkpw = real_checkpw
        if appliance is not None:
            appliance.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
