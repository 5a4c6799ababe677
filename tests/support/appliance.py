"""Helpers to build real appliances (real key files, real encrypted databases) in tests."""

from __future__ import annotations

import os
from pathlib import Path

from appliance.config import Config, load_config
from appliance.keys import generate_key_file


def make_config(root: Path, **overrides) -> Config:
    """A config whose key lives in root/keys and data in root/data, as on a real host."""
    key_file = root / "keys" / "master.key"
    if not key_file.exists():
        generate_key_file(key_file)
    flags = {"data_dir": str(root / "data"), "key_file": str(key_file), "log_format": "text"}
    flags.update({k: str(v) for k, v in overrides.items()})
    return load_config(config_file=os.devnull, env={}, flags=flags)


def serve_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for a `mailflow serve` subprocess: clean of any MAILFLOW_* of the caller."""
    key_file = root / "keys" / "master.key"
    if not key_file.exists():
        generate_key_file(key_file)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLOW_")}
    env.update({
        "MAILFLOW_CONFIG": os.devnull,
        "MAILFLOW_DATA_DIR": str(root / "data"),
        "MAILFLOW_KEY_FILE": str(key_file),
        "MAILFLOW_LISTEN": "127.0.0.1:0",
        "MAILFLOW_LOG_FORMAT": "json",
    })
    env.update(extra)
    return env
