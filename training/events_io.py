"""Outcome events in bulk from a CRM export (``leadscore events import``), idempotently.

A YAML mapping says which column holds what and how the CRM's labels translate::

    columns: {event_id: Event ID, lead_id: Lead ID, kind: Status, occurred_at: Date, actor: Owner,
              reason: Rejection reason, reengage_on: Re-engage on, amount: Amount}
    kinds: {Accepted: accepted, Disqualified: rejected, Won: closed_won}
    reasons: {Not ICP: not_icp, No budget: no_budget}
    timezone: UTC            # for times written without one

Without an ``event_id`` column, an event's key is a hash of its lead, kind and time, so importing the
same file twice (or an overlapping export) stores each event once. Every row is checked before any is
stored: a bad row stops the import with its row number and column; columns the mapping does not name
(notes, names) are never read.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadscore.models.settings import LoopSettings
from leadscore.models.store import DEFAULT_REJECTION_REASONS, EVENT_KINDS, open_database, store_events

FIELDS = ("event_id", "lead_id", "kind", "occurred_at", "actor", "reason", "reengage_on", "amount")
REQUIRED = ("lead_id", "kind", "occurred_at", "actor")


class EventMapping(BaseModel):
    model_config = ConfigDict(extra="forbid")

    columns: dict[str, str]
    kinds: dict[str, str] = Field(default_factory=dict)
    reasons: dict[str, str] = Field(default_factory=dict)
    rejection_reasons: list[str] = Field(default_factory=lambda: list(DEFAULT_REJECTION_REASONS), min_length=1)
    timezone: str = "UTC"


def load_mapping(path: Path) -> EventMapping:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        mapping = EventMapping.model_validate(raw)
    except (yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()
        raise ValueError(f"{path}: not an events mapping ({' '.join(first[:3])})") from None
    unknown = sorted(set(mapping.columns) - set(FIELDS))
    missing = [f for f in REQUIRED if f not in mapping.columns]
    if unknown or missing:
        raise ValueError(f"{path}: columns must name {', '.join(REQUIRED)} (unknown: {unknown}, missing: {missing})")
    bad_kinds = sorted(set(mapping.kinds.values()) - set(EVENT_KINDS))
    if bad_kinds:
        raise ValueError(f"{path}: kinds map to {bad_kinds}; expected one of {', '.join(EVENT_KINDS)}")
    bad_reasons = sorted(set(mapping.reasons.values()) - set(mapping.rejection_reasons))
    if bad_reasons:
        raise ValueError(f"{path}: reasons map to {bad_reasons}, not in rejection_reasons")
    return mapping


def _read(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path, columns=columns)
    else:
        header = pd.read_csv(path, nrows=0).columns
        absent = [c for c in columns if c not in header]
        if absent:
            raise ValueError(f"{path}: no column {absent[0]!r} (the mapping names it)")
        frame = pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False)
    return frame


def _fail(path: Path, frame: pd.DataFrame, bad: np.ndarray, column: str, what: str) -> None:
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path} row {i + 2}, column {column!r}: {what} ({int(bad.sum())} rows like it)")


def _text(series: pd.Series) -> pd.Series:
    return series.astype("string").fillna("").str.strip()


def event_rows(path: Path, mapping: EventMapping, hasher: Any) -> list[dict[str, Any]]:
    """The file's rows as event rows (hashed leads, UTC times); a ValueError names the first bad row."""
    cols = mapping.columns
    frame = _read(path, list(dict.fromkeys(cols.values())))
    now = pd.Timestamp.now(tz="UTC").to_pydatetime()
    lead = _text(frame[cols["lead_id"]])
    _fail(path, frame, (lead == "").to_numpy(), cols["lead_id"], "no lead id")
    kind_raw = _text(frame[cols["kind"]])
    kind = kind_raw.map(lambda v: mapping.kinds.get(v, v if v in EVENT_KINDS else None))
    _fail(path, frame, kind.isna().to_numpy(), cols["kind"], "not an event kind the mapping knows")
    when = pd.to_datetime(frame[cols["occurred_at"]], errors="coerce", format="mixed")
    if when.dt.tz is None:
        when = when.dt.tz_localize(mapping.timezone)
    when = when.dt.tz_convert("UTC")
    _fail(path, frame, when.isna().to_numpy(), cols["occurred_at"], "not a date and time")
    actor = _text(frame[cols["actor"]])
    _fail(path, frame, (actor == "").to_numpy() | (actor.str.len() > 128).to_numpy(), cols["actor"], "no actor id")
    n = len(frame)
    reason = pd.Series([None] * n, dtype=object)
    if "reason" in cols:
        given = _text(frame[cols["reason"]])
        reason = given.map(lambda v: mapping.reasons.get(v, v) if v else None).astype(object)
        known = reason.isin(mapping.rejection_reasons).to_numpy()
        _fail(path, frame, (kind == "rejected").to_numpy() & ~known, cols["reason"], "rejected without a known reason")
    _fail(
        path, frame, (kind == "rejected").to_numpy() & reason.isna().to_numpy(), "reason", "rejected without a reason"
    )
    reason = reason.where(kind == "rejected", None)
    reengage = pd.Series([pd.NaT] * n)
    if "reengage_on" in cols:
        reengage = pd.to_datetime(frame[cols["reengage_on"]].replace("", None), errors="coerce", format="mixed")
    _fail(
        path,
        frame,
        (kind == "recycled").to_numpy() & reengage.isna().to_numpy(),
        "reengage_on",
        "recycled without a date",
    )
    amount = pd.Series([np.nan] * n)
    if "amount" in cols:
        amount = pd.to_numeric(frame[cols["amount"]].replace("", None), errors="coerce")
        _fail(path, frame, (amount < 0).to_numpy(), cols["amount"], "a negative amount")
    _fail(
        path,
        frame,
        (kind == "opportunity_created").to_numpy() & amount.isna().to_numpy(),
        "amount",
        "an opportunity without an amount",
    )
    if "event_id" in cols:
        key = _text(frame[cols["event_id"]])
        _fail(path, frame, (key == "").to_numpy() | (key.str.len() > 128).to_numpy(), cols["event_id"], "no event id")
    else:
        key = pd.Series(
            [
                "imp-" + hashlib.sha256(f"{lid}|{k}|{t.isoformat()}".encode()).hexdigest()[:40]
                for lid, k, t in zip(lead, kind, when, strict=True)
            ]
        )
    hashes = {v: hasher(v) for v in lead.unique()}
    return [
        {
            "event_key": k,
            "lead_hash": hashes[lid],
            "kind": kd,
            "occurred_at": t.to_pydatetime(),
            "actor": a,
            "reason": r,
            "reengage_on": None if pd.isna(d) else d.date(),
            "amount": None if pd.isna(m) else float(m),
            "received_at": now,
        }
        for k, lid, kd, t, a, r, d, m in zip(key, lead, kind, when, actor, reason, reengage, amount, strict=True)
    ]


def import_events(path: Path, mapping_path: Path, settings: LoopSettings | None = None) -> tuple[int, int]:
    """Load ``path``'s events into the score log's database: (stored, duplicates)."""
    settings = settings or LoopSettings()
    mapping = load_mapping(mapping_path)
    rows = event_rows(path, mapping, settings.hasher())
    engine = open_database(settings.resolved_score_log_url)
    try:
        return store_events(engine, rows)
    finally:
        engine.dispose()


def training_table(engine: Any, since: Any, until: Any) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The logged model inputs of the leads first scored from ``since`` to ``until`` and their conversions, in
    the flat form: (leads, conversions, mapping).

    ``leads`` holds one row per lead (its first score in the window): the hashed lead id, ``scored_at`` (the
    moment the model saw the row, the mapping's ``created_at``) and the model input as it was scored, so a
    model trained on it learns from exactly what the scorer saw. ``conversions`` holds each lead's first
    opportunity at or after that score. Scores without a logged model input are left out.
    """
    from leadscore.training.loop_report.data import read_events, read_scores
    from leadscore.training.loop_report.figures import _inputs

    scores = read_scores(engine, since, until)
    scores = scores[scores["model_input"].notna()]
    if scores.empty:
        raise ValueError("no scores with a logged model input in that window")
    scores["scored_at"] = pd.to_datetime(scores["scored_at"], utc=True)
    scores = scores.sort_values(["scored_at", "request_id"], kind="mergesort").drop_duplicates("lead_hash")
    inputs = _inputs(scores).drop(columns=["lead_id", "scored_at"], errors="ignore")
    inputs = inputs.rename(columns={"created_at": "lead_created_at"})
    leads = pd.concat(
        [scores[["lead_hash", "scored_at"]].rename(columns={"lead_hash": "lead_id"}), inputs], axis=1
    ).reset_index(drop=True)
    events = read_events(engine, since)
    opps = events[events["kind"] == "opportunity_created"].copy()
    opps["occurred_at"] = pd.to_datetime(opps["occurred_at"], utc=True)
    opps = opps.merge(scores[["lead_hash", "scored_at"]], on="lead_hash")
    opps = opps[opps["occurred_at"] >= opps["scored_at"]]
    conversions = (
        opps.groupby("lead_hash", as_index=False)["occurred_at"]
        .min()
        .rename(columns={"lead_hash": "lead_id", "occurred_at": "converted_at"})
    )
    kinds: dict[str, list[str]] = {"categorical": [], "numeric": [], "boolean": []}
    for column in inputs.columns:
        if column == "lead_created_at":
            continue
        values = inputs[column].dropna()
        if len(values) and values.map(lambda v: isinstance(v, bool)).all():
            kinds["boolean"].append(column)
        elif len(values) and values.map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).all():
            kinds["numeric"].append(column)
        else:
            kinds["categorical"].append(column)
    mapping = {
        "form": "flat",
        "id": "lead_id",
        "created_at": "scored_at",
        "conversions": {"table": "conversions.csv", "id": "lead_id", "at": "converted_at"},
        **kinds,
        "exclude": [c for c in ("lead_created_at",) if c in inputs.columns],
    }
    return leads, conversions, mapping


def export_events(out: Path, since: Any, until: Any, settings: LoopSettings | None = None) -> tuple[int, int]:
    """Write ``leads.csv``, ``conversions.csv`` and ``mapping.yaml`` into ``out``: (leads, conversions)."""
    from sqlalchemy import create_engine

    from leadscore.features.files import write_atomic

    settings = settings or LoopSettings()
    engine = create_engine(settings.resolved_score_log_url)
    try:
        leads, conversions, mapping = training_table(engine, since, until)
    finally:
        engine.dispose()
    out = Path(out)
    write_atomic(out / "leads.csv", leads.to_csv(index=False))
    write_atomic(out / "conversions.csv", conversions.to_csv(index=False))
    write_atomic(out / "mapping.yaml", yaml.safe_dump(mapping, sort_keys=False))
    return len(leads), len(conversions)
