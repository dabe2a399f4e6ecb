"""Every number and table the report shows, computed from aligned arrays: no I/O, no HTML, no charts.

:func:`compute` turns a :class:`ReportInput` into :class:`Figures`; the other functions are its parts, each
pinned by the tests on hand-built data. Definitions (also printed in the report):

* a *conversion* ("win") is a holdout lead with label 1 (the training target within its horizon);
* *equal volume*: when a manual process passed ``k`` leads to sales, the model's pick is its ``k``
  highest-probability leads (ties broken by row order); "model-hot" means being in that pick;
* a figure is *enough* to judge when it rests on >= 40 conversions and >= 40 non-conversions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from leadscore.features import schema
from leadscore.training.metrics import expected_calibration_error

SUFFICIENT_CONVERSIONS = 40
SUFFICIENT_NON_CONVERSIONS = 40
SUFFICIENCY_RULE = (
    f"a figure is 'enough' to judge when it rests on >= {SUFFICIENT_CONVERSIONS} conversions and "
    f">= {SUFFICIENT_NON_CONVERSIONS} non-conversions; otherwise it is 'too few to trust'"
)
DEFAULT_CAPACITY_SHARE = 0.2  # when no capacity is given: sales can work a fifth of the leads (one rep)
DEFAULT_LEADS_PER_REP_WEEK = 50.0  # when no capacity is given and the lead flow is unknown
MAX_SEGMENT_LEVELS = 12
MAX_LISTED_WINS = 30
CALIBRATION_BINS = 10
GAIN_SHARES = np.round(np.linspace(0, 1, 21), 2)  # shares of leads at which gain.csv and the page read the curves
MODEL = "model"
PII_LIKE = frozenset({*schema.PII_COLUMNS, "email", "e-mail", "name", "first_name", "last_name", "phone", "full_name"})


@dataclass
class ManualResult:
    """One manual process on the holdout: its probability (rate learned on training leads) and its own decision."""

    probability: np.ndarray
    passed: np.ndarray


@dataclass
class ReportInput:
    """Everything the report is built from; all arrays are aligned with ``holdout`` rows."""

    holdout: pd.DataFrame
    y: np.ndarray
    model_probability: np.ndarray
    manual: dict[str, ManualResult]
    metadata: dict[str, Any]
    model_score: np.ndarray | None = None
    baselines: dict[str, np.ndarray] = field(default_factory=dict)
    leads_per_week: float | None = None
    notes: list[str] = field(default_factory=list)
    split_rule: str = ""
    model_label: str = "model"


@dataclass(frozen=True)
class Figures:
    """What the report shows: the JSON-safe summary and the few frames and curves that are not in it.

    ``summary`` is what ``summary.json`` holds; ``missed`` the converted leads each manual process
    rejected that the model picked; ``curves`` the gain points per process, model first (the chart's
    lines); ``holdout_scores`` one row per holdout lead.
    """

    summary: dict[str, Any]
    missed: dict[str, pd.DataFrame]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]
    holdout_scores: pd.DataFrame
    manual_names: list[str]


# --------------------------------------------------------------------------------------------------
# The parts (pure functions; the tests pin them on hand-built data)
# --------------------------------------------------------------------------------------------------


def sufficiency(conversions: int, non_conversions: int) -> str:
    """'enough' or 'too few to trust' (see :data:`SUFFICIENCY_RULE`)."""
    if conversions >= SUFFICIENT_CONVERSIONS and non_conversions >= SUFFICIENT_NON_CONVERSIONS:
        return "enough"
    return "too few to trust"


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """ROC AUC, PR AUC and Brier with n and conversions; AUCs are None when only one class is present."""
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    n, conversions = len(y), int(y.sum())
    both = 0 < conversions < n
    return {
        "n": n,
        "conversions": conversions,
        "conversion_rate": conversions / n if n else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, np.clip(p, 0, 1))) if n else None,
    }


def top_k_mask(p: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest values of ``p`` (ties broken by row order)."""
    p = np.asarray(p, dtype=float)
    mask = np.zeros(len(p), dtype=bool)
    k = int(max(0, min(k, len(p))))
    mask[np.argsort(-p, kind="stable")[:k]] = True
    return mask


def _rate(wins: int, n: int) -> float | None:
    return wins / n if n else None


def _lift(rate: float | None, base: float) -> float | None:
    return rate / base if rate is not None and base > 0 else None


def equal_volume(y: np.ndarray, model_probability: np.ndarray, passed: np.ndarray) -> dict[str, Any]:
    """Manual pick (leads it passed) vs the model's pick of the same number of leads."""
    y = np.asarray(y).astype(int)
    passed = np.asarray(passed, dtype=bool)
    k = int(passed.sum())
    hot = top_k_mask(model_probability, k)
    base = float(y.mean()) if len(y) else float("nan")
    manual_wins, model_wins = int(y[passed].sum()), int(y[hot].sum())
    manual_rate, model_rate = _rate(manual_wins, k), _rate(model_wins, k)
    return {
        "n": len(y),
        "conversions": int(y.sum()),
        "base_rate": base,
        "volume": k,
        "volume_share": k / len(y) if len(y) else None,
        "manual_wins": manual_wins,
        "manual_rate": manual_rate,
        "manual_lift": _lift(manual_rate, base),
        "model_wins": model_wins,
        "model_rate": model_rate,
        "model_lift": _lift(model_rate, base),
        "extra_wins": model_wins - manual_wins,
    }


def disagreement(y: np.ndarray, model_hot: np.ndarray, passed: np.ndarray) -> list[dict[str, Any]]:
    """The four cells of (model-hot or cold) x (manual yes or no) with counts, wins and real conversion rates."""
    y = np.asarray(y).astype(int)
    hot, passed = np.asarray(model_hot, dtype=bool), np.asarray(passed, dtype=bool)
    cells = [
        ("model-hot & manual-no", hot & ~passed),
        ("model-cold & manual-yes", ~hot & passed),
        ("both yes", hot & passed),
        ("both no", ~hot & ~passed),
    ]
    out = []
    for name, mask in cells:
        n, wins = int(mask.sum()), int(y[mask].sum())
        out.append(
            {
                "cell": name,
                "n": n,
                "wins": wins,
                "conversion_rate": _rate(wins, n),
                "sufficiency": sufficiency(wins, n - wins),
            }
        )
    return out


def gain_points(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (share of leads, share of conversions) at each boundary between distinct scores, best first.

    Leads with equal scores form one step: between boundaries the curve is a straight line, the expected
    gain when tied leads are worked in random order (a yes/no manual flag is one big tie on each side).
    """
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    n, total = len(y), float(y.sum())
    if n == 0:
        return np.array([0.0]), np.array([0.0])
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    last_of_group = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])
    cum = np.cumsum(ys)[last_of_group]
    x = np.r_[0.0, (last_of_group + 1) / n]
    g = np.r_[0.0, cum / total if total > 0 else np.zeros(len(cum))]
    return x, g


def gain_at(y: np.ndarray, p: np.ndarray, shares: Sequence[float]) -> list[float]:
    """The gain curve of ``p`` read at the given shares of leads."""
    x, g = gain_points(y, p)
    return [float(v) for v in np.interp(np.asarray(shares, dtype=float), x, g)]


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Equal-count bins by predicted probability: n, mean predicted, observed rate."""
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    return [
        {
            "bin": i + 1,
            "n": len(chunk),
            "conversions": int(y[chunk].sum()),
            "mean_predicted": float(p[chunk].mean()),
            "observed_rate": float(y[chunk].mean()),
            "min_predicted": float(p[chunk].min()),
            "max_predicted": float(p[chunk].max()),
        }
        for i, chunk in enumerate(np.array_split(order, min(bins, max(1, len(p)))))
        if len(chunk)
    ]


def _manual_capacity(y: np.ndarray, passed: np.ndarray, leads_per_week: float, capacity: float) -> dict[str, Any]:
    """A manual process at capacity: it hands over its passed leads, reps work up to ``capacity`` of them."""
    passed = np.asarray(passed, dtype=bool)
    passed_per_week = float(passed.mean()) * leads_per_week
    rate = float(y[passed].mean()) if passed.any() else 0.0
    worked = min(passed_per_week, capacity)
    return {
        "passed_per_week": passed_per_week,
        "worked_per_week": worked,
        "conversion_rate": rate if passed.any() else None,
        "wins_per_week": worked * rate,
        "holdout_passed": int(passed.sum()),
        "holdout_wins_passed": int(y[passed].sum()),
    }


def capacity_view(
    y: np.ndarray,
    model_probability: np.ndarray,
    manual: dict[str, ManualResult],
    *,
    leads_per_week: float | None,
    leads_per_rep_week: float,
    reps: int,
    model_score: np.ndarray | None = None,
) -> dict[str, Any]:
    """What sales can work per week, the model cut-off that fills it, and expected wins/week: model vs manual.

    The model's pick at capacity is its top ``round(share * n)`` holdout leads, where share = capacity /
    leads arriving per week (capped at 1). Expected wins/week = wins in that pick / holdout leads x leads
    per week. A manual process hands over its passed leads; when they exceed capacity, reps work
    ``capacity`` of them at the passed leads' conversion rate; otherwise all of them (spare capacity idle).
    """
    y = np.asarray(y).astype(int)
    n = len(y)
    capacity = float(leads_per_rep_week) * int(reps)
    out: dict[str, Any] = {
        "leads_per_rep_week": float(leads_per_rep_week),
        "reps": int(reps),
        "capacity_per_week": capacity,
        "leads_per_week": leads_per_week,
    }
    if leads_per_week is None or not leads_per_week > 0 or n == 0:
        out["available"] = False
        out["reason"] = "the data has no lead timestamps, so the weekly lead rate (and what capacity covers) is unknown"
        return out
    worked = min(capacity, leads_per_week)
    share = worked / leads_per_week
    k = round(share * n)
    top = top_k_mask(model_probability, k)
    p = np.asarray(model_probability, dtype=float)
    wins = int(y[top].sum())
    out.update(
        {
            "available": True,
            "worked_per_week": worked,
            "share_worked": share,
            "holdout_leads_in_pick": k,
            "holdout_wins_in_pick": wins,
            "cutoff_probability": float(p[top].min()) if k else None,
            "cutoff_score": int(np.asarray(model_score)[top].min()) if (k and model_score is not None) else None,
            "model_conversion_rate": _rate(wins, k),
            "model_wins_per_week": wins / n * leads_per_week,
            "all_leads_wins_per_week": float(y.mean()) * leads_per_week,
            "manual": {name: _manual_capacity(y, m.passed, leads_per_week, capacity) for name, m in manual.items()},
        }
    )
    return out


def assumed_capacity(
    leads_per_rep_week: float | None, reps: int | None, leads_per_week: float | None
) -> tuple[float, int, str | None]:
    """The capacity to report on, and a note when any of it had to be assumed.

    A missing ``reps`` is one rep; a missing ``leads_per_rep_week`` is :data:`DEFAULT_CAPACITY_SHARE` of
    the weekly lead flow split over the reps (at least 1), or :data:`DEFAULT_LEADS_PER_REP_WEEK` when the
    flow is unknown.
    """
    if leads_per_rep_week is not None and reps is not None:
        return leads_per_rep_week, reps, None
    reps = 1 if reps is None else reps
    if leads_per_rep_week is None:
        flow = leads_per_week or 0.0
        leads_per_rep_week = (
            max(1.0, math.ceil(DEFAULT_CAPACITY_SHARE * flow / reps)) if flow else DEFAULT_LEADS_PER_REP_WEEK
        )
    note = (
        f"Capacity assumed: {reps} rep(s) x {leads_per_rep_week:g} leads/rep/week (about {DEFAULT_CAPACITY_SHARE:.0%} "
        "of the lead flow); give your own with `leadscore evaluate --leads-per-rep-week N --reps M`."
    )
    return leads_per_rep_week, reps, note


def _levels(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), "(missing)").astype(object)


def _pooled_levels(values: pd.Series, max_levels: int) -> tuple[pd.Series, list[str]]:
    """The levels of a segment column, largest first; past ``max_levels`` the rest pooled as '(other levels)'."""
    levels = _levels(values.reset_index(drop=True))
    counts = levels.value_counts(sort=True)
    if len(counts) <= max_levels:
        return levels, list(counts.index)
    keep = list(counts.index[:max_levels])
    return levels.where(levels.isin(keep), "(other levels)"), [*keep, "(other levels)"]


def _segment_manual(yy: np.ndarray, passed: np.ndarray, model_pick: np.ndarray) -> dict[str, Any]:
    """Within one level: a manual process's passed leads and the model's equal-volume pick, with their wins."""
    passed_wins, pick_wins = int(yy[passed].sum()), int(yy[model_pick].sum())
    return {
        "passed": int(passed.sum()),
        "passed_wins": passed_wins,
        "passed_rate": _rate(passed_wins, int(passed.sum())),
        "model_pick": int(model_pick.sum()),
        "model_pick_wins": pick_wins,
        "model_pick_rate": _rate(pick_wins, int(model_pick.sum())),
    }


def segment_table(
    frame: pd.DataFrame,
    y: np.ndarray,
    model_probability: np.ndarray,
    manual: dict[str, ManualResult],
    column: str,
    max_levels: int = MAX_SEGMENT_LEVELS,
) -> list[dict[str, Any]]:
    """Key figures per level of one segment column (largest levels first; the rest pooled as '(other levels)').

    Equal-volume picks are the whole holdout's (a lead is model-hot by its rank among all holdout leads),
    counted within each level.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(model_probability, dtype=float)
    levels, keep = _pooled_levels(frame[column], max_levels)
    hot = {name: top_k_mask(p, int(np.asarray(m.passed, dtype=bool).sum())) for name, m in manual.items()}
    rows = []
    for level in keep:
        mask = (levels == level).to_numpy()
        yy = y[mask]
        conversions, n = int(yy.sum()), int(mask.sum())
        model = ranking_metrics(yy, p[mask])
        rows.append(
            {
                "segment": column,
                "level": str(level),
                "n": n,
                "conversions": conversions,
                "non_conversions": n - conversions,
                "conversion_rate": _rate(conversions, n),
                "sufficiency": sufficiency(conversions, n - conversions),
                "sufficient": sufficiency(conversions, n - conversions) == "enough",
                "model": model,
                "auc": {
                    MODEL: model["roc_auc"],
                    **{
                        name: ranking_metrics(yy, np.asarray(m.probability, dtype=float)[mask])["roc_auc"]
                        for name, m in manual.items()
                    },
                },
                "manual": {
                    name: _segment_manual(yy, np.asarray(m.passed, dtype=bool)[mask], hot[name][mask])
                    for name, m in manual.items()
                },
            }
        )
    return rows


def _lead_ids(frame: pd.DataFrame, id_column: str | None) -> tuple[str, np.ndarray]:
    """The column naming each holdout lead: the mapping's id column, or 'holdout_row' (1, 2, ...) without one."""
    if id_column and id_column in frame.columns:
        return id_column, frame[id_column].to_numpy()
    return "holdout_row", np.arange(1, len(frame) + 1)


def missed_wins(
    frame: pd.DataFrame,
    y: np.ndarray,
    model_probability: np.ndarray,
    passed: np.ndarray,
    *,
    id_column: str | None,
    extra_columns: Sequence[str] = (),
    model_score: np.ndarray | None = None,
) -> pd.DataFrame:
    """Converted leads the manual process rejected but the model put in its equal-volume pick, best-ranked first.

    Only the id column, model figures and the named extra (segment / manual) columns are shown: never PII.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(model_probability, dtype=float)
    passed = np.asarray(passed, dtype=bool)
    hot = top_k_mask(p, int(passed.sum()))
    rank = np.empty(len(p), dtype=int)
    rank[np.argsort(-p, kind="stable")] = np.arange(1, len(p) + 1)
    mask = hot & ~passed & (y == 1)
    frame = frame.reset_index(drop=True)
    id_name, ids = _lead_ids(frame, id_column)
    out = pd.DataFrame({id_name: ids[mask], "model_rank": rank[mask], "model_probability": p[mask].round(4)})
    if model_score is not None:
        out["model_score"] = np.asarray(model_score)[mask]
    for column in extra_columns:
        if column in frame.columns and column.lower() not in PII_LIKE and column not in out.columns:
            out[column] = frame[column].to_numpy()[mask]
    return out.sort_values("model_rank", kind="stable").reset_index(drop=True)


def split_rule_text(split: dict[str, Any], created_at: str | None) -> str:
    """How the holdout was chosen, in words."""
    if split.get("method") == "time":
        return (
            f"time split: holdout = leads created at or after {split.get('cutoff')} (column {created_at!r}), "
            f"the newest {split.get('holdout_fraction'):.0%} of eligible leads; the model was trained only on earlier leads"
        )
    if split.get("method") == "file_order":
        return (
            f"file-order split: holdout = the last {split.get('holdout_fraction'):.0%} of rows of an export sorted by "
            "time; the model was trained only on the rows before them"
        )
    return (
        f"random split: a seeded stratified {split.get('holdout_fraction'):.0%} of leads (seed {split.get('seed')}), "
        "the same rows the training run held out; the model never saw them"
    )


# --------------------------------------------------------------------------------------------------
# The whole: every figure of one report
# --------------------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """The same value in JSON's types: numpy scalars to Python, NaN/inf to None, tuples to lists, paths to text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (pd.Timestamp, Path)):
        return str(value)
    return value


@dataclass(frozen=True)
class _Arrays:
    """The input's arrays, checked to be aligned: labels, model probability and the holdout rows."""

    y: np.ndarray
    p: np.ndarray
    holdout: pd.DataFrame

    @classmethod
    def of(cls, inp: ReportInput) -> _Arrays:
        y = np.asarray(inp.y).astype(int)
        p = np.asarray(inp.model_probability, dtype=float)
        holdout = inp.holdout.reset_index(drop=True)
        if not (len(y) == len(p) == len(holdout)):
            raise ValueError(
                f"report inputs differ in length: {len(holdout)} rows, {len(y)} labels, {len(p)} probabilities"
            )
        return cls(y, p, holdout)


def _named_segments(metadata: dict[str, Any]) -> list[str]:
    mapping = metadata.get("mapping") or {}
    return list(metadata.get("segments") or mapping.get("segments") or [])


def metrics_table(y: np.ndarray, p: np.ndarray, inp: ReportInput) -> dict[str, dict[str, Any]]:
    """Ranking metrics of the model (with its ECE), each baseline and each manual process (with its volume)."""
    metrics = {MODEL: {**ranking_metrics(y, p), "ece": expected_calibration_error(y, p) if len(y) else None}}
    metrics.update({name: ranking_metrics(y, prob) for name, prob in inp.baselines.items()})
    for name, m in inp.manual.items():
        metrics[f"manual: {name}"] = {
            **ranking_metrics(y, m.probability),
            "passed": int(np.asarray(m.passed, dtype=bool).sum()),
        }
    return metrics


def gain_curves(y: np.ndarray, p: np.ndarray, inp: ReportInput) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Gain points of the model (first), each baseline and each manual process's probability."""
    curves = {inp.model_label: gain_points(y, p)}
    curves.update({name: gain_points(y, prob) for name, prob in inp.baselines.items()})
    curves.update({f"manual: {name}": gain_points(y, m.probability) for name, m in inp.manual.items()})
    return curves


def handoffs(y: np.ndarray, manual: dict[str, ManualResult]) -> dict[str, tuple[float, float]]:
    """Each manual process's own hand-off: (share of leads it passed, share of all conversions among them)."""
    conversions = int(y.sum())
    out = {}
    for name, m in manual.items():
        passed = np.asarray(m.passed, dtype=bool)
        out[f"manual: {name}"] = (
            float(np.mean(passed)) if len(y) else 0.0,
            int(y[passed].sum()) / conversions if conversions else 0.0,
        )
    return out


def _missed(a: _Arrays, inp: ReportInput, segments: list[str]) -> dict[str, pd.DataFrame]:
    """:func:`missed_wins` of each manual process, shown with the segments and that process's own columns."""
    mapping = inp.metadata.get("mapping") or {}
    own = {m.get("name"): list(m.get("columns", [])) for m in mapping.get("manual", [])}
    return {
        name: missed_wins(
            a.holdout,
            a.y,
            a.p,
            m.passed,
            id_column=mapping.get("id"),
            model_score=inp.model_score,
            extra_columns=[*segments, *[c for c in own.get(name, []) if c in a.holdout.columns]],
        )
        for name, m in inp.manual.items()
    }


def holdout_scores(a: _Arrays, inp: ReportInput) -> pd.DataFrame:
    """One row per holdout lead: its id, label, model probability (and score) and each manual decision."""
    id_name, ids = _lead_ids(a.holdout, (inp.metadata.get("mapping") or {}).get("id"))
    scores = pd.DataFrame({id_name: ids, "label": a.y, "model_probability": a.p})
    if inp.model_score is not None:
        scores["model_score"] = np.asarray(inp.model_score)
    for name, m in inp.manual.items():
        scores[f"passed: {name}"] = np.asarray(m.passed, dtype=bool)
    return scores


def _features(metadata: dict[str, Any]) -> dict[str, list[str]]:
    """What the model uses, what it never uses, and which columns only the manual processes use."""
    mapping = metadata.get("mapping") or {}
    return {
        "model_features": list(metadata.get("feature_columns") or []),
        "excluded": list(mapping.get("exclude") or []),
        "manual_process_columns": list(
            dict.fromkeys(c for m in mapping.get("manual", []) for c in m.get("columns", []))
        ),
    }


def _header(inp: ReportInput, notes: list[str], a: _Arrays) -> dict[str, Any]:
    """The report's title, model, target, data and holdout lines."""
    md = inp.metadata
    n, conversions = len(a.y), int(a.y.sum())
    return {
        "title": md.get("title", "Lead scoring: model vs manual qualification"),
        "model": inp.model_label,
        "target": md.get("target"),
        "horizon_days": md.get("horizon_days"),
        "data_source": md.get("data_source"),
        "split_rule": inp.split_rule,
        "notes": notes,
        "holdout": {
            "n": n,
            "conversions": conversions,
            "base_rate": conversions / n if n else float("nan"),
            "leads_per_week": inp.leads_per_week,
        },
    }


def compute(inp: ReportInput, *, leads_per_rep_week: float | None = None, reps: int | None = None) -> Figures:
    """Every figure of the report of ``inp``.

    Without ``leads_per_rep_week`` / ``reps`` the capacity view assumes them (:func:`assumed_capacity`)
    and a note says so. Raises ``ValueError`` when the input's arrays differ in length.
    """
    a = _Arrays.of(inp)
    y, p = a.y, a.p
    named = _named_segments(inp.metadata)
    segments = [s for s in named if s in a.holdout.columns]
    leads_per_rep_week, reps, assumed = assumed_capacity(leads_per_rep_week, reps, inp.leads_per_week)
    notes = [*inp.notes, *([assumed] if assumed else [])]
    metrics = metrics_table(y, p, inp)
    volume = {name: equal_volume(y, p, m.passed) for name, m in inp.manual.items()}
    missed = _missed(a, inp, segments)
    curves = gain_curves(y, p, inp)
    summary = {
        **_header(inp, notes, a),
        "metrics": metrics,
        "equal_volume": volume,
        "disagreement": {
            name: disagreement(y, top_k_mask(p, volume[name]["volume"]), m.passed) for name, m in inp.manual.items()
        },
        "missed_wins": {
            name: {"count": len(frame), "shown_columns": list(frame.columns)} for name, frame in missed.items()
        },
        "gain": {
            "shares": [float(s) for s in GAIN_SHARES],
            "curves": {name: [float(v) for v in np.interp(GAIN_SHARES, x, g)] for name, (x, g) in curves.items()},
            "handoffs": handoffs(y, inp.manual),
        },
        "calibration": {"bins": reliability_bins(y, p), "ece": metrics[MODEL]["ece"]},
        "capacity": capacity_view(
            y,
            p,
            inp.manual,
            leads_per_week=inp.leads_per_week,
            leads_per_rep_week=leads_per_rep_week,
            reps=reps,
            model_score=inp.model_score,
        ),
        "segments": {column: segment_table(a.holdout, y, p, inp.manual, column) for column in segments},
        "segments_missing": [s for s in named if s not in a.holdout.columns],
        "sufficiency_rule": SUFFICIENCY_RULE,
        "features": _features(inp.metadata),
    }
    return Figures(json_safe(summary), missed, curves, holdout_scores(a, inp), list(inp.manual))
