"""Scoring routes: one lead, or a bounded batch, in request order."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, status
from starlette.concurrency import run_in_threadpool

from features.schema import LeadRecord
from serving.deps import Model, RequestId, State, require_key
from serving.schemas import EXAMPLE_LEAD, MINIMAL_LEAD, BatchRequest, BatchResponse, ScoreResponse
from serving.scoring import check_moments, score_leads

router = APIRouter(prefix="/v1", tags=["scoring"], dependencies=[Depends(require_key)])

# Small batches are scored on the event loop (sub-millisecond); bigger ones in the thread pool.
_INLINE_LEADS = 16

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key (when keys are configured)."},
    413: {"description": "Body larger than LEADSCORE_MAX_BODY_BYTES, or more leads than LEADSCORE_MAX_BATCH."},
    422: {"description": "Invalid lead: `detail[].loc` is the field path."},
    503: {"description": "No model is loaded yet."},
}
Explain = Annotated[bool, Query(description="Include the top reasons (on by default; off is faster).")]

LeadBody = Annotated[
    LeadRecord,
    Body(
        openapi_examples={
            "full": {"summary": "A lead with firmographics and raw activities", "value": EXAMPLE_LEAD},
            "minimal": {"summary": "Only what is known: missing fields are scored as missing", "value": MINIMAL_LEAD},
        }
    ),
]


@router.post("/score", response_model=ScoreResponse, responses=_ERRORS)
async def score(lead: LeadBody, state: State, model: Model, request_id: RequestId, explain: Explain = True) -> Any:
    """Score one lead: probability, 0-100 score, tier, queue, SLA and the top reasons."""
    check_moments([lead], ("body",))
    answers, rows = score_leads(model, [lead], request_id, explain, state.hash_lead)
    state.score_log.append(rows)
    state.metrics.scores.labels(answers[0]["tier"]).inc()
    return answers[0]


@router.post("/score/batch", response_model=BatchResponse, responses=_ERRORS)
async def score_batch(batch: BatchRequest, state: State, model: Model, request_id: RequestId, explain: Explain = True) -> Any:
    """Score many leads (at most LEADSCORE_MAX_BATCH); answers come back in request order."""
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
    return {"results": answers, "model": {"name": model.name, "version": model.version}, "request_id": request_id}
