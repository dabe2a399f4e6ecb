"""The report's figures on a hand-built holdout of 20 leads, where every right answer is worked out by hand.

Leads L01..L20 are ranked by the model in that order (probability 0.95, 0.90, ..., 0.00).
Conversions at ranks 1, 2, 4, 6, 9, 13 (6 of 20, base rate 0.30). The manual process passed ranks 2, 5, 8, 13, 16.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
import pytest

from leadscore.training.report import (
    ManualResult,
    ReportInput,
    build_report,
    capacity_view,
    disagreement,
    equal_volume,
    gain_at,
    gain_points,
    missed_wins,
    render,
    segment_table,
    sufficiency,
    top_k_mask,
)

RANKS = np.arange(1, 21)
CONVERTED = {1, 2, 4, 6, 9, 13}
PASSED = {2, 5, 8, 13, 16}
ORDER = np.random.default_rng(3).permutation(20)  # rows are not in rank order: nothing may rely on it


def _hand_built() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rank = RANKS[ORDER]
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{r:02d}" for r in rank],
            "email": [f"person{r}@example.com" for r in rank],
            "source": ["inbound" if r <= 8 else "paid" if r <= 16 else None for r in rank],
            "is_mql": [r in PASSED for r in rank],
        }
    )
    y = np.array([int(r in CONVERTED) for r in rank])
    p = 0.95 - 0.05 * (rank - 1)
    passed = np.array([r in PASSED for r in rank])
    manual_p = np.where(passed, 0.4, 0.2)
    return frame, y, p, passed, manual_p


@pytest.fixture
def hand() -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return _hand_built()


def test_equal_volume_by_hand(hand):
    _, y, p, passed, _ = hand
    v = equal_volume(y, p, passed)
    assert v["volume"] == 5 and v["n"] == 20 and v["conversions"] == 6
    assert (v["manual_wins"], v["manual_rate"]) == (2, pytest.approx(0.4))  # ranks 2 and 13
    assert (v["model_wins"], v["model_rate"]) == (3, pytest.approx(0.6))  # top 5: ranks 1, 2, 4
    assert v["manual_lift"] == pytest.approx(0.4 / 0.3) and v["model_lift"] == pytest.approx(2.0)
    assert v["extra_wins"] == 1


def test_disagreement_by_hand(hand):
    _, y, p, passed, _ = hand
    cells = {c["cell"]: c for c in disagreement(y, top_k_mask(p, 5), passed)}
    assert (cells["model-hot & manual-no"]["n"], cells["model-hot & manual-no"]["wins"]) == (3, 2)  # ranks 1, 3, 4
    assert cells["model-hot & manual-no"]["conversion_rate"] == pytest.approx(2 / 3)
    assert (cells["model-cold & manual-yes"]["n"], cells["model-cold & manual-yes"]["wins"]) == (
        3,
        1,
    )  # ranks 8, 13, 16
    assert (cells["both yes"]["n"], cells["both yes"]["wins"]) == (2, 1)
    assert (cells["both no"]["n"], cells["both no"]["wins"]) == (12, 2)
    assert all(c["sufficiency"] == "too few to trust" for c in cells.values())


def test_missed_wins_lists_ids_never_emails(hand):
    frame, y, p, passed, _ = hand
    missed = missed_wins(frame, y, p, passed, id_column="lead_id", extra_columns=["source", "email"])
    assert missed["lead_id"].tolist() == [
        "L01",
        "L04",
    ]  # converted, rejected by the manual process, in the model's top 5
    assert missed["model_rank"].tolist() == [1, 4]
    assert "email" not in missed.columns and "source" in missed.columns


def test_gain_points_by_hand(hand):
    _, y, p, _, manual_p = hand
    x, g = gain_points(y, p)
    assert len(x) == 21 and x[0] == 0 and g[-1] == 1
    assert gain_at(y, p, [0.25, 0.5]) == [pytest.approx(3 / 6), pytest.approx(5 / 6)]
    # a yes/no process is two ties: the curve joins (0,0), (share passed, share of wins passed) and (1,1)
    x, g = gain_points(y, manual_p)
    assert x.tolist() == [0, 0.25, 1] and g.tolist() == pytest.approx([0, 2 / 6, 1])
    assert gain_at(y, manual_p, [0.125])[0] == pytest.approx(1 / 6)


def test_segments_by_hand(hand):
    frame, y, p, passed, manual_p = hand
    rows = {r["level"]: r for r in segment_table(frame, y, p, {"MQL": ManualResult(manual_p, passed)}, "source")}
    assert set(rows) == {"inbound", "paid", "(missing)"}
    assert (rows["inbound"]["n"], rows["inbound"]["conversions"]) == (8, 4)  # ranks 1, 2, 4, 6
    assert (rows["paid"]["n"], rows["paid"]["conversions"]) == (8, 2)  # ranks 9, 13
    assert (rows["(missing)"]["n"], rows["(missing)"]["conversions"]) == (4, 0)
    assert rows["(missing)"]["model"]["roc_auc"] is None  # one class only: no AUC, not a made-up number
    inbound = rows["inbound"]["manual"]["MQL"]
    assert (inbound["passed"], inbound["passed_wins"], inbound["model_pick"], inbound["model_pick_wins"]) == (
        3,
        1,
        5,
        3,
    )
    assert all(r["sufficiency"] == "too few to trust" for r in rows.values())


@pytest.mark.parametrize(
    ("conversions", "non_conversions", "expected"),
    [(40, 40, "enough"), (39, 500, "too few to trust"), (500, 39, "too few to trust"), (0, 0, "too few to trust")],
    ids=["40-and-40", "39-conversions", "39-non-conversions", "empty"],
)
def test_sufficiency_rule(conversions, non_conversions, expected):
    assert sufficiency(conversions, non_conversions) == expected


@pytest.mark.parametrize(
    ("per_rep", "reps", "k", "model_wins_week", "manual_worked", "manual_wins_week"),
    [(2, 2, 8, 4 / 20 * 10, 2.5, 1.0), (2, 1, 4, 3 / 20 * 10, 2.0, 0.8)],
    ids=["capacity-above-manual-volume", "capacity-below-manual-volume"],
)
def test_capacity_by_hand(hand, per_rep, reps, k, model_wins_week, manual_worked, manual_wins_week):
    _, y, p, passed, manual_p = hand
    cap = capacity_view(
        y, p, {"MQL": ManualResult(manual_p, passed)}, leads_per_week=10, leads_per_rep_week=per_rep, reps=reps
    )
    assert cap["available"] and cap["capacity_per_week"] == per_rep * reps
    assert cap["holdout_leads_in_pick"] == k
    assert cap["cutoff_probability"] == pytest.approx(0.95 - 0.05 * (k - 1))  # the k-th ranked lead's probability
    assert cap["model_wins_per_week"] == pytest.approx(model_wins_week)
    assert cap["manual"]["MQL"]["passed_per_week"] == pytest.approx(2.5)
    assert cap["manual"]["MQL"]["worked_per_week"] == pytest.approx(manual_worked)
    assert cap["manual"]["MQL"]["wins_per_week"] == pytest.approx(manual_wins_week)


def test_capacity_without_timestamps_says_why(hand):
    _, y, p, _passed, _manual_p = hand
    cap = capacity_view(y, p, {}, leads_per_week=None, leads_per_rep_week=10, reps=3)
    assert cap["available"] is False and "timestamps" in cap["reason"] and cap["capacity_per_week"] == 30


@pytest.fixture
def report(hand, tmp_path) -> tuple[dict, Path]:
    frame, y, p, passed, manual_p = hand
    inp = ReportInput(
        holdout=frame,
        y=y,
        model_probability=p,
        manual={"MQL flag": ManualResult(manual_p, passed)},
        metadata={
            "target": "opportunity",
            "mapping": {
                "id": "lead_id",
                "segments": ["source"],
                "exclude": ["email", "name"],
                "manual": [{"name": "MQL flag", "columns": ["is_mql"]}],
            },
            "feature_columns": ["employees", "pricing_page_view_total"],
        },
        leads_per_week=10,
        split_rule="time split: test",
    )
    out = tmp_path / "report"
    return build_report(inp, out, leads_per_rep_week=2, reps=2), out


def test_report_folder_holds_the_hand_figures(report):
    summary, out = report
    names = {p.name for p in out.iterdir()}
    assert {
        "report.html",
        "summary.json",
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
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["metrics"]["model"]["roc_auc"] == pytest.approx(70 / 84)  # pairs ranked right, counted by hand
    assert summary["metrics"]["model"]["n"] == 20 and summary["metrics"]["model"]["conversions"] == 6
    assert summary["equal_volume"]["MQL flag"]["model_wins"] == 3
    assert summary["capacity"]["holdout_leads_in_pick"] == 8
    assert summary["features"]["excluded"] == ["email", "name"]
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_html_is_self_contained_and_states_the_numbers(report):
    _, out = report
    page = (out / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert page.count("data:image/png;base64,") >= 4  # equal volume, gain, calibration, segment
    for text in (
        "60.0%",
        "40.0%",
        "L01",
        "L04",
        "too few to trust",
        "&gt;= 40 conversions",
        "time split: test",
        "pricing_page_view_total",
        "20 leads, 6 conversions",
    ):
        assert text in page, text
    for path in out.iterdir():
        assert "example.com" not in path.read_bytes().decode("latin-1"), f"an email leaked into {path.name}"


def _inp(hand, **changes) -> ReportInput:
    frame, y, p, passed, manual_p = hand
    base = {
        "holdout": frame,
        "y": y,
        "model_probability": p,
        "manual": {"MQL flag": ManualResult(manual_p, passed)},
        "metadata": {"target": "opportunity", "mapping": {"id": "lead_id", "segments": ["source"]}},
        "leads_per_week": 10,
    }
    return ReportInput(**{**base, **changes})


def test_every_value_from_the_data_is_escaped_in_the_page(hand, tmp_path):
    frame = hand[0].assign(source=hand[0]["source"].replace({"paid": "<script>alert(1)</script>"}))
    frame["lead_id"] = frame["lead_id"].str.replace("L01", "<b>L01</b>")
    inp = _inp(
        hand,
        holdout=frame,
        manual={"MQL <i>flag</i>": ManualResult(hand[4], hand[3])},
        notes=["Warning: <img src=x onerror=alert(2)>"],
        split_rule="time split <u>test</u>",
        metadata={"title": "Leads & <em>more</em>", "mapping": {"id": "lead_id", "segments": ["source"]}},
    )
    build_report(inp, tmp_path, leads_per_rep_week=2, reps=2)
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page.lower() and "<img src=x" not in page and "<i>" not in page and "<em>" not in page
    for shown in (
        "&lt;script&gt;alert(1)&lt;/script&gt;",  # a segment level
        "&lt;b&gt;L01&lt;/b&gt;",  # a lead id in the missed wins
        "MQL &lt;i&gt;flag&lt;/i&gt;",  # a manual process's name
        "Warning: &lt;img src=x onerror=alert(2)&gt;",
        "time split &lt;u&gt;test&lt;/u&gt;",
        "<title>Leads &amp; &lt;em&gt;more&lt;/em&gt;</title>",
    ):
        assert shown in page, shown
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)


def test_a_manual_process_that_passed_no_lead_is_reported_as_such(hand, tmp_path):
    inp = _inp(hand, manual={"never": ManualResult(hand[4], np.zeros(20, dtype=bool))})
    summary = build_report(inp, tmp_path, leads_per_rep_week=2, reps=2)
    assert summary["equal_volume"]["never"]["volume"] == 0 and summary["equal_volume"]["never"]["manual_rate"] is None
    assert "<b>never</b> passed no holdout lead to sales." in (tmp_path / "report.html").read_text()
    assert (tmp_path / "equal_volume.png").read_bytes()[:4] == b"\x89PNG"


def test_segments_whose_names_make_the_same_file_name_each_keep_their_chart(hand, tmp_path):
    frame = hand[0].assign(**{"Lead Source": hand[0]["source"], "lead_source": hand[0]["is_mql"].astype(str)})
    inp = _inp(hand, holdout=frame, metadata={"mapping": {"segments": ["Lead Source", "lead_source"]}})
    build_report(inp, tmp_path)
    charts = {p.name: p.read_bytes() for p in tmp_path.glob("segment_*.png")}
    assert set(charts) == {"segment_lead_source.png", "segment_lead_source_2.png"}
    assert charts["segment_lead_source.png"] != charts["segment_lead_source_2.png"]
    page = (tmp_path / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 5  # equal volume, gain, calibration and one per segment


def test_a_new_report_leaves_no_table_of_an_older_one_in_its_folder(hand, tmp_path):
    build_report(_inp(hand), tmp_path, leads_per_rep_week=2, reps=2)
    (tmp_path / "my notes.txt").write_text("mine")
    assert (tmp_path / "capacity.csv").exists() and (tmp_path / "segment_source.png").exists()
    build_report(_inp(hand, leads_per_week=None, metadata={}), tmp_path, leads_per_rep_week=2, reps=2)
    names = {p.name for p in tmp_path.iterdir()}
    assert "capacity.csv" not in names and "segment_source.png" not in names  # without timestamps; no segments
    assert {"report.html", "summary.json", "gain.csv", "my notes.txt"} <= names
    assert not [n for n in names if n.endswith(".tmp")]


def test_bad_input_writes_nothing_and_keeps_the_old_report(hand, tmp_path):
    build_report(_inp(hand), tmp_path, leads_per_rep_week=2, reps=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match="report inputs differ in length: 20 rows, 19 labels, 20 probabilities"):
        build_report(_inp(hand, y=hand[1][:19]), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_template_refuses_a_name_the_figures_do_not_have():
    with pytest.raises(jinja2.UndefinedError, match="no_such_figure"):
        render.environment().from_string("{{ s.no_such_figure }}").render(s={})
