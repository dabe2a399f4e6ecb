"""Timestamp columns read with one format per column, decided from all of its values, never guessed per value.

A column's format is either given (``created_at: {column: ..., format: "%d/%m/%Y"}``) or detected: the
candidate formats that read every value of the column. Year-first ISO 8601 is taken when it reads them all.
Day-first and month-first formats that both read every value (no day above 12 anywhere) are refused with
the column, two sample values and the fix, rather than read one way by guessing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from leadscore.features.errors import DataError

ISO = "ISO8601"
_TIMES = ("", " %H:%M", " %H:%M:%S", " %H:%M:%S.%f", "T%H:%M", "T%H:%M:%S", " %I:%M %p", " %I:%M:%S %p")
_NAMED_MONTH = ("%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y", "%d-%b-%y", "%d %b %y")


def _numeric_formats() -> list[tuple[str, str]]:
    """(format, order) for dates written with numbers only: order is 'dmy', 'mdy' or 'ymd'."""
    out: list[tuple[str, str]] = []
    for sep in ("/", "-", "."):
        for year in ("%Y", "%y"):
            for order, date in (
                ("dmy", f"%d{sep}%m{sep}{year}"),
                ("mdy", f"%m{sep}%d{sep}{year}"),
            ):
                out.extend((date + time, order) for time in _TIMES)
        out.extend((f"%Y{sep}%m{sep}%d{time}", "ymd") for time in _TIMES)
    out.extend((fmt + time, "named") for fmt in _NAMED_MONTH for time in _TIMES)
    return out


CANDIDATES = _numeric_formats()


@dataclass(frozen=True)
class DateFormat:
    """The format a column is read with, and how it was decided ('given', 'detected' or 'native')."""

    format: str | None
    how: str
    day_first: bool | None = None


def _reads_all(values: pd.Series, fmt: str) -> bool:
    parsed = pd.to_datetime(values, format=fmt, errors="coerce", utc=True)
    return bool(parsed.notna().all())


def detect_format(raw: pd.Series, column: str, source: Path | str) -> DateFormat:
    """The one format that reads every non-empty value of ``raw``; refuses ambiguous or unreadable columns."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        return DateFormat(None, "native")
    text = _text(raw)
    values = pd.Series(text.dropna().unique())
    if values.empty:
        return DateFormat(ISO, "detected")
    if _reads_all(values, ISO):
        return DateFormat(ISO, "detected")
    probe = values.head(200)
    fitting = [(fmt, order) for fmt, order in CANDIDATES if _reads_all(probe, fmt) and _reads_all(values, fmt)]
    orders = {order for _, order in fitting}
    if {"dmy", "mdy"} <= orders:
        day_first = next(fmt for fmt, order in fitting if order == "dmy")
        samples = ", ".join(repr(v) for v in values.head(2))
        raise DataError(
            f"{source}: column {column!r}: dates such as {samples} read both day-first and month-first (no day "
            f"above 12 in any value); say which in the mapping, e.g. "
            f'{{column: {column!r}, format: "{day_first}"}} for day-first'
        )
    if fitting:
        fmt, order = fitting[0]
        return DateFormat(fmt, "detected", day_first={"dmy": True, "mdy": False}.get(order))
    # Nothing reads every value: name the first value the closest format fails on.
    best = max(CANDIDATES, key=lambda c: int(pd.to_datetime(probe, format=c[0], errors="coerce").notna().sum()))
    parsed = pd.to_datetime(text, format=best[0], errors="coerce", utc=True)
    iso = pd.to_datetime(text, format=ISO, errors="coerce", utc=True)
    bad = text.notna() & parsed.isna() & iso.isna()
    if not bad.any():  # values split between ISO and another format: one column, two formats
        bad = text.notna() & parsed.isna()
    row = int(bad.to_numpy().argmax())
    raise DataError(
        f"{source}: column {column!r} has unparseable date {text.iloc[row]!r} (row {row + 1}); a column must use "
        "one date format throughout; give it with {column: ..., format: ...} if it is unusual"
    )


def _text(raw: pd.Series) -> pd.Series:
    text = raw.astype("string").str.strip()
    return text.mask(text == "")


def parse_dates(
    frame: pd.DataFrame, column: str, source: Path | str, *, required: bool, format: str | None = None
) -> pd.Series:
    """Parse ``column`` to naive UTC with one format for all values (given, or by :func:`detect_format`)."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        fmt = format or detect_format(raw, column, source).format
        text = _text(raw)
        parsed = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
        bad = text.notna() & parsed.isna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise DataError(
                f"{source}: column {column!r} has date {text.iloc[row]!r} (row {row + 1}) that does not match "
                f"the format {fmt!r}"
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[ns]")
    if required and parsed.isna().any():
        row = int(parsed.isna().to_numpy().argmax())
        raise DataError(
            f"{source}: column {column!r} is empty in {int(parsed.isna().sum())} row(s), first at row {row + 1}"
        )
    return parsed


def refuse_future(
    parsed: pd.Series, column: str, source: Path | str, *, as_of: pd.Timestamp | None = None, what: str = "as-of"
) -> None:
    """Timestamps after ``as_of`` (or, without it, after today) are an error naming the column and the value."""
    limit = as_of if as_of is not None else pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta(days=1)
    late = parsed > limit
    if late.any():
        row = int(late.to_numpy().argmax())
        bound = f"--as-of {as_of}" if as_of is not None else "today"
        raise DataError(
            f"{source}: column {column!r} has {int(late.sum())} timestamp(s) after {bound}, e.g. "
            f"{parsed.iloc[row]} (row {row + 1}); a date read the wrong way round, or data from the future"
        )
