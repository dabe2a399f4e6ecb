"""``leadscore loop-report``: what happened to every lead scored in a window (HTML, JSON, CSV)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import create_engine

from leadscore.features.files import write_atomic
from leadscore.models.settings import LoopSettings, MlflowSettings
from leadscore.training.loop_report import data as loop_data
from leadscore.training.loop_report.figures import LoopData, compute, version_labels
from leadscore.training.loop_report.references import fetch_references
from leadscore.training.loop_report.render import images, page
from leadscore.training.report.figures import json_safe

PAGE = "loop.html"
SUMMARY = "loop.json"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def build(
    url: str,
    since: datetime,
    until: datetime,
    *,
    as_of: datetime | None = None,
    horizon_days: int = 90,
    segments: list[str] | None = None,
    reference: tuple[datetime, datetime] | None = None,
    references: dict[str, dict[str, Any] | str] | None = None,
    settings: MlflowSettings | None = None,
) -> dict[str, Any]:
    """The report's summary from the database at ``url``.

    Drift is measured against each scoring model version's holdout reference: ``references`` (by
    ``name/version``), else those read from the registry of ``settings``; and, labelled as such, against
    the scores of ``reference`` (default: the period of the same length just before ``since``).
    """
    since, until = _utc(since), _utc(until)
    if until <= since:
        raise ValueError(f"--until ({until:%Y-%m-%d}) must come after --since ({since:%Y-%m-%d})")
    as_of = _utc(as_of) if as_of else datetime.now(UTC)
    ref_since, ref_until = reference if reference else (since - (until - since), since)
    engine = create_engine(url)
    try:
        scores = loop_data.read_scores(engine, since, until)
        if scores.empty:
            raise ValueError(f"no scores from {since:%Y-%m-%d} to {until:%Y-%m-%d} in the score log")
        events = loop_data.read_events(engine, since)
        ref = loop_data.read_scores(engine, _utc(ref_since), _utc(ref_until))
    finally:
        engine.dispose()
    if references is None:
        labels = set(version_labels(scores))
        references = (
            fetch_references(settings, labels) if settings is not None else dict.fromkeys(labels, "no registry given")
        )
    inp = LoopData(
        scores=scores,
        references=references,
        events=events,
        reference=ref if len(ref) else None,
        since=since,
        until=until,
        as_of=as_of,
        horizon_days=horizon_days,
        segments=list(segments if segments is not None else ["source"]),
    )
    return json_safe(compute(inp))


def write(summary: dict[str, Any], out: Path) -> list[Path]:
    """Charts and page drawn first, then the CSV tables, loop.json and (last) loop.html, each atomically."""
    pictures = images(summary)
    html = page(summary, pictures)
    files: dict[str, str | bytes] = {
        f"{name}.csv": pd.DataFrame(rows).to_csv(index=False) for name, rows in summary["tables"].items()
    }
    files[SUMMARY] = json.dumps(summary, indent=2, allow_nan=False)
    written = [write_atomic(Path(out) / name, content) for name, content in files.items()]
    written.append(write_atomic(Path(out) / PAGE, html))
    return written


def loop_report(
    since: datetime,
    until: datetime,
    out: Path,
    settings: LoopSettings | None = None,
    **options: Any,
) -> dict[str, Any]:
    settings = settings or LoopSettings()
    summary = build(settings.resolved_score_log_url, since, until, settings=settings, **options)
    write(summary, out)
    return summary


__all__ = ["build", "loop_report", "write"]
