"""``leadscore inspect``: read an export as it is and draft the mapping that trains on it, with a reason per choice.

What it decides, per column: the id (unique, id-like) or none; timestamps with their format (an ambiguous
day/month order is left for the user to settle, never guessed); the label (a yes/no column named like one,
or a conversions table whose ids are a subset of the leads' ids); the kind (categorical, numeric, boolean,
free text or id-like to skip); the missing-value tokens seen; and leakage suspects, excluded with their
reason: names that look post-outcome, columns filled mostly for one label value, columns whose own holdout
AUC is implausibly high, constant columns. The draft is a valid mapping: ``train`` runs on it unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.dates import detect_format
from leadscore.features.errors import DataError
from leadscore.features.mapping import FALSE_WORDS, TRUE_WORDS, ManualProcess, default_crm_mapping, label_token
from leadscore.features.reading import SUFFIXES, read_file

# Not "na" nor "none": "NA" is North America in a region column, "None" an answer in a form.
MISSING_TOKENS = ("", "unknown", "select", "n/a", "-", "--", "null", "nan", "?", "not provided", "not set")
POST_OUTCOME = re.compile(
    r"(close|closed|won\b|_won|lost|stage|status|convert|tags?\b|last.?activity|last.?notable|outcome|result|churn|"
    r"quality|reason|opportunit|deal|signed|paid|revenue_won)",
    re.IGNORECASE,
)
ID_NAME = re.compile(r"(^id$|_id$|^id_|\bid$|^id\b|number$|\bno$|uuid|guid|key$|\bref$|code$)", re.IGNORECASE)
LABEL_NAME = re.compile(
    r"^(y|label|target|converted|conversion|is_converted|won|is_won|outcome|result|purchased|subscribed|"
    r"is_customer|closed_won|deposit|sale)$",
    re.IGNORECASE,
)
PII_NAME = re.compile(
    r"(^name$|first.?name|last.?name|full.?name|contact.?name|phone|mobile|e-?mail|address|street|zip|postal)",
    re.IGNORECASE,
)
CREATED_NAME = re.compile(r"(creat|first|signup|sign_up|submit|added|contact_date|lead_date|entered|date$)", re.I)
TIME_NAME = re.compile(r"(date|time|_at$|created|timestamp|\bday\b|month|year|week)", re.IGNORECASE)
DATE_LIKE = re.compile(r"^\s*(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{1,2}[ -][A-Za-z]{3}|[A-Za-z]{3,9} \d{1,2},)")
CRM_STEMS = ("leads", "activities", "outcomes")
AUC_SUSPECT = 0.9
FILL_GAP_SUSPECT = 0.5
LEAKAGE_MIN_ROWS = 50


@dataclass
class Column:
    """What inspect found in one column and what the draft does with it."""

    name: str
    kind: str = "categorical"  # id | timestamp | label | categorical | numeric | boolean | text | constant
    distinct: int = 0
    missing: int = 0
    tokens: dict[str, int] = field(default_factory=dict)
    date_format: str | None = None
    role: str = "feature"  # feature | id | created_at | label | exclude | skip | key
    reason: str = ""
    top: list[str] = field(default_factory=list)
    auc: float | None = None


@dataclass
class Draft:
    """An inspected export and the mapping drafted for it."""

    path: Path
    form: str
    main: Path
    rows: int
    columns: list[Column]
    id: str | None = None
    created_at: str | None = None
    created_format: str | None = None
    label: str | None = None
    positive: str | None = None
    label_values: dict[str, int] = field(default_factory=dict)
    negative: list[str] | None = None
    known: np.ndarray | None = None  # rows whose outcome is known (a deal stage label with open stages)
    conversions: dict[str, str] | None = None
    lookups: list[dict[str, str]] = field(default_factory=list)
    split: str | None = None
    split_reason: str = ""
    delimiter: str | None = None
    notes: list[str] = field(default_factory=list)
    manual: list[ManualProcess] = field(default_factory=list)

    def by_role(self, role: str) -> list[Column]:
        return [c for c in self.columns if c.role == role]

    @property
    def missing_values(self) -> list[str]:
        seen: dict[str, int] = {"": 0}
        for column in self.columns:
            for token, n in column.tokens.items():
                seen[token] = seen.get(token, 0) + n
        return list(seen)


def _is_missing_text(text: pd.Series) -> pd.Series:
    return text.isna() | text.str.strip().str.lower().isin(MISSING_TOKENS)


def _tokens(raw: pd.Series) -> dict[str, int]:
    if pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        return {}
    text = raw.dropna().astype(str)
    hit = text[text.str.strip().str.lower().isin(MISSING_TOKENS) & (text != "")]
    return {str(k): int(v) for k, v in hit.value_counts().items()}


def auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """ROC AUC by ranks (ties averaged); ``None`` when one class is absent."""
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    if n1 == 0 or n0 == 0:
        return None
    ranks = pd.Series(score).rank(method="average").to_numpy()
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def single_column_auc(values: pd.Series, missing: pd.Series, y: np.ndarray, kind: str, seed: int = 0) -> float | None:
    """Holdout AUC of one column alone (target rate per value, or the number itself), folded to >= 0.5."""
    n = len(values)
    holdout = np.random.default_rng(seed).random(n) < 0.3
    if holdout.sum() < 10 or (~holdout).sum() < 10:
        return None
    if kind == "numeric":
        score = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
        score = np.where(np.isnan(score), np.nanmedian(score) if np.isfinite(score).any() else 0.0, score)
    else:
        key = values.astype(str).where(~missing, "<missing>")
        rates = pd.Series(y[~holdout]).groupby(key[~holdout].to_numpy()).mean()
        score = key.map(rates).fillna(y[~holdout].mean()).to_numpy(dtype=float)
    found = auc(score[holdout], y[holdout])
    return None if found is None else max(found, 1 - found)


def profile(raw: pd.Series, name: str) -> Column:
    """Kind, distinct values, missing count and tokens of one column (no label needed)."""
    col = Column(name=name, tokens=_tokens(raw))
    if pd.api.types.is_datetime64_any_dtype(raw):
        col.kind, col.date_format = "timestamp", "native"
        col.missing, col.distinct = int(raw.isna().sum()), int(raw.nunique())
        return col
    text = raw.astype("string")
    missing = _is_missing_text(text) if not pd.api.types.is_numeric_dtype(raw) else raw.isna()
    present = raw[~missing.to_numpy()]
    col.missing, col.distinct = int(missing.sum()), int(present.nunique())
    col.top = [str(v) for v in present.astype(str).value_counts().head(5).index]
    if col.distinct <= 1:
        col.kind = "constant"
        return col
    words = {label_token(v) for v in present.unique()[:3]} if col.distinct == 2 else set()
    if pd.api.types.is_bool_dtype(raw) or (col.distinct == 2 and words <= set(TRUE_WORDS) | set(FALSE_WORDS)):
        col.kind = "boolean"
        return col
    numeric = pd.api.types.is_numeric_dtype(raw) or pd.to_numeric(present, errors="coerce").notna().all()
    unique_per_row = col.distinct == len(present) and len(present) >= 20
    if numeric:
        col.kind = "id" if unique_per_row and ID_NAME.search(name) else "numeric"
        return col
    sample = present.astype(str).head(200)
    if TIME_NAME.search(name) or sample.str.match(DATE_LIKE).mean() > 0.8:
        try:
            found = detect_format(present, name, "")
            col.kind, col.date_format = "timestamp", found.format
            return col
        except DataError as exc:
            if "both day-first and month-first" in str(exc):
                col.kind, col.date_format = "timestamp", "ambiguous"
                col.reason = "day/month order undecidable from the values"
                return col
    lengths = sample.str.len()
    if PII_NAME.search(name):
        col.kind = "id"
        col.reason = "personal data (name, e-mail, phone or address)"
    elif present.astype(str).str.contains("@").mean() > 0.8:
        col.kind = "id"
        col.reason = "e-mail addresses (personal data, unique per lead)"
    elif unique_per_row and lengths.mean() < 40:
        col.kind = "id"
    elif col.distinct > 0.5 * len(present) and (lengths.mean() > 25 or col.distinct > 1000):
        col.kind = "text"
    return col


def _relations(tables: dict[Path, pd.DataFrame]) -> tuple[Path, dict[str, str] | None, list[dict[str, str]]]:
    """(main table, conversions spec, lookups) among several files, by keys and value containment."""
    unique_cols = {
        p: [c for c in t.columns if t[c].notna().all() and t[c].is_unique and not pd.api.types.is_float_dtype(t[c])]
        for p, t in tables.items()
    }
    conversions: dict[Path, tuple[Path, str, str]] = {}
    for conv_path, conv in tables.items():
        for main_path, main in tables.items():
            if main_path == conv_path or len(conv) >= len(main):
                continue
            for key in unique_cols[main_path]:
                for column in conv.columns:
                    values = conv[column].dropna().astype(str)
                    if len(values) and values.isin(set(main[key].astype(str))).mean() > 0.95:
                        if column == key or ID_NAME.search(str(column)):
                            conversions[conv_path] = (main_path, key, str(column))
    if conversions:
        conv_path, (main_path, key, column) = next(iter(conversions.items()))
        conv = tables[conv_path]
        stamps = [profile(conv[c], str(c)) for c in conv.columns if c != column]
        stamps = [c for c in stamps if c.kind == "timestamp" and c.date_format != "ambiguous"]
        spec = {"table": conv_path.name, "id": column, "key": key}
        if stamps:
            spec["at"] = stamps[0].name
            if stamps[0].date_format not in (None, "native", "ISO8601"):
                spec["format"] = stamps[0].date_format
    else:
        main_path = max(tables, key=lambda p: (len(tables[p]), len(tables[p].columns)))
        spec = None
    main = tables[main_path]
    lookups = []
    for path in tables:
        if path == main_path or (conversions and path in conversions):
            continue
        for key in unique_cols[path]:
            if key in main.columns:
                lookups.append({"table": path.name, "on": str(key)})
                break
    return main_path, spec, lookups


def _read_all(path: Path) -> dict[Path, pd.DataFrame]:
    if path.is_file():
        return {path: read_file(path)}
    if not path.is_dir():
        raise DataError(f"{path}: file or folder not found")
    files = sorted(
        p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise DataError(f"{path}: no {', '.join(SUFFIXES)} file in the folder")
    return {p: read_file(p) for p in files}


def inspect_export(path: Path) -> Draft:
    """Read ``path`` (a file, or a folder of related files) and draft its mapping (see the module docstring)."""
    path = Path(path)
    tables = _read_all(path)
    stems = {p.stem for p in tables}
    if path.is_dir() and set(CRM_STEMS) <= stems:
        main_path = next(p for p in tables if p.stem == "leads")
        return _draft(path, "crm", main_path, tables[main_path], None, [], tables)
    if len(tables) == 1:
        main_path, conversions, lookups = next(iter(tables)), None, []
    else:
        main_path, conversions, lookups = _relations(tables)
    main = tables[main_path]
    for lookup in lookups:
        right = tables[main_path.parent / lookup["table"]]
        clash = [c for c in right.columns if c != lookup["on"] and c in main.columns]
        main = main.merge(right.drop(columns=clash), on=lookup["on"], how="left")
    return _draft(path, "flat", main_path, main, conversions, lookups, tables)


def _draft(
    path: Path,
    form: str,
    main_path: Path,
    table: pd.DataFrame,
    conversions: dict[str, str] | None,
    lookups: list[dict[str, str]],
    tables: dict[Path, pd.DataFrame],
) -> Draft:
    columns = [profile(table[c], str(c)) for c in table.columns]
    draft = Draft(path, form, main_path, len(table), columns, lookups=lookups)
    by_name = {c.name: c for c in columns}
    for lookup in lookups:
        by_name[lookup["on"]].role, by_name[lookup["on"]].reason = "key", f"joins {lookup['table']}"

    if form == "crm":
        draft.id, draft.created_at = "lead_id", "created_at"
        for name in ("lead_id", "created_at"):
            if name in by_name:
                by_name[name].role = "id" if name == "lead_id" else "created_at"
                by_name[name].reason = "leadscore's CRM schema"
        present = set(table.columns)
        draft.manual = [m for m in default_crm_mapping().manual if set(m.columns) <= present]
        for process in draft.manual:
            for name in process.columns:
                by_name[name].role = "manual"
                by_name[name].reason = f"manual process {process.name!r}: compared with the model, not a feature"
    else:
        _choose_id(draft, by_name, conversions)
        _choose_label(draft, table, conversions, tables)
        _choose_created(draft, table)
    y = _label_vector(draft, table, tables)
    known = draft.known if draft.known is not None else np.ones(len(table), dtype=bool)
    for col in columns:
        if col.role != "feature":
            continue
        _decide(col, table.loc[known].reset_index(drop=True), None if y is None else y[known])
    if form == "flat" and draft.created_at is None:
        _choose_split(draft, table)
    return draft


def _choose_id(draft: Draft, by_name: dict[str, Column], conversions: dict[str, str] | None) -> None:
    if conversions is not None:
        key = by_name[conversions["key"]]
        key.role, key.reason, key.kind = "id", f"unique; the ids {conversions['table']} refers to", "id"
        draft.id = key.name
        draft.conversions = {k: v for k, v in conversions.items() if k != "key"}
        return
    ids = [c for c in draft.columns if c.kind == "id" and c.role == "feature" and "@" not in "".join(c.top)]
    named = [c for c in ids if ID_NAME.search(c.name)]
    chosen = (named or ids or [None])[0]
    if chosen is None:
        draft.notes.append("no unique id-like column: rows are identified by their row number")
        return
    chosen.role, chosen.reason = "id", "unique per row, id-like"
    draft.id = chosen.name


def _choose_created(draft: Draft, table: pd.DataFrame) -> None:
    """The creation timestamp: named like one, not post-outcome, never empty on a row with a known outcome."""
    stamps = [c for c in draft.columns if c.kind == "timestamp" and c.role == "feature"]
    usable = [c for c in stamps if not POST_OUTCOME.search(c.name)]
    preferred = sorted(usable, key=lambda c: (not CREATED_NAME.search(c.name), c.missing))
    known = draft.known if draft.known is not None else np.ones(len(table), dtype=bool)
    for column in preferred:
        if _is_missing_text(table[column.name].astype("string")).to_numpy()[known].any():
            continue
        if column.date_format == "ambiguous":
            column.role = "exclude"
            column.reason = (
                "dates read both day-first and month-first: set created_at: {column: ..., format: ...} to use it"
            )
            draft.notes.append(f"{column.name!r} could be the creation time, but its day/month order is undecidable")
            continue
        column.role, column.reason = "created_at", f"timestamp, format {column.date_format}"
        draft.created_at, draft.created_format = column.name, column.date_format
        break
    for column in stamps:
        if column.role == "feature":
            column.role = "exclude"
            column.reason = column.reason or (
                "timestamp named like a post-outcome event" if POST_OUTCOME.search(column.name) else "another timestamp"
            )


def _choose_label(
    draft: Draft, table: pd.DataFrame, conversions: dict[str, str] | None, tables: dict[Path, pd.DataFrame]
) -> None:
    if conversions is not None:
        return
    binary = [c for c in draft.columns if c.role == "feature" and c.distinct == 2 and c.missing == 0]
    named = [c for c in binary if LABEL_NAME.match(c.name.strip())]
    loose = [c for c in binary if re.search(r"convert|won|purchase|subscri|signed|deposit", c.name, re.I)]
    chosen = (named or loose or [None])[0]
    if chosen is None and _choose_stage_label(draft, table):
        return
    if chosen is None:
        draft.notes.append("no label column found: set 'label: {column: ..., positive: [...]}' or a conversions table")
        return
    chosen.role, chosen.kind = "label", "label"
    values = table[chosen.name].map(label_token).value_counts()
    draft.label_values = {str(k): int(v) for k, v in values.items()}
    true_like = [v for v in values.index if v in TRUE_WORDS]
    draft.label = chosen.name
    draft.positive = true_like[0] if true_like else str(values.index[-1])
    chosen.reason = (
        f"yes/no column named like a label; positive {draft.positive!r}"
        if true_like
        else f"two values; the rarer, {draft.positive!r}, taken as converted: check it"
    )


def _choose_stage_label(draft: Draft, table: pd.DataFrame) -> bool:
    """A deal stage column (``Won`` / ``Lost`` / open stages) as the label: won positive, lost negative, the
    open stages left out (their outcome is not known yet)."""
    for col in draft.columns:
        if col.role != "feature" or col.kind != "categorical" or col.distinct > 20:
            continue
        tokens = table[col.name].map(label_token)
        values = tokens.value_counts()
        won = [v for v in values.index if re.fullmatch(r"(closed[ _-]?)?won", str(v))]
        if not won:
            continue
        lost = [v for v in values.index if re.fullmatch(r"(closed[ _-]?)?lost", str(v))]
        col.role, col.kind = "label", "label"
        draft.label, draft.positive, draft.negative = col.name, won[0], lost or None
        draft.label_values = {str(k): int(v) for k, v in values.items()}
        if lost:
            draft.known = tokens.isin([*won, *lost]).to_numpy()
            col.reason = f"deal stage: {won[0]!r} converted, {lost!r} not, other stages open (left out)"
        else:
            col.reason = f"deal stage: {won[0]!r} converted, every other value not"
        return True
    return False


def _label_vector(draft: Draft, table: pd.DataFrame, tables: dict[Path, pd.DataFrame]) -> np.ndarray | None:
    if draft.label is not None:
        return (table[draft.label].map(label_token) == draft.positive).to_numpy().astype(np.int8)
    if draft.conversions is not None and draft.id is not None:
        conv = tables[draft.main.parent / draft.conversions["table"]]
        ids = set(conv[draft.conversions["id"]].astype(str))
        return table[draft.id].astype(str).isin(ids).to_numpy().astype(np.int8)
    return None


def _decide(col: Column, table: pd.DataFrame, y: np.ndarray | None) -> None:
    """Role of a feature candidate: a feature, skipped (kind) or excluded (a leakage suspect, with the reason)."""
    if col.kind == "constant":
        col.role, col.reason = "exclude", "constant: carries no information"
        return
    if col.kind in ("id", "text", "timestamp"):
        col.role = "skip"
        col.reason = col.reason or {"id": "id-like: unique per row", "text": "free text"}.get(col.kind, "timestamp")
        return
    if POST_OUTCOME.search(col.name):
        col.role, col.reason = "exclude", "leakage suspect: name looks post-outcome"
        return
    if y is None or len(y) < LEAKAGE_MIN_ROWS or y.sum() == 0 or y.sum() == len(y):
        return
    raw = table[col.name]
    missing = (raw.isna() if pd.api.types.is_numeric_dtype(raw) else _is_missing_text(raw.astype("string"))).to_numpy()
    filled1, filled0 = (~missing)[y == 1].mean(), (~missing)[y == 0].mean()
    if abs(filled1 - filled0) >= FILL_GAP_SUSPECT:
        col.role = "exclude"
        col.reason = f"leakage suspect: filled for {filled1:.0%} of converted leads, {filled0:.0%} of the others"
        return
    col.auc = single_column_auc(raw, pd.Series(missing), y, col.kind)
    if col.auc is not None and col.auc > AUC_SUSPECT:
        col.role = "exclude"
        col.reason = f"leakage suspect: predicts the label alone with holdout AUC {col.auc:.2f}"


def _choose_split(draft: Draft, table: pd.DataFrame) -> None:
    """Without a timestamp: file order when a time-like column comes in runs (rows sorted by time), else random."""
    for col in draft.columns:
        if col.role in ("feature", "skip") and TIME_NAME.search(col.name) and col.distinct >= 2:
            values = table[col.name].astype(str).to_numpy()
            changes = int((values[1:] != values[:-1]).sum())
            if changes <= 2 * col.distinct:
                draft.split = "file_order"
                draft.split_reason = f"no timestamp, but {col.name!r} comes in runs: rows look sorted by time"
                return
    draft.split = "random"
    draft.split_reason = "no timestamp: a seeded random holdout (if rows are in time order, use file_order)"


def _q(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def mapping_yaml(draft: Draft) -> str:
    """The draft as a mapping file: valid YAML that ``train`` reads, each choice with its reason as a comment."""
    out = [
        f"# Drafted by `leadscore inspect` from {draft.main.name} ({draft.rows:,} rows). Check each choice, then:",
        f"#   leadscore train --data {draft.path} --config <this file>",
        f"form: {draft.form}",
    ]
    if draft.form == "flat" and draft.main != draft.path:
        out.append("tables:")
        out.append(f"  leads: {_q(draft.main.name)}")
    if draft.id:
        reason = next((c.reason for c in draft.columns if c.name == draft.id), "")
        out.append(f"id: {_q(draft.id)}  # {reason}")
    elif draft.form == "flat":
        out.append("# id: none found; rows are identified by their row number")
    if draft.created_at and draft.form == "flat":
        fmt = draft.created_format
        if fmt in (None, "native", "ISO8601"):
            out.append(
                f"created_at: {_q(draft.created_at)}  # timestamp ({fmt or 'native'}): time split, newest rows held out"
            )
        else:
            out.append(
                f"created_at: {{column: {_q(draft.created_at)}, format: {_q(fmt)}}}  # format read from all values"
            )
    if draft.split:
        out.append(f"split: {draft.split}  # {draft.split_reason}")
    if draft.label:
        seen = ", ".join(f"{k} ({v})" for k, v in draft.label_values.items())
        negative = f", negative: [{', '.join(_q(v) for v in draft.negative)}]" if draft.negative else ""
        out.append(
            f"label: {{column: {_q(draft.label)}, positive: [{_q(draft.positive or '')}]{negative}}}  # values: {seen}"
        )
    elif draft.conversions:
        spec = ", ".join(f"{k}: {_q(v)}" for k, v in draft.conversions.items())
        out.append(f"conversions: {{{spec}}}  # a lead converted if its id appears in {draft.conversions['table']}")
    elif draft.form == "flat":
        out.append("label: {column: EDIT_ME, positive: [yes]}  # no label column found: name it here")
    if draft.lookups:
        out.append("lookups:")
        out.extend(f"  - {{table: {_q(lk['table'])}, on: {_q(lk['on'])}}}" for lk in draft.lookups)
    for kind in ("categorical", "numeric", "boolean"):
        chosen = [c for c in draft.columns if c.role == "feature" and c.kind == kind]
        if not chosen:
            continue
        out.append(f"{kind}:")
        for c in chosen:
            extra = f", {c.missing:,} missing" if c.missing else ""
            out.append(f"  - {_q(c.name)}  # {c.distinct:,} values{extra}")
    out.append(f"missing_values: [{', '.join(_q(v) for v in draft.missing_values)}]  # tokens seen in the data")
    excluded = [c for c in draft.columns if c.role in ("exclude", "skip", "key", "manual")]
    if excluded:
        out.append("exclude:")
        out.extend(f"  - {_q(c.name)}  # {c.reason}" for c in excluded)
    if draft.manual:
        out.append("manual:  # the manual qualification, judged on the same holdout as the model")
        out.extend("  - " + json.dumps(p.model_dump(exclude_none=True), ensure_ascii=False) for p in draft.manual)
    out.extend(f"# note: {note}" for note in draft.notes)
    return "\n".join(out) + "\n"


def summary_rows(draft: Draft) -> list[tuple[str, str, str, str, str]]:
    """(column, kind, missing, values, decision) per column, for the printed table."""
    rows = []
    for c in draft.columns:
        missing = f"{c.missing:,}" + (f" ({', '.join(c.tokens)})" if c.tokens else "")
        kind = c.kind + (f" {c.date_format}" if c.date_format and c.date_format != "native" else "")
        decision = c.role + (f": {c.reason}" if c.reason else "")
        rows.append((c.name, kind, missing, f"{c.distinct:,}", decision))
    return rows
