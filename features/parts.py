"""Part files that hold whole leads: shown from their Parquet footers, and scored pair by pair.

``leadscore generate`` writes each table as a folder of part files, part ``i`` of every table holding the
same leads. When that can be shown from the footers alone (no data read), the Dask engine scores each
pair of leads and activities part files as it is, with no shuffle. This module imports neither Dask nor
the training code: a worker that runs :func:`part_scoring_rows` loads only pandas, Arrow and the
feature code.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from leadscore.features.build import CrmTables, latest_of, scoring_frame, table_path
from leadscore.features.dates import refuse_future
from leadscore.features.mapping import DataError, Mapping, parse_datetimes, require_columns
from leadscore.features.values import refuse_non_finite


def part_scoring_rows(leads_path: Path, activities_path: Path, mapping: Mapping, as_of: pd.Timestamp) -> pd.DataFrame:
    """:func:`features.build.scoring_frame` of one leads part file and its activities part file, read and
    checked as the local engine reads a table (errors name the part file and its row)."""
    leads = _read_part(
        leads_path, None, [mapping.id, mapping.created_at, *mapping.feature_columns, *mapping.manual_columns]
    )
    leads[mapping.created_at] = parsed(leads, mapping.created_at, leads_path, mapping, required=True)
    refuse_non_finite(leads, mapping.numeric, leads_path, mapping.missing_values)
    activities = _read_part(activities_path, [mapping.id, "occurred_at", "type"], [mapping.id, "occurred_at", "type"])
    activities["occurred_at"] = parsed(activities, "occurred_at", activities_path, mapping, required=True)
    if leads[mapping.id].duplicated().any():
        dup = leads.loc[leads[mapping.id].duplicated(), mapping.id].iloc[0]
        raise DataError(f"{leads_path}: column {mapping.id!r} has duplicate id {dup!r}")
    outcomes = pd.DataFrame({mapping.id: leads[mapping.id].iloc[:0]})  # scoring reads no outcomes once as_of is set
    return scoring_frame(CrmTables(leads, activities, outcomes), mapping, as_of)


def _read_part(path: Path, columns: list[str] | None, required: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path, columns=columns)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    require_columns(frame, list(dict.fromkeys(required)), path)
    return frame


def parsed(frame: pd.DataFrame, column: str, path: Path, mapping: Mapping, *, required: bool) -> pd.Series:
    """A timestamp column parsed with the mapping's format and checked for future values, as the local reader
    does (:func:`features.build.read_crm_tables`)."""
    parsed = parse_datetimes(frame, column, path, required=required, format=mapping.date_formats.get(column))
    refuse_future(parsed, column, path)
    return parsed


def _parts(folder: Path, stem: str) -> list[Path] | None:
    path = table_path(folder, stem)
    return sorted(path.glob("*.parquet")) if path.is_dir() else None


def _id_bounds(path: Path, column: str) -> tuple[str, Any, Any, int] | None:
    """(the id column's Parquet type, its smallest and largest value bounds, rows with no id) of a part file
    from its footer; bounds are None for a file without rows; None when the footer cannot tell."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (OSError, ValueError):
        return None
    names = [meta.schema.column(j).path for j in range(meta.num_columns)]
    if column not in names:
        return None
    j = names.index(column)
    kind = f"{meta.schema.column(j).physical_type}/{meta.schema.column(j).logical_type}"
    if meta.schema.column(j).physical_type not in ("BYTE_ARRAY", "INT32", "INT64"):
        return None
    low = high = None
    nulls = 0
    for g in range(meta.num_row_groups):
        chunk = meta.row_group(g).column(j)
        stats = chunk.statistics
        if chunk.num_values == 0:
            continue
        if stats is None or not stats.has_null_count:
            return None
        nulls += stats.null_count
        if stats.null_count == chunk.num_values:
            continue
        if not stats.has_min_max:
            return None
        low = stats.min if low is None else min(low, stats.min)
        high = stats.max if high is None else max(high, stats.max)
    return kind, low, high, nulls


def aligned_parts(folder: Path, mapping: Mapping) -> list[tuple[Path, Path]] | None:
    """Pairs (leads part, activities part) of the tables' part files, in file-name order, when every lead's
    rows are shown to lie in one pair; else None.

    Shown from the footers' lead-id bounds: as many activities parts as leads parts, the same id type, no
    lead without an id, the leads parts' ranges pairwise apart, and each activities part's range within its
    leads part's. A lead's activities then lie in its own pair (any other pair's range excludes its id),
    and an id twice in the leads lies within one part, where it is refused as the local engine does.
    """
    leads, activities = _parts(folder, mapping.tables.leads), _parts(folder, mapping.tables.activities)
    if not leads or not activities or len(leads) != len(activities):
        return None
    ranges, kinds = [], set()
    for lead_part, activity_part in zip(leads, activities, strict=True):
        own, theirs = _id_bounds(lead_part, mapping.id), _id_bounds(activity_part, mapping.id)
        if own is None or theirs is None or own[3]:
            return None
        kinds.update([own[0], theirs[0]])
        if len(kinds) > 1:
            return None
        if theirs[1] is not None and (own[1] is None or theirs[1] < own[1] or theirs[2] > own[2]):
            return None
        if own[1] is not None:
            ranges.append((own[1], own[2]))
    ranges.sort()
    if any(high >= low for (_, high), (low, _) in itertools.pairwise(ranges)):
        return None
    return list(zip(leads, activities, strict=True))


def newest_in_footers(folder: Path, mapping: Mapping) -> pd.Timestamp | None:
    """The default ``as_of`` (the newest timestamp of the three tables) from the part files' footers, when
    every table is a folder of parts whose timestamp columns are stored as timestamps with bounds; else None."""
    columns = {
        mapping.tables.leads: [mapping.created_at],
        mapping.tables.activities: ["occurred_at"],
        mapping.tables.outcomes: ["opportunity_created_at", "closed_at"],
    }
    newest = []
    for stem, names in columns.items():
        parts = _parts(folder, stem)
        if not parts:
            return None
        for path in parts:
            try:
                meta = pq.ParquetFile(path).metadata
            except (OSError, ValueError):
                return None
            paths = [meta.schema.column(j).path for j in range(meta.num_columns)]
            for name in names:
                if name not in paths:
                    return None
                j = paths.index(name)
                if "Timestamp" not in str(meta.schema.column(j).logical_type):
                    return None
                for g in range(meta.num_row_groups):
                    chunk = meta.row_group(g).column(j)
                    stats = chunk.statistics
                    if chunk.num_values == 0 or (stats is not None and stats.null_count == chunk.num_values):
                        continue
                    if stats is None or not stats.has_min_max:
                        return None
                    high = pd.Timestamp(stats.max)
                    newest.append(high.tz_convert("UTC").tz_localize(None) if high.tz is not None else high)
    if not newest or max(newest) > pd.Timestamp.now(tz="UTC").tz_localize(None):
        return None  # the reading pass refuses a timestamp from the future with its file and row
    return latest_of(newest)
