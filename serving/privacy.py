"""Private by default: the key that hashes lead ids, and the refusal to listen publicly without API keys.

Without ``LEADSCORE_LEAD_HASH_KEY``, a random key is created once in ``<home>/lead-hash.key`` (mode 0600)
and read on every later start, so lead ids are always hashed with HMAC-sha256 under a secret: a plain
sha256 of a guessable id could be reversed by hashing candidates. Losing the file (or moving to a new
home) starts a new key: the hashes of scores logged before cannot be matched with those logged after.
Replicas must share one key: set ``LEADSCORE_LEAD_HASH_KEY`` for them.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from pathlib import Path

from leadscore.serving.settings import ServingSettings

log = logging.getLogger("leadscore.serving")
KEY_FILE = "lead-hash.key"


def lead_hash_key(settings: ServingSettings) -> bytes:
    """The configured key, else the one in ``<home>/lead-hash.key`` (created, once, when missing)."""
    if settings.lead_hash_key is not None:
        return settings.lead_hash_key.get_secret_value().encode("utf-8")
    path = Path(settings.home) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: of several processes starting together, one creates it and the others read it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            log.warning(
                "created a lead-hash key in %s: keep it (score-log hashes made with another key do not match)", path
            )
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key (delete it to make a new one, or set LEADSCORE_LEAD_HASH_KEY)")
    return key.encode("ascii")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: ServingSettings, allow_without_keys: bool) -> None:
    """Refuse to listen beyond this machine without API keys unless explicitly allowed."""
    if is_loopback(host) or settings.api_keys or allow_without_keys:
        return
    raise PermissionError(
        f"refusing to listen on {host} without API keys: set LEADSCORE_API_KEYS, "
        "or pass --allow-public-without-keys (anyone who can reach the port can then score leads)"
    )
