"""The master key and the sub-keys derived from it.

The master key (32 random bytes) is provisioned at deploy time, outside the data
directory: a file named by `key_file`, or the systemd credential `mailflow.master`.
Every purpose gets its own sub-key through HKDF-SHA256 with a distinct label, so a
leak of one (say, the JWT signing key) says nothing about the others.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .config import Config
from .errors import ConfigError

MASTER_KEY_BYTES = 32
CREDENTIAL_NAME = "mailflow.master"
SUBKEY_LABELS = ("database", "secrets", "sessions", "tokens", "backups")


def generate_key_file(path: str | Path) -> Path:
    """Write a new random master key with mode 0600; never overwrite an existing one."""
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists; refusing to overwrite a master key") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(MASTER_KEY_BYTES))
    os.chmod(path, 0o600)  # in case the umask was stricter than needed, make it exact
    return path


def locate_key_file(config: Config, env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if config.key_file is not None:
        return Path(config.key_file)
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials:
        return Path(credentials) / CREDENTIAL_NAME
    raise ConfigError(
        "no master key configured: set MAILFLOW_KEY_FILE (create one with `mailflow keygen PATH`) "
        f"or pass the systemd credential {CREDENTIAL_NAME}")


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except ValueError:
        return False


def read_master_key(config: Config, env: Mapping[str, str] | None = None) -> bytes:
    """Read and check the master key; every refusal is one clear line (ConfigError)."""
    path = locate_key_file(config, env)
    if _inside(path, Path(config.data_dir)):
        raise ConfigError(f"master key {path} is inside the data directory {config.data_dir}; "
                          "keep it apart from the data it protects (e.g. /etc/mailflow/master.key)")
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"master key {path} does not exist (create one with `mailflow keygen {path}`)") from None
    except PermissionError:
        raise ConfigError(f"master key {path} is not readable by this user") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"master key {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(f"master key {path} is accessible by group or others "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600 {path}")
    try:
        key = path.read_bytes()
    except PermissionError:
        raise ConfigError(f"master key {path} is not readable by this user") from None
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(f"master key {path} must hold exactly {MASTER_KEY_BYTES} bytes, "
                          f"found {len(key)}")
    return key


@dataclass(frozen=True)
class KeyRing:
    """Sub-keys for each purpose. Never printed: repr shows only the labels."""

    _keys: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def derive(cls, master: bytes) -> "KeyRing":
        if len(master) != MASTER_KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        return cls({label: hkdf(master, label) for label in SUBKEY_LABELS})

    def __getattr__(self, label: str) -> bytes:
        try:
            return self._keys[label]
        except KeyError:
            raise AttributeError(label) from None

    def __repr__(self) -> str:
        return f"KeyRing({', '.join(self._keys)})"


def hkdf(master: bytes, label: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"mailflow/v1/" + label.encode()).derive(master)


def load_keyring(config: Config, env: Mapping[str, str] | None = None) -> KeyRing:
    return KeyRing.derive(read_master_key(config, env))
