"""The hand-off played for scored synthetic leads: score-log rows and the outcome events that follow them.

For tests and the demo. Each lead is scored when it is created. Handed-off leads (tiers with an SLA)
are accepted or rejected by an account executive: leads that become opportunities are always accepted,
others with a chance that grows with their probability, and a rejection's reason follows the lead's fit
(small companies: not the ideal customer profile or no budget; individual contributors: no authority;
no timing: no timeline; a few wrong contacts and duplicates). Leads without an SLA (nurture) are
mostly recycled with a date to re-engage; a few handed-off leads are never touched. The first touch comes after a log-normal delay around half
the tier's SLA, so about one in five misses it. Opportunities, wins and losses happen when the
generator's outcomes say they do (or, without outcomes, are drawn from the probability). Nothing after
``as_of`` has happened yet. Same inputs and seed, same rows.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from leadscore.features.schema import (
    CREATED_AT,
    FIRMOGRAPHIC_CATEGORICAL,
    FIRMOGRAPHIC_NUMERIC,
    LEAD_ID,
    MANUAL_COLUMNS,
)
from leadscore.models.store import (
    DEFAULT_REJECTION_REASONS,
    create_events_table,
    lead_hasher,
    score_log_table,
    store_events,
)

H = pd.Timedelta(hours=1)
TOUCH_MEDIAN_OF_SLA = 0.5  # the median first touch comes at half the tier's SLA
TOUCH_SIGMA = 0.85  # log-normal spread of the first touch: P(miss) = P(Z > ln 2 / 0.85), about 21%
RECYCLE_SHARE = 0.7  # nurture leads recycled (the rest see no event)
FORGOTTEN_SHARE = 0.04  # handed-off leads without an opportunity that nobody ever touches
MODEL_INPUTS = (*FIRMOGRAPHIC_CATEGORICAL, *FIRMOGRAPHIC_NUMERIC, *MANUAL_COLUMNS)


def _reason_weights(leads: pd.DataFrame) -> np.ndarray:
    """Per lead, weights of each default rejection reason from its fit."""
    n = len(leads)
    w = np.tile(np.array([1.0, 1.0, 0.6, 0.8, 0.3, 0.2]), (n, 1))
    employees = pd.to_numeric(leads.get("employees", pd.Series(np.nan, index=leads.index)), errors="coerce")
    small = (employees < 100).to_numpy()
    w[small, 0] += 2.5  # not_icp
    w[small, 1] += 1.5  # no_budget
    seniority = leads.get("seniority", pd.Series("", index=leads.index)).astype("string").fillna("")
    w[(seniority == "individual_contributor").to_numpy(), 2] += 3.0  # no_authority
    timing = leads.get("bant_timing", pd.Series(True, index=leads.index))
    w[(timing.astype("boolean").fillna(True) == False).to_numpy(), 3] += 2.0  # noqa: E712 - no_timeline
    return w / w.sum(axis=1, keepdims=True)


def play(
    scored: pd.DataFrame,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    as_of: datetime,
    seed: int = 0,
) -> pd.DataFrame:
    """Outcome events (lead_id, event_id, kind, occurred_at, actor, reason, reengage_on, amount) of ``scored``
    (lead_id, probability, tier, queue, sla_hours, scored_at), in the order they happened, up to ``as_of``."""
    rng = np.random.default_rng(seed)
    s = scored.reset_index(drop=True)
    n = len(s)
    fit = leads.set_index(LEAD_ID).reindex(s[LEAD_ID]).reset_index()
    scored_at = pd.to_datetime(s["scored_at"], utc=True)
    p = s["probability"].to_numpy(float)
    sla = pd.to_numeric(s["sla_hours"], errors="coerce").to_numpy(float)
    handed = ~np.isnan(sla)
    if outcomes is not None and len(outcomes):
        o = outcomes.drop_duplicates(LEAD_ID).set_index(LEAD_ID).reindex(s[LEAD_ID])
        opp_at = pd.to_datetime(o["opportunity_created_at"], utc=True).reset_index(drop=True)
        closed_at = pd.to_datetime(o["closed_at"], utc=True).reset_index(drop=True)
        stage = o["stage"].astype("string").fillna("open").reset_index(drop=True)
        amount = pd.to_numeric(o["amount"], errors="coerce").reset_index(drop=True)
    else:
        has = rng.random(n) < p
        opp_at = pd.Series(scored_at + pd.to_timedelta(rng.gamma(2.0, 12.0, n), unit="D")).where(has)
        closed_at = opp_at + pd.to_timedelta(rng.gamma(3.0, 20.0, n), unit="D")
        stage = pd.Series(np.where(has, np.where(rng.random(n) < 0.3, "closed_won", "closed_lost"), "open"))
        amount = pd.Series(np.where(has, np.round(rng.lognormal(np.log(30_000), 0.6, n), -2), np.nan))
    opportunity = opp_at.notna().to_numpy() & (opp_at >= scored_at).to_numpy()
    # first touch: a log-normal delay around half the SLA (a day for leads without one)
    base = np.where(handed, np.nan_to_num(sla) * TOUCH_MEDIAN_OF_SLA, 24.0)
    delay = base * rng.lognormal(0.0, TOUCH_SIGMA, n)
    touch_at = scored_at + pd.to_timedelta(delay, unit="h")
    accept_p = np.clip(0.35 + 2.5 * p, 0.0, 0.95)
    forgotten = handed & ~opportunity & (rng.random(n) < FORGOTTEN_SHARE)
    accepted = handed & ~forgotten & (opportunity | (rng.random(n) < accept_p))
    rejected = handed & ~forgotten & ~accepted
    recycled = ~handed & ~opportunity & (rng.random(n) < RECYCLE_SHARE)
    contacted_nurture = ~handed & opportunity
    weights = _reason_weights(fit)
    reasons = np.array(DEFAULT_REJECTION_REASONS)[(rng.random((n, 1)) > np.cumsum(weights, axis=1)).sum(axis=1)]
    actor = np.char.add(
        s["queue"].fillna("queue").astype(str).to_numpy().astype(str), np.char.mod("-%d", rng.integers(1, 7, n))
    )
    meeting = (accepted | contacted_nurture) & (opportunity | (rng.random(n) < 0.25))
    meeting_at = touch_at + pd.to_timedelta(rng.gamma(2.0, 14.0, n), unit="h")
    # an opportunity comes after the touch and the meeting, whatever the generator's date
    opp_when = pd.Series(np.maximum(opp_at.fillna(scored_at).to_numpy(), (meeting_at + H).to_numpy()))
    close_when = pd.Series(np.maximum(closed_at.fillna(opp_when).to_numpy(), (opp_when + 24 * H).to_numpy()))
    ids = s[LEAD_ID].astype(str).to_numpy()
    parts = []

    def add(mask: np.ndarray, kind: str, when: pd.Series, **extra: Any) -> None:
        if not mask.any():
            return
        frame = pd.DataFrame(
            {
                LEAD_ID: ids[mask],
                "event_id": np.char.add(np.char.add("sim-", ids[mask]), f"-{kind}"),
                "kind": kind,
                "occurred_at": pd.Series(when).to_numpy()[mask],
                "actor": actor[mask],
            }
        )
        for key, values in extra.items():
            frame[key] = np.asarray(values)[mask] if isinstance(values, (np.ndarray, pd.Series)) else values
        parts.append(frame)

    add(accepted, "accepted", touch_at)
    add(rejected, "rejected", touch_at, reason=reasons)
    add(recycled, "recycled", touch_at, reengage_on=(touch_at + pd.Timedelta(days=90)).dt.date.to_numpy())
    add(contacted_nurture, "contacted", touch_at)
    add(meeting, "meeting_booked", meeting_at)
    add(opportunity, "opportunity_created", opp_when, amount=amount.fillna(10_000.0).to_numpy())
    won = opportunity & (stage == "closed_won").to_numpy()
    lost = opportunity & (stage == "closed_lost").to_numpy()
    add(won, "closed_won", close_when, amount=amount.fillna(10_000.0).to_numpy())
    add(lost, "closed_lost", close_when)
    columns = [LEAD_ID, "event_id", "kind", "occurred_at", "actor", "reason", "reengage_on", "amount"]
    events = pd.concat(parts, ignore_index=True).reindex(columns=columns) if parts else pd.DataFrame(columns=columns)
    events["occurred_at"] = pd.to_datetime(events["occurred_at"], utc=True)
    events = events[events["occurred_at"] <= pd.Timestamp(as_of)]
    return events.sort_values(["occurred_at", "event_id"], kind="mergesort").reset_index(drop=True)


def score_log_rows(
    scored: pd.DataFrame, leads: pd.DataFrame, hasher: Any, model_name: str, model_version: str
) -> list[dict[str, Any]]:
    """Score-log rows of ``scored`` as the API writes them: the lead hashed, the model input without PII."""
    fit = leads.set_index(LEAD_ID).reindex(scored[LEAD_ID])
    inputs = fit[[c for c in MODEL_INPUTS if c in fit.columns]].astype(object).where(fit.notna(), None)
    scored_at = pd.to_datetime(scored["scored_at"], utc=True)
    created = pd.to_datetime(fit[CREATED_AT], utc=True) if CREATED_AT in fit else scored_at
    records = inputs.to_dict("records")
    rows = []
    for i, (lead_id, record) in enumerate(zip(scored[LEAD_ID].astype(str), records, strict=True)):
        record["created_at"] = created.iloc[i]
        rows.append(
            {
                "request_id": f"sim-{lead_id}",
                "lead_hash": hasher(lead_id),
                "model_name": model_name,
                "model_version": model_version,
                "probability": float(scored["probability"].iloc[i]),
                "score": int(scored["score"].iloc[i]),
                "tier": str(scored["tier"].iloc[i]),
                "queue": None if pd.isna(scored["queue"].iloc[i]) else str(scored["queue"].iloc[i]),
                "sla_hours": None if pd.isna(scored["sla_hours"].iloc[i]) else float(scored["sla_hours"].iloc[i]),
                "scored_at": scored_at.iloc[i].to_pydatetime(),
                "model_input": orjson.dumps(
                    record, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z, default=str
                ).decode(),
            }
        )
    return rows


def event_rows(events: pd.DataFrame, hasher: Any, received_at: datetime) -> list[dict[str, Any]]:
    """``play``'s events as rows of the events table."""
    hashes = {v: hasher(v) for v in events[LEAD_ID].astype(str).unique()}
    return [
        {
            "event_key": r.event_id,
            "lead_hash": hashes[str(r.lead_id)],
            "kind": r.kind,
            "occurred_at": r.occurred_at.floor("us").to_pydatetime(),
            "actor": r.actor,
            "reason": None if pd.isna(r.reason) else r.reason,
            "reengage_on": None if not isinstance(r.reengage_on, type(received_at.date())) else r.reengage_on,
            "amount": None if pd.isna(r.amount) else float(r.amount),
            "received_at": received_at,
        }
        for r in events.itertuples(index=False)
    ]


def fill_database(
    engine: Any,
    scored: pd.DataFrame,
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None,
    as_of: datetime,
    seed: int = 0,
    hash_key: bytes | None = None,
    model: tuple[str, str] = ("lead-scoring", "demo"),
) -> tuple[int, int]:
    """Write ``scored`` to the score log and the played events to the events table: (scores, events) written."""
    hasher = lead_hasher(hash_key)
    create_events_table(engine)
    rows = score_log_rows(scored, leads, hasher, *model)
    with engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(score_log_table.insert(), rows[start : start + 5000])
    events = play(scored, leads, outcomes, as_of, seed)
    stored, _ = store_events(engine, event_rows(events, hasher, pd.Timestamp(as_of).to_pydatetime()))
    return len(rows), stored


def demo_loop(
    crm: Path,
    scores_path: Path,
    sla_by_tier: dict[str, float | None],
    url: str,
    seed: int = 0,
    model: tuple[str, str] = ("lead-scoring", "demo"),
) -> tuple[int, int, datetime]:
    """The demo's hand-off: the batch scores of ``crm``'s leads by ``model`` (name, version) logged as scored
    when each lead was created, the hand-off played up to the last lead's creation; (scores, events, as_of)."""
    from sqlalchemy import create_engine

    leads = pd.read_parquet(Path(crm) / "leads.parquet")
    outcomes = pd.read_parquet(Path(crm) / "outcomes.parquet")
    scored = pd.read_csv(scores_path, dtype={LEAD_ID: str})
    created = pd.to_datetime(leads.set_index(LEAD_ID)[CREATED_AT], utc=True)
    scored["scored_at"] = scored[LEAD_ID].map(created)
    scored["sla_hours"] = scored["tier"].map(sla_by_tier)
    scored = scored[scored["scored_at"].notna()]
    as_of = scored["scored_at"].max().to_pydatetime()
    engine = create_engine(url)
    try:
        n_scores, n_events = fill_database(engine, scored, leads, outcomes, as_of, seed, model=model)
    finally:
        engine.dispose()
    return n_scores, n_events, as_of
