"""The master key: provisioned apart from the data, strict permissions, HKDF sub-keys."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from appliance.errors import EX_CONFIG, ConfigError
from appliance.keys import SUBKEY_LABELS, KeyRing, generate_key_file, load_keyring, read_master_key

from .support.appliance import make_config, serve_env


def test_keygen_writes_32_random_bytes_mode_0600(tmp_path):
    a = generate_key_file(tmp_path / "a.key")
    b = generate_key_file(tmp_path / "b.key")
    assert stat.S_IMODE(a.stat().st_mode) == 0o600
    assert len(a.read_bytes()) == 32 and a.read_bytes() != b.read_bytes()


def test_keygen_never_overwrites(tmp_path):
    path = generate_key_file(tmp_path / "a.key")
    before = path.read_bytes()
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "keygen", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "refusing to overwrite" in result.stderr
    assert path.read_bytes() == before


def test_subkeys_are_distinct_and_deterministic(tmp_path):
    master = os.urandom(32)
    ring = KeyRing.derive(master)
    keys = [getattr(ring, label) for label in SUBKEY_LABELS]
    assert len(set(keys)) == len(SUBKEY_LABELS) and master not in keys
    assert all(len(k) == 32 for k in keys)
    assert KeyRing.derive(master).database == ring.database
    assert master.hex() not in repr(ring) and ring.database.hex() not in repr(ring)


def test_key_from_systemd_credential(tmp_path):
    creds = tmp_path / "creds"
    generate_key_file(creds / "mailflow.master")
    config = make_config(tmp_path).with_overrides(key_file=None)
    ring = load_keyring(config, env={"CREDENTIALS_DIRECTORY": str(creds)})
    assert ring.database == KeyRing.derive((creds / "mailflow.master").read_bytes()).database


@pytest.mark.parametrize("problem", ["missing", "inside_data_dir", "group_readable", "world_readable",
                                     "wrong_length", "unset"])
def test_refusals_are_one_clear_line(tmp_path, problem):
    config = make_config(tmp_path)
    key = config.key_file
    if problem == "missing":
        key.unlink()
        expected = "does not exist"
    elif problem == "inside_data_dir":
        inside = config.data_dir / "master.key"
        generate_key_file(inside)
        config = config.with_overrides(key_file=inside)
        expected = "inside the data directory"
    elif problem == "group_readable":
        key.chmod(0o640)
        expected = "accessible by group or others"
    elif problem == "world_readable":
        key.chmod(0o604)
        expected = "accessible by group or others"
    elif problem == "wrong_length":
        key.write_bytes(os.urandom(16))
        expected = "exactly 32 bytes"
    else:
        config = config.with_overrides(key_file=None)
        expected = "no master key configured"
    with pytest.raises(ConfigError, match=expected):
        read_master_key(config, env={})


@pytest.mark.parametrize("problem", ["missing", "inside_data_dir", "group_readable"])
def test_serve_refuses_to_start_with_exit_78(tmp_path, problem):
    env = serve_env(tmp_path)
    key = tmp_path / "keys" / "master.key"
    if problem == "missing":
        key.unlink()
    elif problem == "inside_data_dir":
        env["MAILFLOW_KEY_FILE"] = str(tmp_path / "data" / "master.key")
        generate_key_file(tmp_path / "data" / "master.key")
    else:
        key.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "serve"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EX_CONFIG
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailflow: master key"), result.stderr
    assert not (tmp_path / "data" / "mailflow.db").exists()
