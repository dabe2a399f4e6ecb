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

from leadscore.models.store import KEY_FILE
from leadscore.models.store import lead_hash_key as resolve_key
from leadscore.serving.settings import ServingSettings

log = logging.getLogger("leadscore.serving")
__all__ = ["KEY_FILE", "check_bind", "is_loopback", "lead_hash_key"]


def lead_hash_key(settings: ServingSettings) -> bytes:
    """The configured key, else the one in ``<home>/lead-hash.key`` (created, once, when missing)."""
    return resolve_key(settings.home, settings.lead_hash_key)


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
