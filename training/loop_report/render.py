"""The loop report's charts (PNG) and page (HTML through a Jinja2 template, self-contained, offline).

The page reuses the evaluate report's stylesheet and filters (autoescape on, unknown names refused).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
import numpy as np

from leadscore.models.drift import SCORE
from leadscore.training import charts
from leadscore.training.report import render as report_render

TEMPLATE = "loop.html.j2"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.PackageLoader("leadscore.training.loop_report", "templates"),
                jinja2.PackageLoader("leadscore.training.report", "templates"),
            ]
        ),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(report_render.FILTERS)
    return env


def weekly_chart(weekly: list[dict[str, Any]]) -> bytes:
    """Leads scored per week (bars) with the share accepted and the share touched within SLA (lines)."""
    plt = charts._pyplot()
    fig, ax = plt.subplots(figsize=(9.6, 4.2))
    weeks = [r["week"] for r in weekly]
    x = np.arange(len(weeks))
    ax.bar(x, [r["leads"] for r in weekly], color="#c9d9ec", label="leads scored")
    ax.set_ylabel("Leads scored in the week")
    ax.set_xticks(x, weeks, rotation=45, ha="right", fontsize=8)
    right = ax.twinx()
    for key, label, color in (
        ("accepted", "accepted", charts.COLORS[0]),
        ("on_time", "first touch within SLA", charts.COLORS[1]),
        ("opportunity_rate", "opportunity", charts.COLORS[2]),
    ):
        values = [np.nan if r[key] is None else r[key] * 100 for r in weekly]
        right.plot(x, values, marker="o", color=color, label=label)
    right.set_ylabel("% of the week's leads (SLA: of leads due)")
    right.set_ylim(0, 100)
    lines = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    right.legend(lines, labels, loc="upper left", fontsize=8)
    ax.set_title(f"By week of scoring: {sum(r['leads'] for r in weekly):,} leads", fontsize=10.5)
    ax.grid(alpha=0.3, axis="y")
    return charts._png(fig)


def calibration_chart(rows: list[dict[str, Any]], horizon_days: int) -> bytes:
    """Realized conversion of matured leads by tier, with its 95% interval, against the predicted rate."""
    plt = charts._pyplot()
    tiers = [r for r in rows if r["tier"] != "all" and r["leads"]]
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    x = np.arange(len(tiers))
    realized = np.array([r["realized"] for r in tiers], dtype=float) * 100
    low = realized - np.array([r["ci_low"] for r in tiers], dtype=float) * 100
    high = np.array([r["ci_high"] for r in tiers], dtype=float) * 100 - realized
    ax.errorbar(x, realized, yerr=[low, high], fmt="o", color=charts.COLORS[0], capsize=5, label="realized (95% CI)")
    ax.scatter(
        x,
        [r["predicted"] * 100 for r in tiers],
        marker="_",
        s=600,
        color=charts.COLORS[1],
        label="predicted (mean probability)",
    )
    for i, r in enumerate(tiers):
        if r["departs"]:
            ax.annotate(
                "departs", (x[i], realized[i]), textcoords="offset points", xytext=(8, 0), color="#c0392b", fontsize=9
            )
    ax.set_xticks(x, [f"{r['tier']}\nn={r['leads']:,}" for r in tiers])
    ax.set_ylabel(f"Converted within {horizon_days} days, %")
    ax.set_title(
        f"Matured cohorts: realized against predicted by tier ({sum(r['leads'] for r in tiers):,} leads)", fontsize=10.5
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return charts._png(fig)


def expected_chart(rows: list[dict[str, Any]]) -> bytes:
    """Young cohorts by tier: conversions the model expects by the horizon against those observed so far."""
    plt = charts._pyplot()
    tiers = [r for r in rows if r["tier"] != "all" and r["leads"]]
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    x = np.arange(len(tiers))
    ax.bar(
        x - 0.2,
        [r["expected_conversions"] for r in tiers],
        width=0.4,
        color=charts.COLORS[1],
        label="expected by the horizon",
    )
    ax.bar(x + 0.2, [r["observed_so_far"] for r in tiers], width=0.4, color=charts.COLORS[0], label="observed so far")
    ax.set_xticks(x, [f"{r['tier']}\nn={r['leads']:,}" for r in tiers])
    ax.set_ylabel("Conversions")
    ax.set_title(
        f"Before the labels: {sum(r['leads'] for r in tiers):,} leads whose horizon has not ended", fontsize=10.5
    )
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return charts._png(fig)


def reasons_chart(rows: list[dict[str, Any]]) -> bytes:
    """Rejections by reason (all tiers)."""
    plt = charts._pyplot()
    overall = [r for r in rows if r["tier"] == "all"][::-1]
    fig, ax = plt.subplots(figsize=(7.2, 0.5 * len(overall) + 1.5))
    ax.barh([r["reason"] for r in overall], [r["rejections"] for r in overall], color=charts.COLORS[3])
    ax.set_xlabel("Rejections")
    ax.set_title(f"Rejection reasons: {sum(r['rejections'] for r in overall):,} rejected leads", fontsize=10.5)
    ax.grid(alpha=0.3, axis="x")
    return charts._png(fig)


def images(summary: dict[str, Any]) -> dict[str, bytes]:
    t = summary["tables"]
    out = {}
    if t["weekly"]:
        out["weekly.png"] = weekly_chart(t["weekly"])
    if any(r["leads"] for r in t["realized_vs_predicted"] if r["tier"] != "all"):
        out["realized_vs_predicted.png"] = calibration_chart(
            t["realized_vs_predicted"], summary["header"]["horizon_days"]
        )
    if any(r["leads"] for r in t["expected_vs_observed"] if r["tier"] != "all"):
        out["expected_vs_observed.png"] = expected_chart(t["expected_vs_observed"])
    if any(r["tier"] == "all" for r in t["rejection_reasons"]):
        out["rejection_reasons.png"] = reasons_chart(t["rejection_reasons"])
    return out


def page(summary: dict[str, Any], pictures: dict[str, bytes]) -> str:
    """The page; the drift table lists the measured rows (the most shifted first), and the features the logged
    inputs lack in one line per version."""
    rows = summary["tables"]["drift"]
    # per version: the score first, then the features, the most shifted first
    measured = sorted(
        (r for r in rows if r["value"] is not None),
        key=lambda r: (r["version"], r["what"] != SCORE, -r["value"]),
    )
    unlogged: dict[str, list[str]] = {}
    for r in rows:
        if r["value"] is None:
            unlogged.setdefault(r["version"], []).append(r["what"])
    previous = sorted(
        summary["tables"]["drift_previous_period"],
        key=lambda r: (r["what"] != SCORE, -(r["value"] if r["value"] is not None else -1.0)),
    )
    context = {"drift_measured": measured, "drift_unlogged": unlogged, "drift_previous": previous}
    return environment().get_template(TEMPLATE).render(s=summary, images=pictures, **context)
