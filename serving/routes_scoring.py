"""Scoring routes: one lead, or a bounded batch answered in request order.

Both are FastAPI path operations: the key check, the model and the request id come from one dependency,
:data:`serving.deps.scoring_access` (so ``app.dependency_overrides`` reaches them), and the OpenAPI document is
FastAPI's, with the request examples below. A single lead is validated into :class:`LeadRecord` (422 with
the field path, as FastAPI words it) by the handler of :class:`serving.scoring_route.ScoringRoute`, the
router's route class, and scored through the micro-batcher (:mod:`serving.batcher`); its answer is the
dict :func:`serving.scoring.score_leads` builds, written by orjson (:class:`serving.asgi.ORJSONAnswer`). A
batch body (:class:`serving.schemas.BatchRequest`, the same 422 errors) is parsed, validated, scored and
its answer written by the batch worker process (:mod:`serving.batch`), one batch at a time at the lowest CPU
priority, so the event loop only moves its bytes and never shares the interpreter lock with a batch's work:
health probes and single leads are answered while big batches run.
``response_model`` documents each answer's shape.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status

from leadscore.features.schema import LeadRecord
from leadscore.serving.asgi import ORJSONAnswer, PacedJSON
from leadscore.serving.batch import in_batch_thread
from leadscore.serving.batch_work import ScoredBatch
from leadscore.serving.deps import Scoring, ScoringContext
from leadscore.serving.schemas import (
    ERROR_RESPONSES,
    EXAMPLE_LEAD,
    MINIMAL_LEAD,
    BatchResponse,
    ScoreResponse,
)
from leadscore.serving.scoring_route import ScoringRoute
from leadscore.serving.state import AppState

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
        raise _not_recorded() from None


def _score_and_record(state: AppState, body: bytes, context: ScoringContext, explain: bool) -> ScoredBatch:
    """On the batch thread: the batch scored by the batch worker process, which also writes its score-log rows
    as a spool segment of their own before it replies (503 when they cannot be written), so the API process
    neither copies nor writes them: the event loop only moves the answer."""
    part, fsync = state.score_log.batch_segment()
    try:
        scored = state.batch_worker.score(
            body, state.settings.max_batch, context.model, context.request_id, context.log_id, explain, (part, fsync)
        )
        if scored.rows:
            state.score_log.segment_written(part)
    except OSError:
        raise _not_recorded() from None
    return scored


def _not_recorded() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_RECORDED, headers={"Retry-After": "5"})


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
    state.metrics.count_tier(answer["tier"])
    return ORJSONAnswer(answer)


BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/BatchRequest"},
                "examples": {"two": {"summary": "Two leads", "value": {"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]}}},
            }
        },
    }
}


@router.post(
    "/score/batch",
    response_model=BatchResponse,
    summary="Score a batch of leads",
    operation_id="score_batch_v1",
    openapi_extra=BATCH_BODY,
)
async def score_batch(request: Request, context: Scoring, explain: Explain = True) -> Response:
    """Score many leads (at most LEADSCORE_MAX_BATCH); answers come back in request order.

    An `X-Request-Id` header of at most 64 letters, digits, `-` or `_` is echoed in the answer (one id for the
    whole batch), and logged as its HMAC-sha256 (hex) under the lead-hash key; without one, a new UUIDv7 is
    made and logged as is.
    """
    # The body is a BatchRequest (documented through BATCH_BODY); it is parsed, validated and scored by the
    # batch worker process (serving.batch), which also spools its rows, so the event loop only
    # moves bytes however big the batch.
    state: AppState = request.app.state.leadscore
    body = await request.body()
    scored = await in_batch_thread(
        request.app.state.batch_executor, partial(_score_and_record, state, body, context, explain)
    )
    del body
    state.metrics.count_tiers(scored.tiers)
    request.app.state.batches_scored += 1
    return PacedJSON(scored.answer)
