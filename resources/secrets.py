"""Encryption at rest for connection credentials and webhook secrets (Fernet, key from SYNC_SECRET_KEY)."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken


class SecretKeyError(RuntimeError):
    pass


@lru_cache(maxsize=4)
def _fernet(key: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError) as exc:
        raise SecretKeyError(
            "SYNC_SECRET_KEY is not a valid Fernet key (32 url-safe base64 bytes); "
            "generate one with `python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'`"
        ) from exc


def _current() -> Fernet:
    key = os.environ.get("SYNC_SECRET_KEY")
    if not key:
        raise SecretKeyError("SYNC_SECRET_KEY is not set; it encrypts credentials and webhook secrets at rest")
    return _fernet(key)


def generate_key() -> str:
    return Fernet.generate_key().decode()


def encrypt_text(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def decrypt_text(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        # Never include the token: it is the secret's ciphertext.
        raise SecretKeyError("a stored secret could not be decrypted with SYNC_SECRET_KEY") from None


def encrypt_json(value: dict[str, Any]) -> str:
    return encrypt_text(json.dumps(value, sort_keys=True))


def decrypt_json(token: str) -> dict[str, Any]:
    return json.loads(decrypt_text(token))
