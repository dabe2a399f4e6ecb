"""The RevOps report: the model and each manual qualification process, judged on the same holdout leads.

:func:`build_report` turns a :class:`ReportInput` (holdout rows, labels, model probabilities, each manual
process's probabilities and hand-off decisions, metadata) into a report folder: ``report.html``
(self-contained: charts as inline PNG, no external CSS/JS), ``summary.json``, CSV tables and the chart
PNGs. :func:`write_fit_report` feeds it from a :class:`~training.train.FitResult` (the ``train`` hook);
:func:`training.evaluate.evaluate` feeds it from a registered model and fresh data.

The package has three parts, each usable alone: :mod:`.figures` computes every number from arrays (no
I/O, no HTML), :mod:`.render` draws the charts and renders the page through the Jinja2 templates in
``templates/``, and :mod:`.write` writes the folder, each file atomically.
"""

from leadscore.training.report.build import build_report, write_fit_report
from leadscore.training.report.figures import (
    DEFAULT_CAPACITY_SHARE,
    MAX_LISTED_WINS,
    MAX_SEGMENT_LEVELS,
    SUFFICIENCY_RULE,
    Figures,
    ManualResult,
    ReportInput,
    assumed_capacity,
    capacity_view,
    compute,
    disagreement,
    equal_volume,
    gain_at,
    gain_points,
    missed_wins,
    ranking_metrics,
    reliability_bins,
    segment_table,
    split_rule_text,
    sufficiency,
    top_k_mask,
)

__all__ = [
    "DEFAULT_CAPACITY_SHARE",
    "MAX_LISTED_WINS",
    "MAX_SEGMENT_LEVELS",
    "SUFFICIENCY_RULE",
    "Figures",
    "ManualResult",
    "ReportInput",
    "assumed_capacity",
    "build_report",
    "capacity_view",
    "compute",
    "disagreement",
    "equal_volume",
    "gain_at",
    "gain_points",
    "missed_wins",
    "ranking_metrics",
    "reliability_bins",
    "segment_table",
    "split_rule_text",
    "sufficiency",
    "top_k_mask",
    "write_fit_report",
]
