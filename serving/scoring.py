"""Scoring one or many leads with one model version: feature records -> numpy -> scores, tiers, reasons."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi.exceptions import RequestValidationError

from features.online import lead_feature_record
from features.schema import LeadRecord
from serving.state import LoadedModel

# Activity times are aggregated as datetime64[ns]; outside this range they would silently wrap around.
_EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
_LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def check_moments(leads: Sequence[LeadRecord], loc: Sequence[str | int]) -> None:
    """422 (with the field path) for activity times no engagement window can hold."""
    errors = []
    for i, lead in enumerate(leads):
        for j, activity in enumerate(lead.activities or ()):
            if not _EARLIEST <= _aware(activity.occurred_at) < _LATEST:
                where = (*loc, i) if len(leads) > 1 or loc[-1] == "leads" else tuple(loc)
                errors.append({
                    "loc": (*where, "activities", j, "occurred_at"),
                    "msg": "Activity time must be between 1900-01-01 and 2200-01-01",
                    "type": "value_error",
                })
    if errors:
        raise RequestValidationError(errors)


def score_leads(
    model: LoadedModel,
    leads: Sequence[LeadRecord],
    request_ids: Sequence[str],
    explain: bool,
    hash_lead: Callable[[str], str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answers in order, and the score-log rows (hashed lead ids only); ``request_ids``: one per lead."""
    now = datetime.now(UTC)
    records = [lead_feature_record(lead, now) for lead in leads]
    scored = model.scorer.score_records(records, explain=explain, k=3)
    ref = {"name": model.name, "version": model.version}
    answers, rows = [], []
    for lead, request_id, item in zip(leads, request_ids, scored, strict=True):
        answers.append({
            "lead_id": lead.lead_id,
            "probability": item["probability"],
            "score": item["score"],
            "tier": item["tier"],
            "queue": item["queue"],
            "sla_hours": item["sla_hours"],
            "reasons": item.get("reasons"),
            "model": ref,
            "scored_at": now,
            "request_id": request_id,
        })
        rows.append({
            "request_id": request_id,
            "lead_hash": hash_lead(lead.lead_id),
            "model_name": model.name,
            "model_version": model.version,
            "probability": item["probability"],
            "score": item["score"],
            "tier": item["tier"],
            "scored_at": now,
        })
    return answers, rows
