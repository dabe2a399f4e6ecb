"""Report charts as PNG bytes (matplotlib, Agg backend chosen inside each function, never at import).

Every chart carries a title, axis labels, a legend where there is more than one series, and the sample
size behind it, so a screenshot of one chart still says what it is and how much data stands behind it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

COLORS = ("#1f5fa8", "#d9822b", "#2e8b57", "#a23b72", "#6b6b6b", "#8c564b", "#17becf")
DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def reliability_chart(bins: Sequence[dict[str, float]], *, n: int, conversions: int, ece: float, title: str) -> bytes:
    """Observed conversion rate against mean predicted probability per equal-count bin, bin sizes marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    predicted = np.array([b["mean_predicted"] for b in bins], dtype=float)
    observed = np.array([b["observed_rate"] for b in bins], dtype=float)
    sizes = np.array([b["n"] for b in bins], dtype=float)
    top = float(max(predicted.max(initial=0), observed.max(initial=0), 0.05)) * 1.1
    top = min(1.0, top)
    ax.plot([0, top], [0, top], linestyle="--", color="#999999", linewidth=1, label="perfect calibration")
    ax.plot(predicted, observed, marker="o", color=COLORS[0], linewidth=1.8, label="model (equal-count bins)")
    if len(sizes):
        ax.plot([], [], " ", label=f"{len(sizes)} bins of {int(sizes.min()):,}-{int(sizes.max()):,} leads each")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("Predicted conversion probability (bin mean)")
    ax.set_ylabel("Observed conversion rate in the bin")
    ax.set_title(f"{title}\nholdout n={n:,} leads, {conversions:,} conversions; ECE={ece:.3f}", fontsize=10.5)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    return _png(fig)


def gain_chart(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    handoffs: dict[str, tuple[float, float]],
    *,
    n: int,
    conversions: int,
    capacity_share: float | None = None,
) -> bytes:
    """Share of conversions captured against share of leads worked, one line per process.

    ``handoffs`` marks each manual process's own decision (share it passed, share of wins among them).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 5.6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="random order")
    handoff_labels: list[str] = []
    for i, (name, (x, y)) in enumerate(curves.items()):
        color = COLORS[i % len(COLORS)]
        ax.plot(x, y, color=color, linewidth=2.0 if i == 0 else 1.5, label=name)
        if name in handoffs:
            hx, hy = handoffs[name]
            ax.plot([hx], [hy], marker="D", markersize=8, color=color, markeredgecolor="black", linestyle="none")
            handoff_labels.append(f"\u25c6 {name}: passed {hx:.0%} of leads, {hy:.0%} of conversions")
    if capacity_share is not None and 0 < capacity_share < 1:
        ax.axvline(
            capacity_share,
            color="#b22222",
            linestyle=":",
            linewidth=1.2,
            label=f"sales capacity ({capacity_share:.0%} of leads)",
        )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("Share of holdout leads worked (highest-ranked first)")
    ax.set_ylabel("Share of all conversions captured")
    ax.set_title(
        f"Gain chart: conversions captured vs leads worked\nholdout n={n:,} leads, {conversions:,} conversions; "
        "diamonds = each manual process's own hand-off",
        fontsize=10.5,
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8.5)
    if handoff_labels:
        ax.text(
            0.0,
            -0.13,
            "\n".join(handoff_labels),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=8,
            bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.9, "edgecolor": "#cccccc"},
        )
    return _png(fig)


def equal_volume_chart(rows: Sequence[dict[str, Any]], *, base_rate: float, n: int) -> bytes:
    """Conversion rate of the manual process's passed leads vs the model's top leads of the same number.

    A process that passed no lead has no rate: its bars are empty and labelled so.
    """
    plt = _pyplot()
    height_in = 1.9 + 1.1 * max(1, len(rows))
    fig, ax = plt.subplots(figsize=(7.6, height_in))
    labels = [r["process"] for r in rows]
    y = np.arange(len(rows))
    height = 0.36
    manual = [r["manual_rate"] or 0.0 for r in rows]
    model = [r["model_rate"] or 0.0 for r in rows]
    bars_m = ax.barh(y + height / 2, manual, height, color=COLORS[1], label="manual process: leads it passed")
    bars_s = ax.barh(y - height / 2, model, height, color=COLORS[0], label="model: its top leads, same number")
    for bars, key_rate, key_wins in ((bars_m, "manual_rate", "manual_wins"), (bars_s, "model_rate", "model_wins")):
        for bar, r in zip(bars, rows, strict=True):
            ax.text(
                bar.get_width() + 0.005,
                bar.get_y() + bar.get_height() / 2,
                f"{r[key_rate]:.1%}  ({r[key_wins]:,} of {r['volume']:,})" if r["volume"] else "no lead passed",
                va="center",
                fontsize=8,
            )
    ax.axvline(base_rate, color="#555555", linestyle="--", linewidth=1, label=f"base rate {base_rate:.1%}")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, min(1.0, max([*manual, *model, base_rate, 0.05]) * 1.45))
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_xlabel("Conversion rate of the leads sent to sales")
    ax.set_title(
        f"Equal volume: same number of leads to sales, manual pick vs model pick\nholdout n={n:,} leads", fontsize=10.5
    )
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.62 / (height_in - 1.3)), ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def segment_chart(rows: Sequence[dict[str, Any]], *, column: str, processes: Sequence[str]) -> bytes:
    """ROC AUC by segment level for the model and each manual process; n and conversions in the labels."""
    plt = _pyplot()
    height_in = 1.8 + 0.45 * max(1, len(rows)) * max(1, len(processes)) ** 0.5
    fig, ax = plt.subplots(figsize=(7.6, height_in))
    y = np.arange(len(rows))
    height = 0.8 / max(1, len(processes))
    for i, name in enumerate(processes):
        values = [np.nan if r["auc"].get(name) is None else r["auc"][name] for r in rows]
        bars = ax.barh(y - 0.4 + height * (i + 0.5), values, height, color=COLORS[i % len(COLORS)], label=name)
        for bar, r in zip(bars, rows, strict=True):
            if not r["sufficient"]:
                bar.set_alpha(0.35)  # too few to trust: drawn faint
    labels = [f"{r['level']}  (n={r['n']:,}, conv={r['conversions']:,}){'' if r['sufficient'] else ' *'}" for r in rows]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0.5, color="#555555", linestyle="--", linewidth=1)
    ax.set_xlim(0.3, 1.0)
    ax.set_xlabel("ROC AUC within the segment (0.5 = no better than random)")
    ax.set_title(
        f"Ranking quality by {column}\n* and faint bars = too few conversions or non-conversions to trust",
        fontsize=10.5,
    )
    ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, -0.6 / (height_in - 1.2)),
        ncol=min(3, len(processes)),
        fontsize=8,
        frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)
