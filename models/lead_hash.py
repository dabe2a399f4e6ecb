"""Lead ids as the score log and the event log keep them: hashed, never as given."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable


def lead_hasher(key: bytes | None) -> Callable[[str], str]:
    """sha256 of the lead id (HMAC-sha256 when a key is configured)."""
    if key:
        return lambda lead_id: hmac.new(key, lead_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return lambda lead_id: hashlib.sha256(lead_id.encode("utf-8")).hexdigest()
