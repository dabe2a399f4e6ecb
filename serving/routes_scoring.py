"""Scoring routes: one lead, or a bounded batch, in request order.

They are the hot path, so they are plain ASGI endpoints in front of FastAPI's router: the body is
validated from bytes in one pass (``model_validate_json``) and the answer is written as JSON bytes,
without FastAPI's per-request machinery (about 0.1 ms a request, measured). The app's middlewares
(metrics, body-size limit, fault barrier) still wrap them, errors keep FastAPI's shapes (422 with the
field path), and :func:`openapi_paths` describes both routes in the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from fastapi import status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException  # FastAPI's, and the body limit's, are both kinds of it
from starlette.routing import Route

from leadscore.features.schema import LeadRecord
from leadscore.serving.asgi import send_body, send_http_error, send_json, validation_errors
from leadscore.serving.deps import SECURITY, scoring_context
from leadscore.serving.schemas import EXAMPLE_LEAD, MINIMAL_LEAD, BatchRequest, BatchResponse, ScoreResponse
from leadscore.serving.scoring import score_leads
from leadscore.serving.state import AppState, LoadedModel

M = TypeVar("M", bound=BaseModel)
# Small batches are scored on the event loop (well under a millisecond each); bigger ones in the thread pool.
_INLINE_LEADS = 16
_FLAG = TypeAdapter(bool)
EXPLAIN_HELP = "Include the top reasons (on by default; off is faster)."


class ClientGone(Exception):
    """The caller disconnected before sending its whole body: nobody to answer."""


def _parse(schema: type[M], raw: bytes) -> M:
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _explain(scope: dict[str, Any]) -> bool:
    if not scope["query_string"]:  # the usual request: no query to parse
        return True
    given = QueryParams(scope["query_string"]).getlist("explain")
    if not given:
        return True
    try:
        return _FLAG.validate_python(given[-1])
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("query", "explain")} for e in exc.errors(include_url=False)]
        ) from None


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


Handler = Callable[[AppState, LoadedModel, str, bytes, bool], Awaitable[Any]]


class ScoringEndpoint:
    """A POST endpoint as a plain ASGI app: key check (401), model (503), body (422), then ``handler``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path, self.handler = path, handler

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["route"] = self  # the metrics label: the route's path, never the raw one
        try:
            state: AppState = scope["app"].state.leadscore
            model, rid = scoring_context(state, Headers(scope=scope))
            explain = _explain(scope)
            content = await self.handler(state, model, rid, await _body(receive), explain)
        except HTTPException as exc:
            await send_http_error(send, exc)
        except RequestValidationError as exc:
            await send_json(send, status.HTTP_422_UNPROCESSABLE_CONTENT, validation_errors(exc.errors()))
        except ClientGone:
            return
        else:
            await send_body(send, status.HTTP_200_OK, orjson.dumps(content, option=orjson.OPT_UTC_Z))


async def score(state: AppState, model: LoadedModel, rid: str, body: bytes, explain: bool) -> dict[str, Any]:
    """Score one lead: probability, 0-100 score, tier, queue, SLA and the top reasons."""
    lead = _parse(LeadRecord, body)
    answer, row = await state.batcher.score(model, lead, rid, explain)
    state.score_log.append([row])
    state.metrics.count_tiers([answer["tier"]])
    return answer


async def score_batch(state: AppState, model: LoadedModel, rid: str, body: bytes, explain: bool) -> dict[str, Any]:
    """Score many leads (at most LEADSCORE_MAX_BATCH); answers come back in request order."""
    batch = _parse(BatchRequest, body)
    if len(batch.leads) > state.settings.max_batch:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE,
            detail=f"batch of {len(batch.leads)} leads exceeds the limit of {state.settings.max_batch}",
        )
    if len(batch.leads) <= _INLINE_LEADS:
        answers, rows = score_leads(model, batch.leads, [rid] * len(batch.leads), explain, state.hash_lead)
    else:
        answers, rows = await run_in_threadpool(
            score_leads, model, batch.leads, [rid] * len(batch.leads), explain, state.hash_lead
        )
    state.score_log.append(rows)
    state.metrics.count_tiers([a["tier"] for a in answers])
    return {"results": answers, "model": {"name": model.name, "version": model.version}, "request_id": rid}


# path -> (handler, request body schema, its examples, response schema)
ROUTES: dict[str, tuple[Handler, type[BaseModel], dict[str, Any], type[BaseModel]]] = {
    "/v1/score": (
        score,
        LeadRecord,
        {
            "full": {"summary": "A lead with firmographics and raw activities", "value": EXAMPLE_LEAD},
            "minimal": {"summary": "Only what is known: missing fields are scored as missing", "value": MINIMAL_LEAD},
        },
        ScoreResponse,
    ),
    "/v1/score/batch": (
        score_batch,
        BatchRequest,
        {
            "two": {"summary": "Two leads", "value": {"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]}},
        },
        BatchResponse,
    ),
}


def endpoints() -> dict[str, ScoringEndpoint]:
    """The scoring endpoints by path."""
    return {path: ScoringEndpoint(path, handler) for path, (handler, *_) in ROUTES.items()}


def routes(found: dict[str, ScoringEndpoint]) -> list[Route]:
    """Routes for the endpoints, to put first in the app's router (which answers their other methods: 405)."""
    return [Route(path, endpoint, methods=["POST"], include_in_schema=False) for path, endpoint in found.items()]


_ERRORS = {
    "401": "Missing or invalid API key (when keys are configured).",
    "413": "Body larger than LEADSCORE_MAX_BODY_BYTES, or more leads than LEADSCORE_MAX_BATCH.",
    "503": "No model is loaded yet.",
}


def openapi_paths() -> dict[str, Any]:
    """OpenAPI path items of the scoring routes (their schemas are put in the components by serving.openapi)."""
    paths = {}
    for path, (handler, body, examples, answer) in ROUTES.items():
        summary = (handler.__doc__ or "").partition(":")[0]
        paths[path] = {
            "post": {
                "tags": ["scoring"],
                "summary": summary.strip(),
                "description": (handler.__doc__ or "").strip(),
                "operationId": f"{handler.__name__}_v1",
                "security": SECURITY,
                "parameters": [
                    {
                        "name": "explain",
                        "in": "query",
                        "required": False,
                        "description": EXPLAIN_HELP,
                        "schema": {"type": "boolean", "default": True, "title": "Explain", "description": EXPLAIN_HELP},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{body.__name__}"},
                            "examples": examples,
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "Successful Response",
                        "content": {
                            "application/json": {"schema": {"$ref": f"#/components/schemas/{answer.__name__}"}}
                        },
                    },
                    **{code: {"description": text} for code, text in _ERRORS.items()},
                    "422": {
                        "description": "Invalid lead: `detail[].loc` is the field path.",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
                        },
                    },
                },
            }
        }
    return paths
