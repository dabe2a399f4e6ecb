"""Why a registry call failed, told apart: connection refused, timeout, no such alias, no such version, other.

The kind is read from the exception and its causes (MLflow wraps the HTTP client's errors in its own,
and sometimes only their message says what happened). It names the Prometheus label
``leadscore_registry_errors_total{kind}`` and starts ``last_poll_error`` in ``/v1/model``.
"""

from __future__ import annotations

CONNECTION_REFUSED = "connection_refused"
TIMEOUT = "timeout"
NO_ALIAS = "no_alias"
NO_SUCH_VERSION = "no_such_version"
OTHER = "other"
KINDS = (CONNECTION_REFUSED, TIMEOUT, NO_ALIAS, NO_SUCH_VERSION, OTHER)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def registry_error_kind(exc: BaseException) -> str:
    """The kind of a registry failure (one of :data:`KINDS`)."""
    chain = _chain(exc)
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return CONNECTION_REFUSED
    if any(isinstance(e, TimeoutError) for e in chain) or "timeout" in text or "timed out" in text:
        return TIMEOUT
    if "alias" in text and ("not found" in text or "does not exist" in text or "resource_does_not_exist" in text):
        return NO_ALIAS
    if "version" in text and ("not found" in text or "does not exist" in text or "resource_does_not_exist" in text):
        return NO_SUCH_VERSION
    if "connection" in text and ("error" in text or "reset" in text or "aborted" in text):
        return CONNECTION_REFUSED
    return OTHER


def describe(exc: BaseException) -> str:
    """``<kind>: <ExceptionType>: <first line of its message>`` (at most 300 characters of message)."""
    message = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{registry_error_kind(exc)}: {type(exc).__name__}: {message}"
