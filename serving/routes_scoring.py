"""Scoring routes: one lead, or a bounded batch answered in request order.

Both are FastAPI path operations: the body is validated into :class:`LeadRecord` / :class:`BatchRequest`
(422 with the field path), the key check, the model and the request id come from one dependency,
:data:`serving.deps.scoring_access` (so ``app.dependency_overrides`` reaches them), and the OpenAPI document is
FastAPI's, with the request examples below. Single leads are scored through the micro-batcher
(:mod:`serving.batcher`). The answer is the dict :func:`serving.scoring.score_leads` builds, written by
orjson (:class:`serving.asgi.ORJSONAnswer`); ``response_model`` documents its shape.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from starlette.concurrency import run_in_threadpool

from leadscore.features.schema import LeadRecord
from leadscore.serving.asgi import ORJSONAnswer
from leadscore.serving.deps import Scoring
from leadscore.serving.schemas import (
    ERROR_RESPONSES,
    EXAMPLE_LEAD,
    MINIMAL_LEAD,
    BatchRequest,
    BatchResponse,
    ScoreResponse,
)
from leadscore.serving.scoring import score_leads
from leadscore.serving.scoring_route import ScoringRoute
from leadscore.serving.state import AppState

# Batches up to this many leads are scored on the event loop; bigger ones in the thread pool, so one big
# batch does not hold up the requests queued behind it.
INLINE_LEADS = 16

router = APIRouter(
    prefix="/v1",
    tags=["scoring"],
    default_response_class=ORJSONAnswer,
    responses=ERROR_RESPONSES,
    route_class=ScoringRoute,
)

NOT_RECORDED = "the score could not be recorded; retry later"


async def _commit(state: AppState, rows: list[dict[str, Any]]) -> None:
    """Make the score-log rows durable before the answer is sent (503 when the spool cannot be written)."""
    try:
        await state.score_log.commit(rows)
    except OSError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_RECORDED, headers={"Retry-After": "5"}
        ) from None


Explain = Annotated[bool, Query(description="Include the top reasons (on by default; off is faster).")]


@router.post("/score", response_model=ScoreResponse, summary="Score one lead", operation_id="score_v1")
async def score(
    lead: Annotated[
        LeadRecord,
        Body(
            openapi_examples={
                "full": {"summary": "A lead with firmographics and raw activities", "value": EXAMPLE_LEAD},
                "minimal": {
                    "summary": "Only what is known: missing fields are scored as missing",
                    "value": MINIMAL_LEAD,
                },
            }
        ),
    ],
    request: Request,
    context: Scoring,
    explain: Explain = True,
) -> ORJSONAnswer:
    """Score one lead: probability, 0-100 score, tier, queue, SLA and the top reasons.

    An `X-Request-Id` header of at most 64 letters, digits, `-` or `_` is echoed in the answer, and logged
    as its HMAC-sha256 (hex) under the lead-hash key; without one, a new UUIDv7 is made and logged as is.
    """
    state: AppState = request.app.state.leadscore
    answer, row = await state.batcher.score(context.model, lead, context.request_id, explain)
    if context.log_id is not None:
        row["request_id"] = context.log_id
    await _commit(state, [row])
    state.metrics.count_tiers([answer["tier"]])
    return ORJSONAnswer(answer)


@router.post(
    "/score/batch", response_model=BatchResponse, summary="Score a batch of leads", operation_id="score_batch_v1"
)
async def score_batch(
    batch: Annotated[
        BatchRequest,
        Body(openapi_examples={"two": {"summary": "Two leads", "value": {"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]}}}),
    ],
    request: Request,
    context: Scoring,
    explain: Explain = True,
) -> ORJSONAnswer:
    """Score many leads (at most LEADSCORE_MAX_BATCH); answers come back in request order.

    An `X-Request-Id` header of at most 64 letters, digits, `-` or `_` is echoed in the answer (one id for the
    whole batch), and logged as its HMAC-sha256 (hex) under the lead-hash key; without one, a new UUIDv7 is
    made and logged as is.
    """
    state: AppState = request.app.state.leadscore
    model, request_id = context.model, context.request_id
    leads = batch.leads
    if len(leads) > state.settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch of {len(leads)} leads exceeds the limit of {state.settings.max_batch}",
        )
    ids = [request_id] * len(leads)
    if len(leads) <= INLINE_LEADS:
        answers, rows = score_leads(model, leads, ids, explain, state.hash_lead)
    else:
        answers, rows = await run_in_threadpool(score_leads, model, leads, ids, explain, state.hash_lead)
    if context.log_id is not None:
        for row in rows:
            row["request_id"] = context.log_id
    await _commit(state, rows)
    state.metrics.count_tiers([a["tier"] for a in answers])
    return ORJSONAnswer(
        {"results": answers, "model": {"name": model.name, "version": model.version}, "request_id": request_id}
    )
