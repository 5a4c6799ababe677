"""Secrets at rest (mailbox App Passwords, webhook secrets): AES-256-GCM.

Each value is sealed with the `secrets` sub-key, a fresh random 96-bit nonce, and associated
data naming where it lives ("mailboxes:42:password"). A ciphertext copied into another row
or column therefore fails to open instead of silently serving the wrong secret.
Stored layout: version byte (1) | nonce (12) | ciphertext + tag.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1
NONCE_BYTES = 12


class SecretDecryptError(Exception):
    """The stored secret does not open with this key at this place."""


def location(table: str, row_id: int, column: str) -> bytes:
    return f"{table}:{row_id}:{column}".encode()


class SecretBox:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("AES-256-GCM needs a 32-byte key")
        self._aead = AESGCM(key)

    def seal(self, plaintext: str, where: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return bytes([VERSION]) + nonce + self._aead.encrypt(nonce, plaintext.encode("utf-8"), where)

    def open(self, sealed: bytes, where: bytes) -> str:
        if not sealed or sealed[0] != VERSION or len(sealed) < 1 + NONCE_BYTES + 16:
            raise SecretDecryptError("not a sealed secret of a known version")
        nonce, body = sealed[1:1 + NONCE_BYTES], sealed[1 + NONCE_BYTES:]
        try:
            return self._aead.decrypt(nonce, body, where).decode("utf-8")
        except InvalidTag:
            raise SecretDecryptError(f"secret at {where.decode()} does not open "
                                     "(wrong key, or moved from another row)") from None
