"""The loop report's figures: what happened to every lead scored in a window, from the score log and the events.

A lead's cohort is its first score in the window (``lead_hash``); only its events at or after that score
count, and they are read in the order they happened (``occurred_at``), whatever order they arrived in:
the first touch is the earliest ``accepted``/``contacted``, the close is the latest of ``closed_won`` and
``closed_lost``, the rejection reason the latest rejection's. A lead *converted* when an opportunity was
created within ``horizon_days`` of its score, the model's target; a cohort has *matured* when that horizon
has ended by ``as_of``, and only matured leads are compared with their predicted probability. Younger
leads are shown beside what the model expects of them (the sum of their probabilities, and an AUC
estimated from the probabilities alone, as confidence-based performance estimation does).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import pandas as pd

from leadscore.models import drift as holdout_drift
from leadscore.models.store import HANDLED_KINDS

H = pd.Timedelta(hours=1)
Z95 = 1.959963984540054
PSI_FLAG = holdout_drift.PSI_FLAG
JS_FLAG = holdout_drift.JS_FLAG
MIN_LEADS = 30  # fewer leads in a group: its rates are shown, never flagged
DRIFT_BINS = 10
SLA_STATUSES = ("on time", "late", "overdue", "pending", "no SLA")
FUNNEL_KEYS = ("source", "campaign")  # marketing's funnel is read by these model inputs, when logged
# (stage, column, the event that marks it): each stage's leads, in order
FUNNEL = (
    ("mql", "stage_mql", "scored and handed off (a tier with an SLA)"),
    ("sal", "stage_sal", "accepted"),
    ("sql", "stage_sql", "meeting_booked"),
    ("opportunity", "stage_opportunity", "opportunity_created"),
    ("won", "stage_won", "closed_won"),
)


@dataclass
class LoopData:
    """Rows read from the database: every score in the window and every event since its start."""

    scores: pd.DataFrame  # request_id, lead_hash, probability, score, tier, queue, sla_hours, scored_at, model_input
    events: pd.DataFrame  # lead_hash, kind, occurred_at, actor, reason, amount
    reference: pd.DataFrame | None = None  # scores of the previous period (drift against it), or None
    # per model version ("name/version") that scored the window: its holdout's drift reference (a dict),
    # or why there is none (a sentence)
    references: dict[str, dict[str, Any] | str] = field(default_factory=dict)
    since: datetime | None = None
    until: datetime | None = None
    as_of: datetime | None = None
    horizon_days: int = 90
    segments: list[str] = field(default_factory=lambda: ["source"])
    _parsed: pd.DataFrame | None = field(default=None, repr=False, compare=False)

    def inputs(self) -> pd.DataFrame:
        """The logged model inputs of every score, row for row with ``scores`` (parsed once)."""
        if self._parsed is None:
            self._parsed = _inputs(self.scores.reset_index(drop=True))
        return self._parsed

    def measures_holdout_drift(self) -> bool:
        """Whether some version has a holdout reference (its drift reads every score's inputs)."""
        return any(holdout_drift.is_reference(r) for r in self.references.values())


def wilson(k: int, n: int) -> tuple[float | None, float | None]:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return None, None
    p = k / n
    d = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / d
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / d
    return max(0.0, centre - half), min(1.0, centre + half)


def estimated_auc(p: np.ndarray) -> float | None:
    """The ROC AUC the probabilities expect of themselves, were they calibrated: each lead is a positive with
    weight p and a negative with weight 1-p; pairs within one lead do not count, ties count half."""
    p = np.asarray(p, dtype=float)
    if len(p) < 2:
        return None
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    pos, neg = ps, 1 - ps
    # for each lead as the positive: negative weight strictly below it, and half of the tied weight
    values, starts = np.unique(ps, return_index=True)
    neg_cum = np.concatenate([[0.0], np.cumsum(neg)])
    ends = np.append(starts[1:], len(ps))
    below = neg_cum[starts]
    tied = neg_cum[ends] - neg_cum[starts]
    group = np.repeat(np.arange(len(values)), ends - starts)
    pairs = pos * (below[group] + 0.5 * (tied[group] - neg))  # a lead is not paired with itself
    total = pos.sum() * neg.sum() - (pos * neg).sum()
    return float(pairs.sum() / total) if total > 0 else None


def realized_auc(y: np.ndarray, p: np.ndarray) -> float | None:
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(p).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _aware(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def lead_outcomes(data: LoopData) -> pd.DataFrame:
    """One row per lead scored in the window: its cohort score and what happened to it since."""
    scores = data.scores.copy()
    scores["_row"] = np.arange(len(scores))
    scores["scored_at"] = _aware(scores["scored_at"])
    scores = scores.sort_values(["scored_at", "request_id"], kind="mergesort")
    leads = scores.drop_duplicates("lead_hash", keep="first").reset_index(drop=True)
    lead_index = pd.Index(leads["lead_hash"])  # a lead is its row number from here on: integer keys are fast
    scores["i"] = lead_index.get_indexer(scores["lead_hash"])
    as_of = pd.Timestamp(data.as_of)
    ev = data.events.assign(i=lead_index.get_indexer(data.events["lead_hash"]))
    ev = ev[ev["i"] >= 0].copy()
    ev["occurred_at"] = _aware(ev["occurred_at"])
    ev = ev[(ev["occurred_at"] >= leads["scored_at"].to_numpy()[ev["i"].to_numpy()]) & (ev["occurred_at"] <= as_of)]
    ev = ev.sort_values("occurred_at", kind="mergesort")
    first = ev.groupby(["i", "kind"])["occurred_at"].min().unstack()
    out = leads[["lead_hash", "probability", "score", "tier", "queue", "sla_hours", "scored_at", "request_id"]].copy()
    out["week"] = (out["scored_at"].dt.tz_convert(None).dt.to_period("W-SUN").dt.start_time).dt.strftime("%Y-%m-%d")

    def at(kind: str) -> pd.Series:
        if kind not in first.columns:
            return pd.Series(pd.NaT, index=out.index, dtype="datetime64[ns, UTC]")
        return pd.to_datetime(first[kind].reindex(out.index), utc=True)

    def last(kinds: list[str]) -> pd.DataFrame:
        """Each lead's latest event of ``kinds`` (by occurred_at), indexed by lead."""
        return ev[ev["kind"].isin(kinds)].drop_duplicates("i", keep="last").set_index("i").reindex(out.index)

    out["accepted"] = at("accepted").notna()
    out["rejected"] = at("rejected").notna()
    out["recycled"] = at("recycled").notna()
    out["reason"] = last(["rejected"])["reason"]
    # the SLA clock stops at the first touch, or when the lead leaves the queue rejected or recycled
    touch = pd.to_datetime(pd.concat([at(k) for k in HANDLED_KINDS], axis=1).min(axis=1), utc=True)
    out["first_touch_at"] = touch
    out["hours_to_touch"] = (touch - out["scored_at"]) / H
    due = out["scored_at"] + pd.to_timedelta(out["sla_hours"], unit="h")
    has_sla = out["sla_hours"].notna()
    on_time = has_sla & touch.notna() & (touch <= due)
    late = has_sla & ((touch.notna() & (touch > due)) | (touch.isna() & (due < as_of)))
    out["sla_status"] = np.select(
        [~has_sla, on_time, late & touch.notna(), late], ["no SLA", "on time", "late", "overdue"], "pending"
    )
    out["opportunity_at"] = at("opportunity_created")
    opp = ev[ev["kind"] == "opportunity_created"].groupby("i")["amount"].sum(min_count=1)
    out["pipeline"] = opp.reindex(out.index).fillna(0.0)
    closes = last(["closed_won", "closed_lost"])
    out["won"] = (closes["kind"] == "closed_won").to_numpy()
    won_amount = closes["amount"].where(out["won"])
    out["won_amount"] = won_amount.fillna(out["pipeline"].where(out["won"], 0.0)).fillna(0.0)
    horizon = pd.Timedelta(days=data.horizon_days)
    out["opportunity"] = out["opportunity_at"].notna()
    out["converted"] = out["opportunity"] & (out["opportunity_at"] - out["scored_at"] <= horizon)
    out["matured"] = out["scored_at"] + horizon <= as_of
    out["score_at_opportunity"] = _score_at(scores, out)
    # funnel stages, each implied by the later ones (an opportunity without a logged meeting passed SQL)
    out["stage_won"] = out["won"]
    out["stage_opportunity"] = out["opportunity"] | out["stage_won"]
    out["stage_sql"] = at("meeting_booked").notna() | out["stage_opportunity"]
    out["stage_sal"] = out["accepted"] | out["stage_sql"]
    out["stage_mql"] = has_sla | out["stage_sal"]
    # the leads' inputs: sliced from every score's when the drift parses those anyway
    rows = leads["_row"].to_numpy()
    inputs = data.inputs().iloc[rows].reset_index(drop=True) if data.measures_holdout_drift() else _inputs(leads)
    for name, values in _segments(inputs, list(dict.fromkeys([*data.segments, *FUNNEL_KEYS]))).items():
        out[name] = values
    return out


def _score_at(scores: pd.DataFrame, out: pd.DataFrame) -> pd.Series:
    """The lead's latest score at or before its opportunity was created (its cohort score when none later)."""
    opps = out.loc[out["opportunity_at"].notna(), ["opportunity_at"]].rename_axis("i").reset_index()
    result = pd.Series(np.nan, index=out.index)
    if opps.empty:
        return result
    found = pd.merge_asof(
        opps.sort_values("opportunity_at"),
        scores[["i", "scored_at", "score"]].sort_values("scored_at"),
        left_on="opportunity_at",
        right_on="scored_at",
        by="i",
        direction="backward",
    )
    result.iloc[found["i"].to_numpy()] = found["score"].to_numpy()
    return result


def _inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The logged model inputs as columns (rows without one: all missing)."""
    texts = frame["model_input"] if "model_input" in frame else pd.Series(None, index=frame.index)
    rows = [orjson.loads(t) if isinstance(t, str) and t else {} for t in texts]
    return pd.DataFrame.from_records(rows, index=frame.index)


def _segments(inputs: pd.DataFrame, names: list[str]) -> dict[str, pd.Series]:
    """Each named model input as text, ``(missing)`` where a lead's input lacks it, ``(not logged)`` when
    no lead's has it."""
    return {
        f"seg_{n}": (
            inputs[n].astype("string").fillna("(missing)")
            if n in inputs
            else pd.Series("(not logged)", index=inputs.index)
        )
        for n in names
    }


def _rate(num: int | float, den: int | float) -> float | None:
    return float(num / den) if den else None


def group_table(leads: pd.DataFrame, key: str) -> list[dict[str, Any]]:
    """Per value of ``key``: volume, acceptance, SLA, opportunity and won rates, pipeline and won amount."""
    rows = []
    for value, g in leads.groupby(key, sort=True, dropna=False):
        with_sla = g[g["sla_status"].isin(["on time", "late", "overdue"])]
        rows.append(
            {
                key.removeprefix("seg_"): "(missing)" if pd.isna(value) else str(value),
                "leads": len(g),
                "accepted": _rate(g["accepted"].sum(), len(g)),
                "rejected": _rate(g["rejected"].sum(), len(g)),
                "recycled": _rate(g["recycled"].sum(), len(g)),
                "sla_due": len(with_sla),
                "on_time": _rate((with_sla["sla_status"] == "on time").sum(), len(with_sla)),
                "median_hours_to_touch": _median(g["hours_to_touch"]),
                "opportunity_rate": _rate(g["opportunity"].sum(), len(g)),
                "won_rate": _rate(g["won"].sum(), len(g)),
                "pipeline": float(g["pipeline"].sum()),
                "won_amount": float(g["won_amount"].sum()),
            }
        )
    return rows


def _median(values: pd.Series) -> float | None:
    values = values.dropna()
    return float(values.median()) if len(values) else None


def rejection_reasons(leads: pd.DataFrame, by: str = "tier") -> list[dict[str, Any]]:
    """Rejections by reason, overall and within each value of ``by``, with their share of the rejections."""
    rejected = leads[leads["rejected"]]
    rows = []
    for (group, reason), n in rejected.groupby([by, "reason"], dropna=False).size().items():
        total = int((rejected[by] == group).sum())
        rows.append({by: str(group), "reason": str(reason), "rejections": int(n), "share": _rate(n, total)})
    for reason, n in rejected.groupby("reason", dropna=False).size().items():
        rows.append({by: "all", "reason": str(reason), "rejections": int(n), "share": _rate(n, len(rejected))})
    return sorted(rows, key=lambda r: (r[by] != "all", r[by], -r["rejections"]))


def opportunities_by_tier(leads: pd.DataFrame) -> list[dict[str, Any]]:
    """Where the opportunities came from: the tier of each lead's cohort score, and its score at the opportunity."""
    opps = leads[leads["opportunity"]]
    rows = []
    for tier, g in leads.groupby("tier", sort=True):
        o = opps[opps["tier"] == tier]
        rows.append(
            {
                "tier": str(tier),
                "leads": len(g),
                "share_of_leads": _rate(len(g), len(leads)),
                "opportunities": len(o),
                "share_of_opportunities": _rate(len(o), len(opps)),
                "mean_score_at_opportunity": None if o.empty else float(o["score_at_opportunity"].mean()),
                "pipeline": float(o["pipeline"].sum()),
            }
        )
    return rows


def funnel(leads: pd.DataFrame, key: str) -> list[dict[str, Any]]:
    """MQL -> SAL -> SQL -> opportunity -> won per value of ``key`` (and all), largest MQL count first: the
    leads at each stage and each stage's share of the stage before (MQL -> won: of the MQLs)."""
    rows = []
    groups = sorted(leads.groupby(key, sort=False, dropna=False), key=lambda kv: -int(kv[1]["stage_mql"].sum()))
    for value, g in [*groups, ("all", leads)]:
        row: dict[str, Any] = {
            key.removeprefix("seg_"): "(missing)" if pd.isna(value) else str(value),
            "scored": len(g),
        }
        counts = {stage: int(g[column].sum()) for stage, column, _ in FUNNEL}
        row.update(counts)
        for (before, _, _), (stage, _, _) in itertools.pairwise(FUNNEL):
            row[f"{before}_to_{stage}"] = _rate(counts[stage], counts[before])
        row["mql_to_won"] = _rate(counts["won"], counts["mql"])
        row["pipeline"] = float(g["pipeline"].sum())
        row["won_amount"] = float(g["won_amount"].sum())
        rows.append(row)
    return rows


def realized_vs_predicted(leads: pd.DataFrame) -> list[dict[str, Any]]:
    """Matured leads by tier (and all): predicted and realized conversion, its 95% interval, and a flag."""
    matured = leads[leads["matured"]]
    rows = []
    groups = [*matured.groupby("tier", sort=True), ("all", matured)]
    for tier, g in groups:
        n, k = len(g), int(g["converted"].sum())
        low, high = wilson(k, n)
        predicted = float(g["probability"].mean()) if n else None
        departs = n >= MIN_LEADS and predicted is not None and not (low <= predicted <= high)
        rows.append(
            {
                "tier": str(tier),
                "leads": n,
                "predicted": predicted,
                "expected_conversions": float(g["probability"].sum()),
                "conversions": k,
                "realized": _rate(k, n),
                "ci_low": low,
                "ci_high": high,
                "departs": bool(departs),
                "auc": realized_auc(g["converted"].to_numpy(), g["probability"].to_numpy()) if tier == "all" else None,
                "estimated_auc": estimated_auc(g["probability"].to_numpy()) if tier == "all" else None,
            }
        )
    return rows


def expected_vs_observed(leads: pd.DataFrame, as_of: datetime) -> list[dict[str, Any]]:
    """Leads whose horizon has not ended, by tier (and all): conversions the model expects by the horizon
    and those observed so far, with the AUC the probabilities expect."""
    young = leads[~leads["matured"]]
    rows = []
    for tier, g in [*young.groupby("tier", sort=True), ("all", young)]:
        age = (pd.Timestamp(as_of) - g["scored_at"]) / pd.Timedelta(days=1)
        rows.append(
            {
                "tier": str(tier),
                "leads": len(g),
                "mean_age_days": float(age.mean()) if len(g) else None,
                "expected_conversions": float(g["probability"].sum()),
                "observed_so_far": int(g["converted"].sum()),
                "predicted": float(g["probability"].mean()) if len(g) else None,
                "estimated_auc": estimated_auc(g["probability"].to_numpy()) if tier == "all" else None,
            }
        )
    return rows


def psi(reference: np.ndarray, current: np.ndarray, bins: int = DRIFT_BINS) -> float | None:
    """Population stability index of ``current`` against ``reference`` over the reference's quantile bins."""
    reference, current = reference[~np.isnan(reference)], current[~np.isnan(current)]
    if len(reference) == 0 or len(current) == 0:
        return None
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    c = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    r, c = np.clip(r, 1e-4, None), np.clip(c, 1e-4, None)
    return float(((c - r) * np.log(c / r)).sum())


def jensen_shannon(reference: pd.Series, current: pd.Series) -> float | None:
    """Jensen-Shannon divergence (base 2, 0..1) of the two category mixes (missing is a category)."""
    if len(reference) == 0 or len(current) == 0:
        return None
    r = reference.astype("string").fillna("(missing)").value_counts(normalize=True)
    c = current.astype("string").fillna("(missing)").value_counts(normalize=True)
    r, c = r.align(c, fill_value=0.0)
    m = (r + c) / 2

    def kl(a: pd.Series) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return (kl(r) + kl(c)) / 2


def drift_against_holdout(data: LoopData) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str]]:
    """Per model version that scored the window: its scores and logged inputs against its holdout's
    reference (:mod:`models.drift`). Returns the measures, one row per version (its reference or why
    there is none) and the notes."""
    scores = data.scores
    version = version_labels(scores)
    rows: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    notes: list[str] = []
    for label in sorted(version.unique()):
        mask = (version == label).to_numpy()
        mine = scores[mask]
        reference = data.references.get(label, "no reference looked up")
        if holdout_drift.is_reference(reference):
            assert isinstance(reference, dict)
            versions.append(
                {"version": label, "leads": len(mine), "holdout_rows": reference["rows"], "reference": "holdout"}
            )
            measured = holdout_drift.compare(reference, mine["probability"].to_numpy(float), data.inputs()[mask])
            rows.extend({"version": label, **r} for r in measured)
            notes.extend(
                f"Drift ({label}): {r['what']} has shifted from the model's holdout ({r['measure']} {r['value']:.3f})."
                for r in measured
                if r["shifted"]
            )
        else:
            versions.append({"version": label, "leads": len(mine), "holdout_rows": None, "reference": str(reference)})
            notes.append(f"Model {label} ({len(mine):,} scores) has no holdout reference: {reference}.")
    return rows, versions, notes


def version_labels(scores: pd.DataFrame) -> pd.Series:
    """``name/version`` of each score's model (``(unknown)`` where the log does not say)."""
    if "model_version" not in scores:
        return pd.Series("(unknown)", index=scores.index)
    name = scores["model_name"].astype("string").fillna("?") if "model_name" in scores else "?"
    return (name + "/" + scores["model_version"].astype("string").fillna("?")).astype(str)


def drift(reference: pd.DataFrame, current: pd.DataFrame) -> list[dict[str, Any]]:
    """The score's PSI and each logged feature's PSI (numbers) or Jensen-Shannon divergence (categories)
    of ``current`` against the scores of another period (``reference``: rows of the score log)."""
    rows = [
        {
            "what": holdout_drift.SCORE,
            "kind": "number",
            "measure": "PSI",
            "value": psi(reference["probability"].to_numpy(float), current["probability"].to_numpy(float)),
        }
    ]
    ref_in, cur_in = _inputs(reference), _inputs(current)
    for name in sorted(set(ref_in.columns) | set(cur_in.columns)):
        if name.endswith("_at"):  # moments (created_at) move with the calendar: not a distribution to compare
            continue
        r = ref_in[name] if name in ref_in else pd.Series(dtype=object)
        c = cur_in[name] if name in cur_in else pd.Series(dtype=object)
        numeric = pd.api.types.is_numeric_dtype(r.dropna().infer_objects()) and pd.api.types.is_numeric_dtype(
            c.dropna().infer_objects()
        )
        if numeric and not pd.api.types.is_bool_dtype(r.dropna().infer_objects()):
            value = psi(
                pd.to_numeric(r, errors="coerce").to_numpy(float), pd.to_numeric(c, errors="coerce").to_numpy(float)
            )
            rows.append({"what": name, "kind": "number", "measure": "PSI", "value": value})
        else:
            rows.append({"what": name, "kind": "category", "measure": "JS", "value": jensen_shannon(r, c)})
    for row in rows:
        limit = PSI_FLAG if row["measure"] == "PSI" else JS_FLAG
        row["shifted"] = row["value"] is not None and row["value"] >= limit
    return rows


def compute(data: LoopData) -> dict[str, Any]:
    """Every table of the report, and the notes a reader must see, as one JSON-ready dict."""
    leads = lead_outcomes(data)
    notes: list[str] = []
    tables: dict[str, list[dict[str, Any]]] = {
        "weekly": group_table(leads, "week"),
        "by_tier": group_table(leads, "tier"),
        "by_queue": group_table(leads.assign(queue=leads["queue"].fillna("(none)")), "queue"),
    }
    for name in data.segments:
        tables[f"by_{name}"] = group_table(leads, f"seg_{name}")
    funnel_keys = [k for k in FUNNEL_KEYS if (leads[f"seg_{k}"] != "(not logged)").any()]
    for name in funnel_keys:
        tables[f"funnel_by_{name}"] = funnel(leads, f"seg_{name}")
    tables["rejection_reasons"] = rejection_reasons(leads)
    tables["opportunities_by_tier"] = opportunities_by_tier(leads)
    tables["realized_vs_predicted"] = realized_vs_predicted(leads)
    tables["expected_vs_observed"] = expected_vs_observed(leads, data.as_of)
    sla = leads["sla_status"].value_counts().to_dict()
    for row in tables["realized_vs_predicted"]:
        if row["departs"]:
            side = "above" if row["realized"] > row["predicted"] else "below"
            notes.append(
                f"{'All tiers' if row['tier'] == 'all' else 'Tier ' + row['tier']}: realized conversion {row['realized']:.1%} (95% CI {row['ci_low']:.1%}-"
                f"{row['ci_high']:.1%}) is {side} the predicted {row['predicted']:.1%} on {row['leads']:,} matured leads."
            )
    matured = int(leads["matured"].sum())
    if matured == 0:
        notes.append(
            f"No cohort has matured yet (horizon {data.horizon_days} days): realized conversion is not compared "
            "with the prediction; see 'Before the labels'."
        )
    tables["drift"], tables["drift_references"], drift_notes = drift_against_holdout(data)
    notes.extend(drift_notes)
    if data.reference is not None and len(data.reference):
        tables["drift_previous_period"] = drift(data.reference, data.scores)
        notes.extend(
            f"Change from the previous period: {row['what']} has shifted ({row['measure']} {row['value']:.3f})."
            for row in tables["drift_previous_period"]
            if row["shifted"]
        )
    else:
        tables["drift_previous_period"] = []
    if "model_input" not in data.scores or data.scores["model_input"].isna().all():
        notes.append("The score log holds no model inputs for this window: segments and feature drift are empty.")
    header = {
        "since": str(data.since),
        "until": str(data.until),
        "as_of": str(data.as_of),
        "horizon_days": data.horizon_days,
        "scores": len(data.scores),
        "leads": len(leads),
        "events": len(data.events),
        "matured_leads": matured,
        "accepted": _rate(leads["accepted"].sum(), len(leads)),
        "on_time": _rate(sla.get("on time", 0), sla.get("on time", 0) + sla.get("late", 0) + sla.get("overdue", 0)),
        "sla": {k: int(sla.get(k, 0)) for k in SLA_STATUSES},
        "opportunities": int(leads["opportunity"].sum()),
        "won": int(leads["won"].sum()),
        "pipeline": float(leads["pipeline"].sum()),
        "won_amount": float(leads["won_amount"].sum()),
        "segments": list(data.segments),
        "reference_leads": 0 if data.reference is None else len(data.reference),
        "funnel_keys": funnel_keys,
        "drift_flags": {
            "psi": holdout_drift.PSI_FLAG,
            "js": holdout_drift.JS_FLAG,
            "min_leads": holdout_drift.MIN_LEADS,
        },
    }
    return {"header": header, "notes": notes, "tables": tables}
