"""Encryption at rest for connection credentials and webhook secrets (Fernet).

``SYNC_SECRET_KEY`` holds one key or a comma-separated list, newest first: the first key encrypts, every
key decrypts (``MultiFernet``). To rotate, put a new key in front, restart, run ``make rotate-key`` (it
re-encrypts every stored secret with the first key), then drop the old key.
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SecretKeyError(RuntimeError):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])
    except (ValueError, TypeError) as exc:  # MultiFernet([]) is a ValueError too
        raise SecretKeyError(
            "SYNC_SECRET_KEY must be one or more comma-separated Fernet keys (32 url-safe base64 bytes each); "
            "generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        ) from exc


def _current() -> MultiFernet:
    keys = os.environ.get("SYNC_SECRET_KEY")
    if not keys:
        raise SecretKeyError("SYNC_SECRET_KEY is not set; it encrypts credentials and webhook secrets at rest")
    return _fernet(keys)


def generate_key() -> str:
    return Fernet.generate_key().decode()


def encrypt_text(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token: it is the secret's ciphertext.
        raise SecretKeyError("a stored secret could not be decrypted with any key of SYNC_SECRET_KEY") from None


def rotate_text(token: str) -> str:
    """The same secret encrypted with the first key (MultiFernet.rotate); SecretKeyError if no key fits."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretKeyError("a stored secret could not be decrypted with any key of SYNC_SECRET_KEY") from None


def encrypt_json(value: dict[str, Any]) -> str:
    return encrypt_text(json.dumps(value, sort_keys=True))


def decrypt_json(token: str) -> dict[str, Any]:
    return json.loads(decrypt_text(token))
