"""Opaque, signed tokens for the Keyspaces Streams stand-in: the state rides in the token, as the service's do.

Iterators and pagination tokens are HMAC-signed JSON, so a reader cannot forge or edit one and the stand-in
keeps no table of tokens handed out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any


def sign(secret: bytes, payload: dict[str, Any]) -> str:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    digest = hmac.new(secret, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(body + digest).decode("ascii")


def unsign(secret: bytes, token: str) -> dict[str, Any] | None:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None
    body, digest = raw[:-32], raw[-32:]
    if len(raw) <= 32 or not hmac.compare_digest(digest, hmac.new(secret, body, hashlib.sha256).digest()):
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None
