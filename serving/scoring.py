"""Scoring one or many leads with one model version: feature records -> numpy -> scores, tiers, reasons."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from leadscore.features.online import lead_feature_record
from leadscore.features.schema import LeadRecord

if TYPE_CHECKING:
    from leadscore.models.scorer import Scorer

_INPUT_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z


@dataclass(frozen=True)
class LoadedModel:
    """One warmed model version; immutable, so a request holding it sees one consistent model."""

    scorer: Scorer
    name: str
    version: str
    source: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def _without_id(record: dict[str, Any]) -> dict[str, Any]:
    """The record without the raw lead id (the score log keeps its hash only)."""
    record.pop("lead_id", None)
    return record


def score_leads(
    model: LoadedModel,
    leads: Sequence[LeadRecord],
    request_ids: Sequence[str],
    explain: bool,
    hash_lead: Callable[[str], str],
    now: datetime | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Answers in order, and the score-log rows (hashed lead ids only, with the feature record the model scored
    as JSON: no names or emails enter it); ``request_ids``: one per lead; ``now``: the scoring moment (the
    current time when not given)."""
    now = now or datetime.now(UTC)
    records = [lead_feature_record(lead, now) for lead in leads]
    scored = model.scorer.score_records(records, explain=explain, k=3)
    ref = {"name": model.name, "version": model.version}
    answers, rows = [], []
    for lead, request_id, item, record in zip(leads, request_ids, scored, records, strict=True):
        answers.append(
            {
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
            }
        )
        rows.append(
            {
                "request_id": request_id,
                "lead_hash": hash_lead(lead.lead_id),
                "model_name": model.name,
                "model_version": model.version,
                "probability": item["probability"],
                "score": item["score"],
                "tier": item["tier"],
                "scored_at": now,
                "queue": item["queue"],
                "sla_hours": item["sla_hours"],
                "model_input": orjson.dumps(_without_id(record), option=_INPUT_JSON).decode(),
            }
        )
    return answers, rows
