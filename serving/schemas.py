"""Request and response bodies of the scoring API, with the example lead the OpenAPI document carries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from leadscore.features.schema import LeadRecord

EXAMPLE_LEAD: dict[str, Any] = {
    "lead_id": "L-2026-000123",
    "created_at": "2026-09-21T09:30:00Z",
    "source": "inbound",
    "campaign": "pricing-guide-q3",
    "country": "US",
    "region": "NA",
    "industry": "saas",
    "employees": 250,
    "annual_revenue": 32000000,
    "title": "VP Sales",
    "seniority": "vp",
    "department": "sales",
    "is_mql": True,
    "manual_score": 65,
    "bant_budget": True,
    "bant_authority": True,
    "bant_need": True,
    "bant_timing": False,
    "email": "jane.doe@example.com",
    "name": "Jane Doe",
    "activities": [
        {"type": "web_visit", "occurred_at": "2026-09-21T09:25:00Z"},
        {"type": "pricing_page_view", "occurred_at": "2026-09-22T14:05:00Z"},
        {"type": "demo_request", "occurred_at": "2026-09-23T10:12:00Z"},
    ],
}

MINIMAL_LEAD: dict[str, Any] = {"lead_id": "L-2026-000124", "source": "webinar", "employees": 40}


class BatchRequest(BaseModel):
    """Leads to score in one call (at most ``LEADSCORE_MAX_BATCH``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"leads": [EXAMPLE_LEAD, MINIMAL_LEAD]}]})

    leads: list[LeadRecord] = Field(min_length=1, description="Leads, answered in the same order.")


class Reason(BaseModel):
    feature: str = Field(description="Model input column.")
    label: str = Field(description="Readable name of the factor.")
    value: str | float | bool | None = Field(description="The lead's value (null when missing).")
    contribution: float = Field(description="Effect on the calibrated log-odds (positive raises the score).")


class Reasons(BaseModel):
    positive: list[Reason] = Field(description="Top factors raising the score.")
    negative: list[Reason] = Field(description="Top factors lowering the score.")


class ModelRef(BaseModel):
    name: str
    version: str


class ScoreResponse(BaseModel):
    """One lead's score, tier, queue and reasons, naming the model version that scored it."""

    lead_id: str
    probability: float = Field(ge=0, le=1, description="Calibrated conversion probability within the target horizon.")
    score: int = Field(ge=0, le=100, description="Share of recent (holdout) leads this lead outranks, 0-100.")
    tier: str
    queue: str
    sla_hours: float | None = Field(description="Time to first touch for this tier (null: no SLA).")
    reasons: Reasons | None = Field(default=None, description="Top factors; null when explain=false.")
    model: ModelRef
    scored_at: datetime
    request_id: str


class BatchResponse(BaseModel):
    results: list[ScoreResponse] = Field(description="One answer per lead, in request order.")
    model: ModelRef
    request_id: str


class TierInfo(BaseModel):
    name: str
    queue: str
    sla_hours: float | None
    min_probability: float = Field(description="A lead enters the first tier whose threshold it reaches.")
    expected_share: float = Field(description="Share of leads expected in this tier (from the holdout).")


class ModelInfo(BaseModel):
    """Which model version serves, where it came from, when and on what data it was trained."""

    name: str
    version: str
    alias: str
    source: str = Field(description="'registry' (resolved from the alias), 'cache' (registry unreachable) or 'static'.")
    loaded_at: datetime
    trained_at: str | None = None
    target: str | None = None
    horizon_days: int | None = None
    training_window: dict[str, Any] | None = None
    holdout_window: dict[str, Any] | None = None
    metrics: dict[str, float] = Field(default_factory=dict, description="Holdout metrics of the model.")
    baseline_metrics: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Holdout metrics of baselines and manual processes."
    )
    tiers: list[TierInfo]
    leads_per_week: float | None = None
    feature_columns: list[str]
    poll_seconds: float
    last_checked_at: datetime | None = None
    last_reload_at: datetime | None = None
    last_reload_error: str | None = Field(
        default=None, description="Why the newest alias target was refused, if it was."
    )
    last_poll_error: str | None = Field(
        default=None,
        description="Why the last registry check failed (null: it worked), starting with its kind: "
        "connection_refused, timeout, no_alias, no_such_version or other.",
    )


class ErrorDetail(BaseModel):
    """An error answer (401, 413, 503, ...)."""

    detail: str


class ValidationProblem(BaseModel):
    loc: list[str | int] = Field(description="Where: 'body' or 'query', then the field path (indexes for lists).")
    msg: str
    type: str


class ValidationErrors(BaseModel):
    """A 422 answer: each problem's place and message; the caller's input is not echoed back."""

    detail: list[ValidationProblem]


# OpenAPI descriptions of the error answers, by status (for a route's ``responses=``).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or invalid API key (when keys are configured)."},
    413: {
        "model": ErrorDetail,
        "description": "Body larger than LEADSCORE_MAX_BODY_BYTES, or more leads than LEADSCORE_MAX_BATCH.",
    },
    422: {"model": ValidationErrors, "description": "Invalid request: `detail[].loc` is the field path."},
    503: {"model": ErrorDetail, "description": "No model is loaded yet (retry after `Retry-After` seconds)."},
}


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    model: ModelRef | None = None
