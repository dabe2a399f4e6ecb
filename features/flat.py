"""The flat form's training frame: one table of leads (plus lookups joined by key), a label from a column or
from a conversions table, and nothing decided behind the user's back.

Invariants: every row is identified (by the mapping's id, unique, or by its row number, said in a note);
a label value matches as text, case-insensitively (see :class:`features.mapping.Label`), and a label that
matches no row or every row is refused with the values looked for and found; dates are read with one format
per column and none lies in the future; with a conversions table that has times and a ``created_at``, a
conversion counts within the horizon and leads whose horizon has not ended by ``as_of`` are left out
(censored), as in the CRM form; every column the mapping does not use is listed in ``unused``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import LABEL, TrainingFrame
from leadscore.features.dates import parse_dates, refuse_future
from leadscore.features.errors import DataError
from leadscore.features.mapping import Mapping, label_token, read_table, require_columns
from leadscore.features.reading import find_in
from leadscore.features.values import refuse_non_finite

ROW = "row"
TIME_LIKE = re.compile(r"(date|time|_at$|^at$|created|timestamp|day|month|year)", re.IGNORECASE)


def files_digest(paths: list[Path]) -> str:
    """sha256 over the names and bytes of ``paths`` (sorted by name): the main file, its lookups, its conversions."""
    digest = hashlib.sha256()
    for file in sorted(set(paths), key=lambda p: p.name):
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def related_path(main: Path, name: str) -> Path:
    """A lookup or conversions table named in the mapping: absolute, or beside the main data file."""
    path = Path(name)
    if path.is_absolute():
        return path
    folder = main.parent if main.is_file() else main
    return folder / name if (folder / name).exists() else find_in(folder, name)


def leads_path(path: Path, mapping: Mapping) -> Path:
    """The leads file: ``path`` itself, or ``tables.leads`` inside a folder."""
    path = Path(path)
    if path.is_dir():
        return find_in(path, mapping.tables.leads)
    return path


def examples(values: pd.Series, k: int = 3) -> str:
    return ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in values.head(k))


def join_lookups(table: pd.DataFrame, main: Path, mapping: Mapping, notes: list[str]) -> pd.DataFrame:
    """Left-join each lookup table by its key; a key repeated in a lookup (it would copy leads) is refused."""
    for lookup in mapping.lookups:
        path = related_path(main, lookup.table)
        right = read_table(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
        key = lookup.right_on or lookup.on
        require_columns(table, [lookup.on], main)
        require_columns(right, [key], path)
        dup = right[key].duplicated(keep=False) & right[key].notna()
        if dup.any():
            raise DataError(
                f"{path}: lookup key {key!r} repeats ({int(right.loc[dup, key].nunique())} value(s), e.g. "
                f"{examples(right.loc[dup, key].drop_duplicates())}); a lookup needs one row per key"
            )
        clash = [c for c in right.columns if c != key and c in table.columns]
        right = right.rename(columns={c: f"{path.stem}.{c}" for c in clash})
        if clash:
            notes.append(f"lookup {path.name}: columns also in the leads renamed {[f'{path.stem}.{c}' for c in clash]}")
        left_key = table[lookup.on]
        right_key = right[key]
        if left_key.dtype != right_key.dtype:  # an id read as a number in one file and as text in the other
            left_key, right_key = left_key.astype("string"), right_key.astype("string")
        right = right.assign(**{key: right_key})
        joined = table.assign(_key=left_key).merge(
            right.rename(columns={key: "_key"}), on="_key", how="left", validate="many_to_one", indicator=True
        )
        missed = int((joined["_merge"] == "left_only").sum())
        if missed:
            notes.append(
                f"lookup {path.name}: {missed} of {len(table)} leads have no row (their looked-up columns are missing)"
            )
        table = joined.drop(columns=["_key", "_merge"])
    return table


def drop_open_outcomes(table: pd.DataFrame, mapping: Mapping, path: Path, notes: list[str]) -> tuple[pd.DataFrame, int]:
    """Rows whose label is neither positive nor negative (when ``negative`` is given) have no outcome yet: left out."""
    label = mapping.label
    if label is None or label.negative_tokens is None:
        return table, 0
    require_columns(table, [label.column], path)
    tokens = table[label.column].map(label_token)
    known = tokens.isin(label.tokens | label.negative_tokens) & table[label.column].notna()
    if known.all():
        return table, 0
    if not known.any():
        raise DataError(
            f"{path}: label column {label.column!r}: no value is in 'positive' {sorted(label.tokens)} or 'negative' "
            f"{sorted(label.negative_tokens)}; found {examples(tokens.drop_duplicates(), 6)}"
        )
    open_values = tokens[~known].value_counts().head(4)
    notes.append(
        f"{int((~known).sum())} row(s) with an outcome not known yet left out (label "
        f"{', '.join(f'{v!r} ({n})' for v, n in open_values.items())})"
    )
    return table.loc[known.to_numpy()].reset_index(drop=True), int((~known).sum())


def label_from_column(table: pd.DataFrame, mapping: Mapping, path: Path) -> np.ndarray:
    assert mapping.label is not None
    column = mapping.label.column
    raw = table[column]
    if raw.isna().any():
        row = int(raw.isna().to_numpy().argmax())
        raise DataError(
            f"{path}: label column {column!r} is empty in {int(raw.isna().sum())} row(s), first at row {row + 1}"
        )
    tokens = raw.map(label_token)
    wanted = mapping.label.tokens
    y = tokens.isin(wanted).to_numpy()
    if y.all() or not y.any():
        found = tokens.value_counts().head(10)
        seen = ", ".join(f"{v!r} ({n})" for v, n in found.items())
        which = "no positive labels" if not y.any() else "every row is positive"
        raise DataError(
            f"{path}: label column {column!r}: {which}: looked for {sorted(wanted)} (as text, any case); "
            f"found {seen}; set 'label: {{positive: [...]}}' to the values that mean converted"
        )
    return y.astype(np.int8)


def label_from_conversions(
    table: pd.DataFrame,
    mapping: Mapping,
    path: Path,
    *,
    horizon_days: int,
    as_of: pd.Timestamp | None,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, dict[str, int], pd.Timestamp | None, int | None]:
    """(label, keep, excluded counts, as_of, horizon) from a conversions table."""
    spec = mapping.conversions
    assert spec is not None and mapping.id is not None
    conv_path = related_path(path, spec.table)
    conv = read_table(conv_path, delimiter=mapping.delimiter, encoding=mapping.encoding)
    require_columns(conv, [spec.id, *([spec.at] if spec.at else [])], conv_path)
    ids = table[mapping.id].astype("string")
    conv_ids = conv[spec.id].astype("string")
    unknown = ~conv_ids.isin(ids)
    if unknown.all():
        raise DataError(
            f"{conv_path}: no id in column {spec.id!r} matches the leads' {mapping.id!r} "
            f"(e.g. {examples(conv_ids)} against {examples(ids)})"
        )
    if unknown.any():
        notes.append(f"{conv_path.name}: {int(unknown.sum())} conversion(s) name ids not among the leads; ignored")
    n = len(table)
    if not spec.at or not mapping.created_at:
        if spec.at:
            notes.append("conversions have times but the leads have no created_at: no horizon, no censoring")
        return ids.isin(conv_ids).to_numpy().astype(np.int8), np.ones(n, dtype=bool), {}, as_of, None
    conv_at = parse_dates(conv, spec.at, conv_path, required=True, format=spec.format)
    refuse_future(conv_at, spec.at, conv_path)
    first = pd.Series(conv_at.to_numpy(), index=conv_ids.to_numpy()).groupby(level=0).min()
    event_at = first.reindex(ids.to_numpy()).to_numpy("datetime64[ns]")
    created = table[mapping.created_at].to_numpy("datetime64[ns]")
    before = event_at < created
    if before.any():
        notes.append(f"{int(before.sum())} conversion(s) dated before their lead's creation count at creation")
    if as_of is None:
        as_of = pd.Timestamp(
            max(
                pd.Timestamp(created.max()),
                pd.Timestamp(np.nanmax(event_at)) if (~np.isnat(event_at)).any() else pd.Timestamp(created.max()),
            )
        )
    as_of_ns = np.datetime64(as_of, "ns")
    event_at = np.where(event_at <= as_of_ns, event_at, np.datetime64("NaT"))
    horizon_end = created + np.timedelta64(horizon_days, "D")
    censored = horizon_end > as_of_ns
    y = (event_at <= horizon_end).astype(np.int8)
    excluded = {"horizon_not_elapsed": int(censored.sum())}
    if censored.all():
        raise DataError(
            f"{path}: all {n} leads are censored: each was created less than {horizon_days} days (--horizon-days) "
            f"before {as_of} (as of), so none has had its full horizon to convert; "
            "use a shorter --horizon-days or a later --as-of"
        )
    return y, ~censored, excluded, as_of, horizon_days


def time_like_columns(table: pd.DataFrame, used: set[str]) -> list[str]:
    """Columns that look like moments in time (by name or by holding dates)."""
    out = []
    for column in table.columns:
        if column in used:
            continue
        series = table[column]
        if pd.api.types.is_datetime64_any_dtype(series) or (
            TIME_LIKE.search(str(column)) and not pd.api.types.is_bool_dtype(series)
        ):
            out.append(str(column))
    return out


def build_flat(
    data: Path,
    mapping: Mapping,
    *,
    horizon_days: int = 90,
    as_of: str | pd.Timestamp | None = None,
) -> TrainingFrame:
    """The flat form's training frame (see the module docstring)."""
    path = leads_path(Path(data), mapping)
    table = read_table(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
    notes: list[str] = []
    warnings: list[str] = []
    table = join_lookups(table, path, mapping, notes)
    table, open_rows = drop_open_outcomes(table, mapping, path, notes)
    label_column = mapping.label.column if mapping.label else None
    needed = [
        *([label_column] if label_column else []),
        *mapping.feature_columns,
        *mapping.manual_columns,
        *mapping.segments,
        *([mapping.id] if mapping.id else []),
        *([mapping.created_at] if mapping.created_at else []),
        *([mapping.order] if mapping.order else []),
    ]
    require_columns(table, list(dict.fromkeys(needed)), path)
    refuse_non_finite(table, mapping.numeric, path, mapping.missing_values)

    if mapping.id is None:
        if ROW in table.columns:
            raise DataError(f"{path}: the mapping names no 'id' and the file has a column {ROW!r}: name the id column")
        table.insert(0, ROW, np.arange(1, len(table) + 1))
        notes.append(f"no 'id' in the mapping: rows are identified by their row number (column {ROW!r})")
    else:
        ids = table[mapping.id]
        if ids.isna().any():
            row = int(ids.isna().to_numpy().argmax())
            raise DataError(
                f"{path}: id column {mapping.id!r} is empty in {int(ids.isna().sum())} row(s), first at row {row + 1}"
            )
        dup = ids.duplicated(keep=False)
        if dup.any():
            raise DataError(
                f"{path}: id column {mapping.id!r} has {int(ids[dup].nunique())} duplicate id(s), e.g. "
                f"{examples(ids[dup].drop_duplicates())}; ids must be unique (or leave 'id' out to use row numbers)"
            )

    as_of_ts = pd.Timestamp(as_of) if as_of is not None else None
    if mapping.created_at:
        created = parse_dates(
            table, mapping.created_at, path, required=True, format=mapping.date_formats.get(mapping.created_at)
        )
        refuse_future(created, mapping.created_at, path)
        if as_of_ts is not None:
            refuse_future(created, mapping.created_at, path, as_of=as_of_ts)
        table[mapping.created_at] = created

    excluded: dict[str, int] = {"outcome_not_known": open_rows} if open_rows else {}
    horizon = None
    if mapping.conversions is not None:
        y, keep, censored, as_of_ts, horizon = label_from_conversions(
            table, mapping, path, horizon_days=horizon_days, as_of=as_of_ts, notes=notes
        )
        excluded.update(censored)
    else:
        y, keep = label_from_column(table, mapping, path), np.ones(len(table), dtype=bool)
    table[LABEL] = y

    rule = mapping.split or ("time" if mapping.created_at else "random")
    if mapping.order:
        order = table[mapping.order]
        if not pd.api.types.is_numeric_dtype(order):
            order = parse_dates(
                table, mapping.order, path, required=True, format=mapping.date_formats.get(mapping.order)
            )
        table = table.assign(_order=order.to_numpy()).sort_values("_order", kind="stable").drop(columns="_order")
        keep = keep[table.index.to_numpy()]
        rule = mapping.split or "file_order"
    elif rule == "time":
        order = table[mapping.created_at].sort_values(kind="stable").index.to_numpy()
        table, keep = table.loc[order], keep[order]
    table = table.loc[keep].reset_index(drop=True)
    if len(table) and (table[LABEL].all() or not table[LABEL].any()) and mapping.conversions is not None:
        counts = ", ".join(f"{k}: {v}" for k, v in excluded.items())
        raise DataError(
            f"{path}: after censoring ({counts}) the {len(table)} remaining leads are all "
            f"{'converted' if table[LABEL].all() else 'not converted'}; nothing to learn"
        )

    used = {
        *needed,
        *mapping.exclude,
        *(lk.on for lk in mapping.lookups),
        LABEL,
        ROW,
    }
    unused = [str(c) for c in table.columns if c not in used]
    if unused:
        notes.append(f"{len(unused)} column(s) not in the mapping's lists, not used: {unused}")
    if rule == "random":
        time_like = time_like_columns(table, used - set(unused))
        if mapping.created_at:
            time_like.insert(0, mapping.created_at)
        if time_like:
            warnings.append(
                f"random holdout split, but the data has time-like column(s) {time_like}: if rows are "
                "in time order say 'split: file_order', or name the timestamp as 'created_at', else the holdout "
                "mixes past and future and flatters the model"
            )
        else:
            notes.append("no timestamp: a seeded random holdout split (rows in time order? say 'split: file_order')")
    return TrainingFrame(
        frame=table,
        mapping=mapping,
        categorical=list(mapping.categorical),
        numeric=list(mapping.numeric),
        boolean=list(mapping.boolean),
        timed=rule == "time",
        target=label_column or f"converted ({mapping.conversions.table})",  # type: ignore[union-attr]
        horizon_days=horizon,
        as_of=as_of_ts,
        excluded=excluded,
        source=str(path),
        monotone=dict(mapping.monotone),
        notes=notes,
        warnings=warnings,
        unused=unused,
        split_rule=rule,
        digest=files_digest(
            [
                path,
                *(related_path(path, lk.table) for lk in mapping.lookups),
                *([related_path(path, mapping.conversions.table)] if mapping.conversions else []),
            ]
        ),
    )
