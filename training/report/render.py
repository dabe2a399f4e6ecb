"""The report's charts (PNG) and its page (HTML through a Jinja2 template), drawn from :class:`Figures`.

The page is self-contained: the stylesheet is inlined and every chart is embedded as a ``data:`` URI, so
it opens offline and can be mailed as one file. The template environment escapes every value it prints
(autoescape) and refuses a name the figures do not have (``StrictUndefined``), so a category named
``<script>`` shows as text and a misspelt figure fails the build rather than printing blank.
"""

from __future__ import annotations

import base64
import math
from functools import cache
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from leadscore.training import charts
from leadscore.training.report.figures import MAX_LISTED_WINS, MODEL, Figures

TEMPLATE = "report.html.j2"
GAIN_SHARES_SHOWN = (10, 20, 30, 50)  # percent of leads at which the page's gain table reads the curves
NO_VALUE = "–"


# --------------------------------------------------------------------------------------------------
# Formats (the template's filters): each returns plain text, which the template escapes
# --------------------------------------------------------------------------------------------------


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage (0.123 -> '12.3%'); '–' for no value."""
    return NO_VALUE if value is None else f"{value * 100:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    """An int with thousands separators, a float with ``digits`` decimals; '–' for no value."""
    if value is None:
        return NO_VALUE
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def fixed(value: float, digits: int) -> str:
    """A number with thousands separators and exactly ``digits`` decimals, ints included (10 -> '10.0')."""
    return f"{value:,.{digits}f}"


def thousands(value: int) -> str:
    """A count with thousands separators."""
    return f"{value:,}"


def signed(value: int) -> str:
    """A difference with its sign and thousands separators (+1,234 / -5 / +0)."""
    return f"{value:+,}"


def general(value: float) -> str:
    """A number in its shortest form (2.0 -> '2', 2.5 -> '2.5')."""
    return f"{value:g}"


def cell(value: Any) -> str:
    """A value of a data table (the missed wins): '–' when missing, floats with 3 decimals, the rest as text."""
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return NO_VALUE
    if isinstance(value, (float, np.floating)):
        return num(float(value), 3)
    return str(value)


def png(data: bytes) -> str:
    """A PNG as a ``data:`` URI, for an ``<img src>`` that needs no file beside the page."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def note_class(note: str) -> str:
    """'warn' for a warning or a changed-data note, 'note' for the rest."""
    return "warn" if note.lower().startswith(("warning", "data differs")) else "note"


def slug(text: str) -> str:
    """A file-name-safe form of a column name: lower-case letters and digits, the rest '_'."""
    return "".join(ch.lower() if ch.isalnum() else "_" for ch in text).strip("_") or "segment"


FILTERS = {
    "pct": pct,
    "num": num,
    "fixed": fixed,
    "thousands": thousands,
    "signed": signed,
    "general": general,
    "cell": cell,
    "png": png,
    "note_class": note_class,
}


@cache
def environment() -> jinja2.Environment:
    """The report's template environment: the package's templates, autoescape on, undefined names refused."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("leadscore.training.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


# --------------------------------------------------------------------------------------------------
# Charts and page
# --------------------------------------------------------------------------------------------------


def segment_files(columns: list[str]) -> dict[str, str]:
    """The chart file of each segment column, ``segment_<slug>.png``; columns with the same slug get _2, _3, ..."""
    files: dict[str, str] = {}
    for column in columns:
        stem, i = f"segment_{slug(column)}", 1
        while f"{stem}{'' if i == 1 else f'_{i}'}.png" in files.values():
            i += 1
        files[column] = f"{stem}{'' if i == 1 else f'_{i}'}.png"
    return files


def charts_of(fig: Figures) -> dict[str, bytes]:
    """Every chart of the report as PNG bytes, by file name."""
    s = fig.summary
    h, cap = s["holdout"], s["capacity"]
    images = {
        "gain.png": charts.gain_chart(
            {name: (list(x), list(g)) for name, (x, g) in fig.curves.items()},
            {name: (share, wins) for name, (share, wins) in s["gain"]["handoffs"].items()},
            n=h["n"],
            conversions=h["conversions"],
            capacity_share=cap["share_worked"] if cap["available"] else None,
        ),
        "calibration.png": charts.reliability_chart(
            s["calibration"]["bins"],
            n=h["n"],
            conversions=h["conversions"],
            ece=s["calibration"]["ece"] or 0.0,
            title=f"Reliability of {s['model']}",
        ),
    }
    if s["equal_volume"]:
        images["equal_volume.png"] = charts.equal_volume_chart(
            [{"process": name, **v} for name, v in s["equal_volume"].items()], base_rate=h["base_rate"], n=h["n"]
        )
    for column, name in segment_files(list(s["segments"])).items():
        images[name] = charts.segment_chart(s["segments"][column], column=column, processes=[MODEL, *fig.manual_names])
    return images


def _missed_view(frame: pd.DataFrame) -> dict[str, Any]:
    """A manual process's missed wins as the page lists them: how many, and the best-ranked rows."""
    shown = frame.head(MAX_LISTED_WINS)
    return {"count": len(frame), "columns": list(shown.columns), "rows": list(shown.itertuples(index=False))}


def page(fig: Figures, images: dict[str, bytes]) -> str:
    """The report's HTML page, charts embedded."""
    shares = fig.summary["gain"]["shares"]
    return (
        environment()
        .get_template(TEMPLATE)
        .render(
            s=fig.summary,
            images=images,
            missed={name: _missed_view(frame) for name, frame in fig.missed.items()},
            manual_names=fig.manual_names,
            gain_columns=[i for i, share in enumerate(shares) if round(share * 100) in GAIN_SHARES_SHOWN],
            segment_files=segment_files(list(fig.summary["segments"])),
        )
    )
