"""Scoring routes: one lead, or a bounded batch, in request order.

These are the hot path, so they read the body themselves (``model_validate_json``: one pass from
bytes) and write the answer as JSON bytes; the OpenAPI document still describes both bodies
(:func:`serving.openapi.document`), and errors keep FastAPI's shapes (422 with the field path).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from features.schema import LeadRecord
from serving.deps import SECURITY, scoring_context
from serving.schemas import EXAMPLE_LEAD, MINIMAL_LEAD, BatchRequest, BatchResponse, ScoreResponse
from serving.scoring import check_moments, score_leads

router = APIRouter(prefix="/v1", tags=["scoring"])
M = TypeVar("M", bound=BaseModel)

# Small batches are scored on the event loop (well under a millisecond); bigger ones in the thread pool.
_INLINE_LEADS = 16

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key (when keys are configured)."},
    413: {"description": "Body larger than LEADSCORE_MAX_BODY_BYTES, or more leads than LEADSCORE_MAX_BATCH."},
    422: {"description": "Invalid lead: `detail[].loc` is the field path."},
    503: {"description": "No model is loaded yet."},
}
Explain = Annotated[bool, Query(description="Include the top reasons (on by default; off is faster).")]


def _body(schema: type[BaseModel], examples: dict[str, Any]) -> dict[str, Any]:
    """``openapi_extra`` declaring a JSON request body of ``schema`` (its schema is added by serving.openapi)."""
    content = {"schema": {"$ref": f"#/components/schemas/{schema.__name__}"}, "examples": examples}
    return {"requestBody": {"required": True, "content": {"application/json": content}}, "security": SECURITY}


def _parse(schema: type[M], raw: bytes) -> M:
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{"loc": ("body", *e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None


def _json(content: Any) -> Response:
    return Response(json.dumps(content, default=_default, allow_nan=False, separators=(",", ":")), media_type="application/json")


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@router.post(
    "/score",
    response_model=ScoreResponse,
    responses=_ERRORS,
    openapi_extra=_body(LeadRecord, {
        "full": {"summary": "A lead with firmographics and raw activities", "value": EXAMPLE_LEAD},
        "minimal": {"summary": "Only what is known: missing fields are scored as missing", "value": MINIMAL_LEAD},
    }),
)
async def score(request: Request, explain: Explain = True) -> Response:
    """Score one lead: probability, 0-100 score, tier, queue, SLA and the top reasons."""
    state, model, request_id = scoring_context(request)
    lead = _parse(LeadRecord, await request.body())
    check_moments([lead], ("body",))
    answers, rows = score_leads(model, [lead], request_id, explain, state.hash_lead)
    state.score_log.append(rows)
    state.metrics.scores.labels(answers[0]["tier"]).inc()
    return _json(answers[0])


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    responses=_ERRORS,
    openapi_extra=_body(BatchRequest, {"two": {"summary": "Two leads", "value": {"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]}}}),
)
async def score_batch(request: Request, explain: Explain = True) -> Response:
    """Score many leads (at most LEADSCORE_MAX_BATCH); answers come back in request order."""
    state, model, request_id = scoring_context(request)
    batch = _parse(BatchRequest, await request.body())
    if len(batch.leads) > state.settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch of {len(batch.leads)} leads exceeds the limit of {state.settings.max_batch}",
        )
    check_moments(batch.leads, ("body", "leads"))
    if len(batch.leads) <= _INLINE_LEADS:
        answers, rows = score_leads(model, batch.leads, request_id, explain, state.hash_lead)
    else:
        answers, rows = await run_in_threadpool(score_leads, model, batch.leads, request_id, explain, state.hash_lead)
    state.score_log.append(rows)
    state.metrics.count_tiers([a["tier"] for a in answers])
    return _json({"results": answers, "model": {"name": model.name, "version": model.version}, "request_id": request_id})
