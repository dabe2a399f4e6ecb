"""A batch request's work: body bytes in, answer bytes and score-log frames out (the batch worker's part).

:func:`score_batch_body` runs in the batch worker process (:mod:`serving.batch_worker`): it parses the JSON
(one orjson call), then validates the leads, scores them, renders the answer and encodes the score-log rows
in chunks of ``CHUNK_LEADS`` leads, with the cyclic collector paused meanwhile (:func:`collector_paused`:
a batch's tens of thousands of young objects would otherwise trigger collections that free nothing).

Validation answers what FastAPI would for a body declared as :class:`serving.schemas.BatchRequest`: the same
422 errors with the same field paths (``["body", "leads", i, ...]``), and a JSON decode error as FastAPI
reports it; they are raised as :class:`InvalidBatch`, which the API's side (:mod:`serving.batch`) answers as
FastAPI's ``RequestValidationError``. A batch over ``max_batch`` leads is refused (:class:`BatchTooBig`,
413) before its leads are validated.

Light on purpose: no FastAPI, no database driver, no registry client, so the worker process stays small.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from leadscore.features.schema import LeadRecord
from leadscore.serving.frames import frame
from leadscore.serving.schemas import BatchRequest
from leadscore.serving.scoring import LoadedModel, score_leads

CHUNK_LEADS = 25
_LEADS = TypeAdapter(list[LeadRecord])
_paused = 0  # batches in flight with the cyclic collector paused
_was_enabled = True
_pause_lock = threading.Lock()


class InvalidBatch(Exception):
    """The body is not a valid batch: ``errors`` as FastAPI reports a body's (422)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


class BatchTooBig(Exception):
    """More leads than the limit (413); ``detail`` says how many of how many."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused while a batch is worked on; reference counting still frees the
    batch's objects. With a batch's tens of thousands of young objects alive, a collection of the young
    generations holds the interpreter lock for milliseconds while the event loop waits. The collector resumes
    (if it was on) when the last batch in flight ends."""
    global _paused, _was_enabled
    with _pause_lock:
        if _paused == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _pause_lock:
            _paused -= 1
            if _paused == 0 and _was_enabled:
                gc.enable()


@dataclass(frozen=True)
class ScoredBatch:
    """A scored batch: its ``answer`` (the event loop sends it), its ``rows`` score-log rows as spool ``frames``
    (empty once the batch worker has written them as the batch's spool segment) and each lead's tier."""

    answer: bytes
    frames: bytes
    rows: int
    tiers: list[str]


def _body_errors(errors: list[Any], prefix: tuple[str, ...] = ("body",), offset: int = 0) -> list[dict[str, Any]]:
    """pydantic's errors with their field paths under ``prefix``, as FastAPI reports a body's; ``offset`` is
    added to a leading list index (the index of a chunk's first lead in the batch)."""
    out = []
    for err in errors:
        loc = tuple(err["loc"])
        if loc and isinstance(loc[0], int):
            loc = (loc[0] + offset, *loc[1:])
        out.append({**err, "loc": (*prefix, *loc)})
    return out


NESTED_TOO_DEEP = "nested too deeply"


def json_invalid(pos: int | None = None, error: str | None = None) -> dict[str, Any]:
    """A body that is not JSON, as FastAPI reports it (at ``pos`` when known, with ``error`` when given)."""
    found: dict[str, Any] = {
        "type": "json_invalid",
        "loc": ("body",) if pos is None else ("body", pos),
        "msg": "JSON decode error",
        "input": {},
    }
    if error is not None:
        found["ctx"] = {"error": error}
    return found


def _loads(body: bytes) -> Any:
    """The JSON body as Python values, as FastAPI reads it (``json.loads``: NaN and Infinity are read, and
    refused later by the field); orjson first, as it is faster and agrees on every document it accepts."""
    if not body:
        raise InvalidBatch([{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}])
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        pos, msg = (exc.pos, exc.msg) if isinstance(exc, json.JSONDecodeError) else (exc.start, exc.reason)
        raise InvalidBatch([json_invalid(pos, msg)]) from None
    except RecursionError:  # nested deeper than the interpreter goes: the caller's doing, never a failure
        raise InvalidBatch([json_invalid(error=NESTED_TOO_DEEP)]) from None


def parse_batch(body: bytes, max_batch: int) -> list[LeadRecord]:
    """The leads of a batch body (:class:`InvalidBatch`: 422; :class:`BatchTooBig`: more than ``max_batch``)."""
    data = _loads(body)
    raw = data.get("leads") if isinstance(data, dict) else None
    if not (isinstance(raw, list) and raw and len(data) == 1):
        try:  # not ``{"leads": [...]}`` with at least one lead: the model names what is wrong
            return BatchRequest.model_validate(data).leads
        except ValidationError as exc:
            raise InvalidBatch(_body_errors(exc.errors())) from None
    if len(raw) > max_batch:
        raise BatchTooBig(f"batch of {len(raw)} leads exceeds the limit of {max_batch}")
    leads: list[LeadRecord] = []
    errors: list[dict[str, Any]] = []
    for at in range(0, len(raw), CHUNK_LEADS):
        try:
            leads.extend(_LEADS.validate_python(raw[at : at + CHUNK_LEADS]))
        except ValidationError as exc:
            errors.extend(_body_errors(exc.errors(), ("body", "leads"), at))
    if errors:
        raise InvalidBatch(errors)
    return leads


@collector_paused()
def score_batch_body(
    body: bytes,
    max_batch: int,
    model: LoadedModel,
    request_id: str,
    log_id: str | None,
    explain: bool,
    hash_lead: Callable[[str], str],
) -> ScoredBatch:
    """Parse, validate and score a batch body; the answer as JSON bytes and the score-log rows as spool frames.

    Every lead is scored as of one moment (the batch's ``scored_at``) by the one ``model`` version; the cyclic
    collector is paused meanwhile (:func:`collector_paused`)."""
    leads = parse_batch(body, max_batch)
    now = datetime.now(UTC)
    parts: list[bytes] = []
    frames: list[bytes] = []
    tiers: list[str] = []
    for at in range(0, len(leads), CHUNK_LEADS):
        chunk = leads[at : at + CHUNK_LEADS]
        answers, rows = score_leads(model, chunk, [request_id] * len(chunk), explain, hash_lead, now=now)
        if log_id is not None:
            for row in rows:
                row["request_id"] = log_id
        parts.append(orjson.dumps(answers, option=orjson.OPT_UTC_Z)[1:-1])
        frames.append(frame(rows))
        tiers.extend(a["tier"] for a in answers)
    answer = b"".join(
        (
            b'{"results":[',
            b",".join(parts),
            b'],"model":',
            orjson.dumps({"name": model.name, "version": model.version}),
            b',"request_id":',
            orjson.dumps(request_id),
            b"}",
        )
    )
    return ScoredBatch(answer, b"".join(frames), len(leads), tiers)
