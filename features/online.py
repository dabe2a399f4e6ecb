"""A scoring request's lead as a feature record, by the same engagement code that training uses."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from leadscore.features.engagement import engagement_feature_names, lead_engagement
from leadscore.features.schema import LeadRecord

_NOT_FEATURES = {"activities", "engagement", "attributes", "email", "name"}
_NAMES = engagement_feature_names()
_NO_ACTIVITY = dict.fromkeys(_NAMES, 0.0) | {"days_since_last_activity": float("nan")}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, as ``datetime64[ns]`` holds the moment (a naive time is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // _MICROSECOND * 1000


def lead_feature_record(lead: LeadRecord, scoring_at: datetime) -> dict[str, Any]:
    """Flatten a lead into ``{column: value}`` as of ``scoring_at``.

    Raw ``activities`` are aggregated exactly as in training; otherwise the given ``engagement``
    values are used; a lead with neither is scored as having no recorded activity. Names and
    emails never enter the record.
    """
    record = {k: v for k, v in lead.__dict__.items() if k not in _NOT_FEATURES}
    if lead.activities:
        activities = lead.activities
        aggregated = lead_engagement(
            [a.type for a in activities], [_ns(a.occurred_at) for a in activities], _ns(scoring_at)
        )
        record.update(zip(_NAMES, aggregated, strict=True))
    else:
        record.update(_NO_ACTIVITY)
        if lead.engagement:
            record.update(lead.engagement)
    if lead.attributes:
        record.update(lead.attributes)
    return record
