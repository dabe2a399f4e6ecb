"""The report folder on disk: the page, ``summary.json``, the CSV tables and the chart PNGs.

Everything is computed and drawn before the first file is written, so bad input writes nothing. Each
file is replaced atomically (:func:`leadscore.features.files.write_atomic`): a reader sees a file of the
old report or of the new one, never a part. ``report.html`` is written last; files a previous report left
in the folder that this one does not write (a capacity table, a segment's chart) are removed before it,
so the folder never mixes a new page with an old report's tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.features.files import write_atomic
from leadscore.training.report.figures import Figures

PAGE = "report.html"
SUMMARY = "summary.json"
# Every file name a report may write; segment charts are segment_<name>.png.
REPORT_FILES = frozenset(
    {
        PAGE,
        SUMMARY,
        "metrics.csv",
        "equal_volume.csv",
        "disagreement.csv",
        "missed_wins.csv",
        "gain.csv",
        "calibration.csv",
        "segments.csv",
        "capacity.csv",
        "holdout_scores.csv",
        "gain.png",
        "calibration.png",
        "equal_volume.png",
    }
)
SEGMENT_CHARTS = "segment_*.png"


def _csv(rows: pd.DataFrame | list[dict[str, Any]]) -> str:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    return frame.to_csv(index=False, lineterminator="\n")


def flat_segments(segments: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per segment level with the model's and each manual process's figures side by side."""
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


def _capacity_rows(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Leads worked, conversion rate and wins per week: the model at capacity, then each manual process."""
    cap = s["capacity"]
    rows = [
        {
            "process": s["model"],
            "worked_per_week": cap["worked_per_week"],
            "conversion_rate": cap["model_conversion_rate"],
            "wins_per_week": cap["model_wins_per_week"],
        }
    ]
    rows += [
        {"process": f"manual: {k}", **{c: v[c] for c in ("worked_per_week", "conversion_rate", "wins_per_week")}}
        for k, v in cap["manual"].items()
    ]
    return rows


def tables(fig: Figures) -> dict[str, str]:
    """The report's CSV tables, by file name (``capacity.csv`` only when the lead flow is known)."""
    s = fig.summary
    out = {
        "metrics.csv": _csv([{"process": k, **v} for k, v in s["metrics"].items()]),
        "equal_volume.csv": _csv([{"manual_process": k, **v} for k, v in s["equal_volume"].items()]),
        "disagreement.csv": _csv(
            [{"manual_process": k, **row} for k, rows in s["disagreement"].items() for row in rows]
        ),
        "gain.csv": _csv(pd.DataFrame({"share_of_leads": s["gain"]["shares"], **s["gain"]["curves"]})),
        "calibration.csv": _csv(s["calibration"]["bins"]),
        "segments.csv": _csv(flat_segments(s["segments"])),
        "missed_wins.csv": _csv(
            pd.concat([f.assign(manual_process=k) for k, f in fig.missed.items()], ignore_index=True)
            if fig.missed
            else pd.DataFrame()
        ),
        "holdout_scores.csv": _csv(fig.holdout_scores),
    }
    if s["capacity"]["available"]:
        out["capacity.csv"] = _csv(_capacity_rows(s))
    return out


def _stale(folder: Path, keep: set[str]) -> list[Path]:
    """Files of an earlier report in ``folder`` that the new one does not write."""
    if not folder.is_dir():
        return []
    found = [folder / name for name in REPORT_FILES] + list(folder.glob(SEGMENT_CHARTS))
    return [path for path in found if path.name not in keep and path.is_file()]


def write_report(folder: Path, fig: Figures, images: dict[str, bytes], page: str) -> list[Path]:
    """Write the report folder (see the module's note); returns the paths written, the page last."""
    folder = Path(folder)
    files: dict[str, bytes | str] = {
        **images,
        **tables(fig),
        SUMMARY: json.dumps(fig.summary, indent=2, allow_nan=False),
    }
    written = [write_atomic(folder / name, content) for name, content in files.items()]
    for path in _stale(folder, {*files, PAGE}):
        path.unlink()
    written.append(write_atomic(folder / PAGE, page))
    return written
