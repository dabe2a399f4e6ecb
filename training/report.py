"""The RevOps report: the model and each manual qualification process, judged on the same holdout leads.

One builder (:func:`build_report`) turns a :class:`ReportInput` (holdout rows, labels, model probabilities,
each manual process's probabilities and hand-off decisions, metadata) into a report folder:
``report.html`` (self-contained: charts as inline PNG, no external CSS/JS), ``summary.json``, CSV
tables and the chart PNGs. :func:`write_fit_report` feeds it from a :class:`~training.train.FitResult`
(the ``train`` hook); :func:`training.evaluate.evaluate` feeds it from a registered model and fresh data.

Definitions used throughout (also printed in the report):

* a *conversion* ("win") is a holdout lead with label 1 (the training target within its horizon);
* *equal volume*: when a manual process passed ``k`` leads to sales, the model's pick is its ``k``
  highest-probability leads (ties broken by row order); "model-hot" means being in that pick;
* a segment level is *enough* to judge when it has >= 40 conversions and >= 40 non-conversions.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from leadscore.features import schema
from leadscore.features.files import write_via_temp
from leadscore.training import charts
from leadscore.training.metrics import expected_calibration_error

if TYPE_CHECKING:
    from leadscore.training.train import FitResult

SUFFICIENT_CONVERSIONS = 40
SUFFICIENT_NON_CONVERSIONS = 40
SUFFICIENCY_RULE = (
    f"a figure is 'enough' to judge when it rests on >= {SUFFICIENT_CONVERSIONS} conversions and "
    f">= {SUFFICIENT_NON_CONVERSIONS} non-conversions; otherwise it is 'too few to trust'"
)
DEFAULT_CAPACITY_SHARE = 0.2  # when no capacity is given: sales can work a fifth of the leads (one rep)
MAX_SEGMENT_LEVELS = 12
MAX_LISTED_WINS = 30
CALIBRATION_BINS = 10
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


# --------------------------------------------------------------------------------------------------
# Figures (pure functions; the tests pin them on hand-built data)
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
        "manual_lift": manual_rate / base if manual_rate is not None and base > 0 else None,
        "model_wins": model_wins,
        "model_rate": model_rate,
        "model_lift": model_rate / base if model_rate is not None and base > 0 else None,
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
    x, g = gain_points(y, p)
    return [float(v) for v in np.interp(np.asarray(shares, dtype=float), x, g)]


def reliability_bins(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
    """Equal-count bins by predicted probability: n, mean predicted, observed rate."""
    y = np.asarray(y).astype(float)
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    out = []
    for i, chunk in enumerate(np.array_split(order, min(bins, max(1, len(p))))):
        if len(chunk):
            out.append(
                {
                    "bin": i + 1,
                    "n": len(chunk),
                    "conversions": int(y[chunk].sum()),
                    "mean_predicted": float(p[chunk].mean()),
                    "observed_rate": float(y[chunk].mean()),
                    "min_predicted": float(p[chunk].min()),
                    "max_predicted": float(p[chunk].max()),
                }
            )
    return out


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
            "manual": {},
        }
    )
    for name, m in manual.items():
        passed = np.asarray(m.passed, dtype=bool)
        passed_per_week = float(passed.mean()) * leads_per_week
        rate = float(y[passed].mean()) if passed.any() else 0.0
        worked_manual = min(passed_per_week, capacity)
        out["manual"][name] = {
            "passed_per_week": passed_per_week,
            "worked_per_week": worked_manual,
            "conversion_rate": rate if passed.any() else None,
            "wins_per_week": worked_manual * rate,
            "holdout_passed": int(passed.sum()),
            "holdout_wins_passed": int(y[passed].sum()),
        }
    return out


def _levels(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.where(text.notna() & (text != ""), "(missing)").astype(object)


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
    levels = _levels(frame[column].reset_index(drop=True))
    counts = levels.value_counts(sort=True)
    keep = list(counts.index[:max_levels]) if len(counts) > max_levels else list(counts.index)
    if len(counts) > max_levels:
        levels = levels.where(levels.isin(keep), "(other levels)")
        keep.append("(other levels)")
    hot = {name: top_k_mask(p, int(np.asarray(m.passed, dtype=bool).sum())) for name, m in manual.items()}
    rows = []
    for level in keep:
        mask = (levels == level).to_numpy()
        yy = y[mask]
        conversions = int(yy.sum())
        n = int(mask.sum())
        row: dict[str, Any] = {
            "segment": column,
            "level": str(level),
            "n": n,
            "conversions": conversions,
            "non_conversions": n - conversions,
            "conversion_rate": _rate(conversions, n),
            "sufficiency": sufficiency(conversions, n - conversions),
            "sufficient": sufficiency(conversions, n - conversions) == "enough",
            "model": ranking_metrics(yy, p[mask]),
            "auc": {MODEL: ranking_metrics(yy, p[mask])["roc_auc"]},
            "manual": {},
        }
        for name, m in manual.items():
            passed = np.asarray(m.passed, dtype=bool)[mask]
            model_pick = hot[name][mask]
            row["auc"][name] = ranking_metrics(yy, np.asarray(m.probability, dtype=float)[mask])["roc_auc"]
            row["manual"][name] = {
                "passed": int(passed.sum()),
                "passed_wins": int(yy[passed].sum()),
                "passed_rate": _rate(int(yy[passed].sum()), int(passed.sum())),
                "model_pick": int(model_pick.sum()),
                "model_pick_wins": int(yy[model_pick].sum()),
                "model_pick_rate": _rate(int(yy[model_pick].sum()), int(model_pick.sum())),
            }
        rows.append(row)
    return rows


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
    has_id = bool(id_column) and id_column in frame.columns
    ids = frame[id_column].to_numpy() if has_id else np.arange(1, len(frame) + 1)
    out = pd.DataFrame(
        {
            (id_column if has_id else "holdout_row"): ids[mask],
            "model_rank": rank[mask],
            "model_probability": p[mask].round(4),
        }
    )
    if model_score is not None:
        out["model_score"] = np.asarray(model_score)[mask]
    for column in extra_columns:
        if column in frame.columns and column.lower() not in PII_LIKE and column not in out.columns:
            out[column] = frame[column].to_numpy()[mask]
    return out.sort_values("model_rank", kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# The builder
# --------------------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_clean(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, Path)):
        return str(value)
    return value


def write_atomic(path: Path, data: bytes | str) -> Path:
    """Write to a temporary file beside ``path`` and rename it into place: no truncated file is ever left."""
    return write_via_temp(
        path, lambda tmp: Path(tmp).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    )


def _csv(rows: pd.DataFrame | list[dict[str, Any]]) -> str:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    return frame.to_csv(index=False, lineterminator="\n")


def build_report(
    inp: ReportInput,
    folder: Path,
    *,
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
) -> dict[str, Any]:
    """Compute every figure, draw the charts and write the report folder; returns the summary.

    Without ``leads_per_rep_week`` / ``reps`` the capacity view assumes one rep who can work
    :data:`DEFAULT_CAPACITY_SHARE` of the weekly lead flow, and says so.
    """
    folder = Path(folder)
    md = inp.metadata
    y = np.asarray(inp.y).astype(int)
    p = np.asarray(inp.model_probability, dtype=float)
    holdout = inp.holdout.reset_index(drop=True)
    if not (len(y) == len(p) == len(holdout)):
        raise ValueError(
            f"report inputs differ in length: {len(holdout)} rows, {len(y)} labels, {len(p)} probabilities"
        )
    mapping = md.get("mapping") or {}
    id_column = mapping.get("id")
    segments = [s for s in (md.get("segments") or mapping.get("segments") or []) if s in holdout.columns]
    missing_segments = [s for s in (md.get("segments") or mapping.get("segments") or []) if s not in holdout.columns]
    manual_columns = list(dict.fromkeys(c for m in mapping.get("manual", []) for c in m.get("columns", [])))
    n, conversions = len(y), int(y.sum())
    base_rate = conversions / n if n else float("nan")

    metrics = {MODEL: ranking_metrics(y, p)}
    metrics[MODEL]["ece"] = expected_calibration_error(y, p) if n else None
    for name, prob in inp.baselines.items():
        metrics[name] = ranking_metrics(y, prob)
    for name, m in inp.manual.items():
        metrics[f"manual: {name}"] = ranking_metrics(y, m.probability)
        metrics[f"manual: {name}"]["passed"] = int(np.asarray(m.passed, dtype=bool).sum())

    volume = {name: equal_volume(y, p, m.passed) for name, m in inp.manual.items()}
    disagree = {
        name: disagreement(y, top_k_mask(p, volume[name]["volume"]), m.passed) for name, m in inp.manual.items()
    }
    process_columns = {m.get("name"): list(m.get("columns", [])) for m in mapping.get("manual", [])}
    missed = {
        name: missed_wins(
            holdout,
            y,
            p,
            m.passed,
            id_column=id_column,
            model_score=inp.model_score,
            extra_columns=[*segments, *[c for c in process_columns.get(name, []) if c in holdout.columns]],
        )
        for name, m in inp.manual.items()
    }
    notes = list(inp.notes)
    if leads_per_rep_week is None or reps is None:
        reps = 1 if reps is None else reps
        if leads_per_rep_week is None:
            flow = inp.leads_per_week or 0.0
            leads_per_rep_week = max(1.0, math.ceil(DEFAULT_CAPACITY_SHARE * flow / reps)) if flow else 50.0
        notes.append(
            f"Capacity assumed: {reps} rep(s) x {leads_per_rep_week:g} leads/rep/week (about {DEFAULT_CAPACITY_SHARE:.0%} of the "
            "lead flow); give your own with `leadscore evaluate --leads-per-rep-week N --reps M`."
        )
    capacity = capacity_view(
        y,
        p,
        inp.manual,
        leads_per_week=inp.leads_per_week,
        leads_per_rep_week=leads_per_rep_week,
        reps=reps,
        model_score=inp.model_score,
    )
    bins = reliability_bins(y, p)
    shares = np.round(np.linspace(0, 1, 21), 2)
    curves_full = {inp.model_label: gain_points(y, p)}
    for name, prob in inp.baselines.items():
        curves_full[name] = gain_points(y, prob)
    for name, m in inp.manual.items():
        curves_full[f"manual: {name}"] = gain_points(y, m.probability)
    gain = {name: [float(v) for v in np.interp(shares, x, g)] for name, (x, g) in curves_full.items()}
    handoffs = {
        f"manual: {name}": (
            float(np.mean(np.asarray(m.passed, dtype=bool))) if n else 0.0,
            (int(y[np.asarray(m.passed, dtype=bool)].sum()) / conversions) if conversions else 0.0,
        )
        for name, m in inp.manual.items()
    }
    segment_rows = {column: segment_table(holdout, y, p, inp.manual, column) for column in segments}

    features = list(md.get("feature_columns") or [])
    excluded = list(mapping.get("exclude") or [])
    summary: dict[str, Any] = {
        "title": md.get("title", "Lead scoring: model vs manual qualification"),
        "model": inp.model_label,
        "target": md.get("target"),
        "horizon_days": md.get("horizon_days"),
        "data_source": md.get("data_source"),
        "split_rule": inp.split_rule,
        "notes": notes,
        "holdout": {"n": n, "conversions": conversions, "base_rate": base_rate, "leads_per_week": inp.leads_per_week},
        "metrics": metrics,
        "equal_volume": volume,
        "disagreement": disagree,
        "missed_wins": {
            name: {"count": len(frame), "shown_columns": list(frame.columns)} for name, frame in missed.items()
        },
        "gain": {"shares": [float(s) for s in shares], "curves": gain, "handoffs": handoffs},
        "calibration": {"bins": bins, "ece": metrics[MODEL]["ece"]},
        "capacity": capacity,
        "segments": segment_rows,
        "segments_missing": missing_segments,
        "sufficiency_rule": SUFFICIENCY_RULE,
        "features": {"model_features": features, "excluded": excluded, "manual_process_columns": manual_columns},
    }
    summary = _clean(summary)

    images = {
        "gain.png": charts.gain_chart(
            {k: (list(x), list(g)) for k, (x, g) in curves_full.items()},
            handoffs,
            n=n,
            conversions=conversions,
            capacity_share=capacity.get("share_worked") if capacity.get("available") else None,
        ),
        "calibration.png": charts.reliability_chart(
            bins,
            n=n,
            conversions=conversions,
            ece=metrics[MODEL]["ece"] or 0.0,
            title=f"Reliability of {inp.model_label}",
        ),
    }
    if volume:
        images["equal_volume.png"] = charts.equal_volume_chart(
            [{"process": name, **v} for name, v in volume.items()], base_rate=base_rate, n=n
        )
    for column, rows in segment_rows.items():
        images[f"segment_{_slug(column)}.png"] = charts.segment_chart(
            rows, column=column, processes=[MODEL, *inp.manual]
        )

    tables = {
        "metrics.csv": _csv([{"process": k, **v} for k, v in summary["metrics"].items()]),
        "equal_volume.csv": _csv([{"manual_process": k, **v} for k, v in summary["equal_volume"].items()]),
        "disagreement.csv": _csv(
            [{"manual_process": k, **row} for k, rows in summary["disagreement"].items() for row in rows]
        ),
        "gain.csv": _csv(pd.DataFrame({"share_of_leads": shares, **{k: v for k, v in gain.items()}})),
        "calibration.csv": _csv(bins),
        "segments.csv": _csv(_flat_segments(summary["segments"])),
        "missed_wins.csv": _csv(
            pd.concat([f.assign(manual_process=k) for k, f in missed.items()], ignore_index=True)
            if missed
            else pd.DataFrame()
        ),
    }
    has_id = bool(id_column) and id_column in holdout.columns
    scores = pd.DataFrame(
        {
            (id_column if has_id else "holdout_row"): holdout[id_column].to_numpy() if has_id else np.arange(1, n + 1),
            "label": y,
            "model_probability": p,
        }
    )
    if inp.model_score is not None:
        scores["model_score"] = np.asarray(inp.model_score)
    for name, m in inp.manual.items():
        scores[f"passed: {name}"] = np.asarray(m.passed, dtype=bool)
    tables["holdout_scores.csv"] = _csv(scores)
    if capacity.get("available"):
        cap_rows = [
            {
                "process": inp.model_label,
                "worked_per_week": capacity["worked_per_week"],
                "conversion_rate": capacity["model_conversion_rate"],
                "wins_per_week": capacity["model_wins_per_week"],
            }
        ]
        cap_rows += [
            {"process": f"manual: {k}", **{c: v[c] for c in ("worked_per_week", "conversion_rate", "wins_per_week")}}
            for k, v in capacity["manual"].items()
        ]
        tables["capacity.csv"] = _csv(cap_rows)

    page = _html(summary, images, missed, inp)
    for name, data in images.items():
        write_atomic(folder / name, data)
    for name, text in tables.items():
        write_atomic(folder / name, text)
    write_atomic(folder / "summary.json", json.dumps(summary, indent=2, allow_nan=False))
    write_atomic(folder / "report.html", page)
    return summary


def _slug(text: str) -> str:
    return "".join(ch.lower() if ch.isalnum() else "_" for ch in text).strip("_") or "segment"


def _flat_segments(segments: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for levels in segments.values():
        for r in levels:
            row = {
                k: r[k]
                for k in ("segment", "level", "n", "conversions", "non_conversions", "conversion_rate", "sufficiency")
            }
            row.update({f"model_{k}": r["model"][k] for k in ("roc_auc", "pr_auc", "brier")})
            for name, m in r["manual"].items():
                row[f"{name}: roc_auc"] = r["auc"].get(name)
                row.update({f"{name}: {k}": v for k, v in m.items()})
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------------
# From a fitted run (the train hook)
# --------------------------------------------------------------------------------------------------


def write_fit_report(
    result: FitResult,
    folder: Path,
    *,
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
) -> dict[str, Any]:
    """The report of a :func:`training.train.fit` result (what ``leadscore train`` logs as ``report/``)."""
    from leadscore.training.train import leads_per_week

    holdout = result.holdout
    manual = {
        name: ManualResult(result.holdout_probability[f"manual:{name}"], np.asarray(clf.passed(holdout), dtype=bool))
        for name, clf in result.manual.items()
    }
    baselines = (
        {"logistic regression (baseline)": result.holdout_probability["logistic_regression"]}
        if "logistic_regression" in result.holdout_probability
        else {}
    )
    metadata = {**result.artifact.metadata, "title": "Lead scoring: model vs manual qualification (training run)"}
    inp = ReportInput(
        holdout=holdout,
        y=holdout["label"].to_numpy(),
        model_probability=result.holdout_probability["model"],
        manual=manual,
        metadata=metadata,
        model_score=result.artifact.score_of(result.holdout_probability["model"]),
        baselines=baselines,
        leads_per_week=leads_per_week(result.frame, result.split),
        split_rule=split_rule_text(
            result.split.describe(), result.frame.mapping.created_at if result.frame.timed else None
        ),
        model_label="model (this run)",
    )
    return build_report(inp, folder, leads_per_rep_week=leads_per_rep_week, reps=reps)


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
# HTML
# --------------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1120px;color:#222;line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;margin-top:34px;border-bottom:2px solid #1f5fa8;padding-bottom:4px}
h3{font-size:15px;margin-top:20px}
table{border-collapse:collapse;margin:8px 0 14px;font-size:13px}
th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#eef3f9}td.l,th.l{text-align:left}
.note{background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px;margin:6px 0;font-size:13px}
.warn{background:#fdecea;border-left:4px solid #c0392b;padding:6px 10px;margin:6px 0;font-size:13px}
.key{background:#eef7ee;border-left:4px solid #2e8b57;padding:8px 12px;margin:10px 0}
.muted{color:#666;font-size:12.5px}img{max-width:100%;border:1px solid #e0e0e0;margin:6px 0}
.few{color:#b03a2e}.ok{color:#2e7d32}code{background:#f3f3f3;padding:0 3px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pct(v: Any, digits: int = 1) -> str:
    return "–" if v is None else f"{v * 100:.{digits}f}%"


def _num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    head = "".join(f"<th class='l'>{_e(h)}</th>" if i < left else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(data: bytes, alt: str) -> str:
    return f"<img alt='{_e(alt)}' src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'>"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return "–"
    if isinstance(v, (float, np.floating)):
        return _num(float(v), 3)
    return _e(v)


def _suff(text: str) -> str:
    return f"<span class='{'ok' if text == 'enough' else 'few'}'>{_e(text)}</span>"


def _html(s: dict[str, Any], images: dict[str, bytes], missed: dict[str, pd.DataFrame], inp: ReportInput) -> str:
    h = s["holdout"]
    parts = [f"<h1>{_e(s['title'])}</h1>"]
    parts.append(
        f"<p class='muted'>Model: <b>{_e(s['model'])}</b> · target: <b>{_e(s['target'])}</b>"
        + (f" within {_e(s['horizon_days'])} days" if s.get("horizon_days") else "")
        + f" · data: {_e(s.get('data_source') or '–')}</p>"
    )
    parts.append(
        f"<p><b>Holdout:</b> {_e(s['split_rule'])}.<br>{h['n']:,} leads, {h['conversions']:,} conversions "
        f"(base rate {_pct(h['base_rate'])}). Every figure below is measured on these leads only.</p>"
    )
    for note in s["notes"]:
        cls = "warn" if note.lower().startswith(("warning", "data differs")) else "note"
        parts.append(f"<div class='{cls}'>{_e(note)}</div>")

    # Key findings
    keys = []
    for name, v in s["equal_volume"].items():
        if v["volume"]:
            keys.append(
                f"<li>At the volume <b>{_e(name)}</b> sends to sales ({v['volume']:,} leads, {_pct(v['volume_share'])} of the holdout), "
                f"its leads converted at <b>{_pct(v['manual_rate'])}</b> ({v['manual_wins']:,} conversions); the model's top "
                f"{v['volume']:,} converted at <b>{_pct(v['model_rate'])}</b> ({v['model_wins']:,} conversions): "
                f"{v['extra_wins']:+,} conversions.</li>"
            )
        else:
            keys.append(f"<li><b>{_e(name)}</b> passed no holdout lead to sales.</li>")
    cap = s["capacity"]
    if cap.get("available"):
        manual_bits = "; ".join(f"{_e(k)} {m['wins_per_week']:.1f}" for k, m in cap["manual"].items())
        keys.append(
            f"<li>With {cap['reps']} reps × {cap['leads_per_rep_week']:g} leads/week, working the model's top leads gives "
            f"about <b>{cap['model_wins_per_week']:.1f} conversions/week</b>"
            + (f" (manual processes: {manual_bits})" if manual_bits else "")
            + ".</li>"
        )
    parts.append(f"<div class='key'><b>Key figures</b><ul>{''.join(keys)}</ul></div>")

    # Metrics
    parts.append("<h2>1. Ranking and probability quality</h2>")
    parts.append(
        "<p class='muted'>ROC AUC: chance a converting lead ranks above a non-converting one (0.5 = random). "
        "PR AUC: precision averaged over recall (compare with the base rate). Brier: mean squared error of the "
        "probability (lower is better). Manual processes are scored by the conversion rate each of their levels "
        "had on the training leads.</p>"
    )
    rows = [
        [
            _e(k),
            _num(v["n"]),
            _num(v["conversions"]),
            _num(v["roc_auc"]),
            _num(v["pr_auc"]),
            _num(v["brier"], 4),
            _num(v.get("passed")) if "passed" in v else "–",
        ]
        for k, v in s["metrics"].items()
    ]
    parts.append(_table(["process", "n leads", "conversions", "ROC AUC", "PR AUC", "Brier", "passed to sales"], rows))

    # Equal volume
    parts.append("<h2>2. Equal volume: the same number of leads to sales</h2>")
    if s["equal_volume"]:
        parts.append(
            "<p class='muted'>For each manual process: the leads it passed vs the model's highest-ranked leads of the same number. "
            "Lift = conversion rate / base rate.</p>"
        )
        rows = [
            [
                _e(k),
                _num(v["volume"]),
                f"{_pct(v['manual_rate'])} ({v['manual_wins']:,})",
                _num(v["manual_lift"], 2),
                f"{_pct(v['model_rate'])} ({v['model_wins']:,})",
                _num(v["model_lift"], 2),
                f"{v['extra_wins']:+,}",
            ]
            for k, v in s["equal_volume"].items()
        ]
        parts.append(
            _table(
                [
                    "manual process",
                    "leads to sales",
                    "manual: conv. rate (wins)",
                    "manual lift",
                    "model: conv. rate (wins)",
                    "model lift",
                    "extra wins (model)",
                ],
                rows,
            )
        )
        parts.append(_img(images["equal_volume.png"], "equal volume chart"))
    else:
        parts.append("<p>No manual process is defined in the mapping.</p>")

    # Gain
    parts.append("<h2>3. Gain chart</h2>")
    parts.append(_img(images["gain.png"], "gain chart"))
    shares = s["gain"]["shares"]
    show = [i for i, v in enumerate(shares) if round(v * 100) in (10, 20, 30, 50)]
    rows = [[_e(k), *[_pct(v[i], 0) for i in show]] for k, v in s["gain"]["curves"].items()]
    parts.append(
        _table(
            ["share of conversions captured when working the top …", *[f"{shares[i]:.0%} of leads" for i in show]], rows
        )
    )

    # Calibration
    parts.append("<h2>4. Calibration of the model's probabilities</h2>")
    parts.append(
        "<p class='muted'>Leads in equal-count bins by predicted probability; a calibrated model's points sit on the diagonal. "
        f"ECE (mean gap, weighted by bin size) = {_num(s['calibration']['ece'])}.</p>"
    )
    parts.append(_img(images["calibration.png"], "reliability chart"))

    # Disagreement
    parts.append("<h2>5. Where the model and the manual process disagree</h2>")
    parts.append(
        "<p class='muted'>Model-hot = in the model's pick of the same size as the manual process's passed leads. "
        "Conversion rates are the real outcomes of those holdout leads.</p>"
    )
    for name, cells in s["disagreement"].items():
        parts.append(f"<h3>{_e(name)}</h3>")
        rows = [
            [_e(c["cell"]), _num(c["n"]), _num(c["wins"]), _pct(c["conversion_rate"]), _suff(c["sufficiency"])]
            for c in cells
        ]
        parts.append(_table(["leads", "n", "conversions", "conversion rate", "sample"], rows))
        frame = missed[name]
        parts.append(
            f"<p><b>{len(frame):,}</b> converted leads that {_e(name)} rejected were in the model's pick"
            + (
                f" (the {min(len(frame), MAX_LISTED_WINS)} best-ranked shown; all in <code>missed_wins.csv</code>)"
                if len(frame)
                else ""
            )
            + ".</p>"
        )
        if len(frame):
            shown = frame.head(MAX_LISTED_WINS)
            rows = [[_cell(v) for v in r] for r in shown.itertuples(index=False)]
            parts.append(_table(list(shown.columns), rows))

    # Capacity
    parts.append("<h2>6. Capacity: what sales can work each week</h2>")
    if cap.get("available"):
        parts.append(
            f"<p>{cap['reps']} reps × {cap['leads_per_rep_week']:g} leads/rep/week = <b>{cap['capacity_per_week']:,.0f} leads/week</b> "
            f"of capacity; the holdout period brought {cap['leads_per_week']:,.1f} leads/week, so sales can work "
            f"<b>{_pct(cap['share_worked'])}</b> of leads ({cap['worked_per_week']:,.1f}/week). "
            f"Model cut-off for that: probability ≥ <b>{_num(cap['cutoff_probability'], 4)}</b>"
            + (f" (score ≥ <b>{cap['cutoff_score']}</b>)" if cap.get("cutoff_score") is not None else "")
            + f", the top {cap['holdout_leads_in_pick']:,} holdout leads with {cap['holdout_wins_in_pick']:,} conversions.</p>"
        )
        rows = [
            [
                _e(s["model"]) + " (top leads up to capacity)",
                f"{cap['worked_per_week']:,.1f}",
                _pct(cap["model_conversion_rate"]),
                f"{cap['model_wins_per_week']:,.2f}",
            ]
        ]
        rows += [
            [
                _e(f"manual: {k}") + f" (passes {m['passed_per_week']:,.1f}/week)",
                f"{m['worked_per_week']:,.1f}",
                _pct(m["conversion_rate"]),
                f"{m['wins_per_week']:,.2f}",
            ]
            for k, m in cap["manual"].items()
        ]
        parts.append(_table(["process", "leads worked/week", "conversion rate", "expected conversions/week"], rows))
        parts.append(
            "<p class='muted'>A manual process hands over only the leads it passed: beyond capacity, reps work as many as they can "
            "(at those leads' conversion rate); below it, capacity is left idle. "
            f"Working every lead would give {cap['all_leads_wins_per_week']:,.2f} conversions/week.</p>"
        )
    else:
        parts.append(
            f"<p>Capacity ({cap['reps']} reps × {cap['leads_per_rep_week']:g} leads/week = {cap['capacity_per_week']:,.0f} "
            f"leads/week) cannot be set against the lead flow: {_e(cap['reason'])}. The gain chart shows the same trade-off "
            "as shares of leads.</p>"
        )

    # Segments
    parts.append("<h2>7. By segment</h2>")
    parts.append(
        f"<p class='muted'>Data sufficiency: {_e(SUFFICIENCY_RULE)}. Equal-volume picks are made over the whole holdout "
        "and counted within each level.</p>"
    )
    for column, levels in s["segments"].items():
        parts.append(f"<h3>{_e(column)}</h3>")
        names = list(inp.manual)
        header = [
            "level",
            "n leads",
            "conversions",
            "conv. rate",
            "model ROC AUC",
            "model Brier",
            *[f"{k} ROC AUC" for k in names],
            *[f"{k}: passed → conv. (model pick, same volume)" for k in names],
            "sample",
        ]
        rows = []
        for r in levels:
            rows.append(
                [
                    _e(r["level"]),
                    _num(r["n"]),
                    _num(r["conversions"]),
                    _pct(r["conversion_rate"]),
                    _num(r["model"]["roc_auc"]),
                    _num(r["model"]["brier"], 4),
                    *[_num(r["auc"].get(k)) for k in names],
                    *[
                        f"{m['passed']:,} → {_pct(m['passed_rate'])} ({m['model_pick']:,} → {_pct(m['model_pick_rate'])})"
                        for m in (r["manual"][k] for k in names)
                    ],
                    _suff(r["sufficiency"]),
                ]
            )
        parts.append(_table(header, rows))
        image = images.get(f"segment_{_slug(column)}.png")
        if image:
            parts.append(_img(image, f"ROC AUC by {column}"))
    if s["segments_missing"]:
        parts.append(
            f"<p class='note'>Segments named in the mapping but absent from the data: {_e(', '.join(s['segments_missing']))}.</p>"
        )

    # Features
    f = s["features"]
    parts.append("<h2>8. What the model uses</h2>")
    parts.append(
        f"<p><b>Model features ({len(f['model_features'])}):</b> {_e(', '.join(f['model_features']) or '–')}</p>"
    )
    parts.append(
        f"<p><b>Excluded columns</b> (never model inputs: ids, personal data, post-outcome or leakage-prone fields): "
        f"{_e(', '.join(f['excluded']) or '–')}</p>"
    )
    parts.append(
        f"<p><b>Manual-process columns</b> (used only to score the manual process, not by the model): "
        f"{_e(', '.join(f['manual_process_columns']) or '–')}</p>"
    )
    parts.append(
        "<p class='muted'>Generated by leadscore. Tables: metrics.csv, equal_volume.csv, disagreement.csv, missed_wins.csv, "
        "gain.csv, calibration.csv, segments.csv, capacity.csv, holdout_scores.csv (every holdout lead: id, label, model "
        "probability and each manual decision); all figures in summary.json.</p>"
    )
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(s['title'])}</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>"
    )
