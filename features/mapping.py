"""The input mapping: where a user's columns are, in a YAML file, and loading data by it.

Two forms: ``crm`` (three tables: leads, activities, outcomes, as in ``features.schema``) and ``flat``
(one table with a label column, like most CRM exports). See ``data/mappings/`` for examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadscore.features import schema

M = TypeVar("M", bound=BaseModel)


class DataError(ValueError):
    """Input data or mapping that cannot be used; the message names the file, column or value."""


class ManualProcess(BaseModel):
    """A manual qualification process present in the data, scored on the same footing as the model.

    ``flag``: one yes/no column (e.g. an MQL flag); passed = yes.
    ``grade``: one column of levels (e.g. "High in Relevance"); passed = a level in ``passed``.
    ``score``: one numeric column (manual points); passed = value >= ``threshold``.
    ``count``: several yes/no columns (e.g. BANT); the number of yeses, passed = count >= ``threshold``.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: Literal["flag", "grade", "score", "count"]
    columns: list[str] = Field(min_length=1)
    passed: list[str] | None = None
    threshold: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ManualProcess:
        if self.kind in ("flag", "grade", "score") and len(self.columns) != 1:
            raise ValueError(f"manual process {self.name!r} of kind {self.kind!r} takes exactly one column")
        if self.kind == "grade" and not self.passed:
            raise ValueError(f"manual process {self.name!r} of kind 'grade' needs 'passed': the levels sent to sales")
        if self.kind in ("score", "count") and self.threshold is None:
            raise ValueError(f"manual process {self.name!r} of kind {self.kind!r} needs a 'threshold'")
        return self


class Label(BaseModel):
    """Flat form: the label column and the values that mean converted."""

    model_config = ConfigDict(extra="forbid")

    column: str
    positive: list[Any] = Field(default_factory=lambda: [1, True, "1", "yes", "Yes", "true", "True"])


class Tables(BaseModel):
    """CRM form: file names (``.parquet`` or ``.csv``) inside the data folder."""

    model_config = ConfigDict(extra="forbid")

    leads: str = "leads"
    activities: str = "activities"
    outcomes: str = "outcomes"


class Mapping(BaseModel):
    """Where a user's columns are and what they mean."""

    model_config = ConfigDict(extra="forbid")

    form: Literal["crm", "flat"]
    id: str = schema.LEAD_ID
    created_at: str | None = None
    label: Label | None = None
    tables: Tables = Field(default_factory=Tables)
    categorical: list[str] = Field(default_factory=list)
    numeric: list[str] = Field(default_factory=list)
    boolean: list[str] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=lambda: [""])
    exclude: list[str] = Field(default_factory=list)
    manual: list[ManualProcess] = Field(default_factory=list)
    segments: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    monotone: dict[str, Literal[-1, 1]] = Field(
        default_factory=dict,
        description="Numeric features whose increase never lowers (1) or never raises (-1) the score.",
    )

    @model_validator(mode="after")
    def _check(self) -> Mapping:
        if self.form == "flat" and self.label is None:
            raise ValueError("a flat mapping needs 'label: {column: ...}'")
        if self.form == "crm" and self.created_at is None:
            self.created_at = schema.CREATED_AT
        features = self.feature_columns
        clashes = sorted(set(features) & set(self.exclude))
        if clashes:
            raise ValueError(f"columns listed as features and in 'exclude': {clashes}")
        loose = sorted(set(self.monotone) - set(self.numeric) - set(self.boolean))
        if loose:
            raise ValueError(f"'monotone' names columns that are not numeric or boolean features: {loose}")
        manual = sorted({c for m in self.manual for c in m.columns} & set(features))
        if manual:
            raise ValueError(f"manual-process columns must not be model features too: {manual}")
        return self

    @property
    def feature_columns(self) -> list[str]:
        return [*self.categorical, *self.numeric, *self.boolean]

    @property
    def manual_columns(self) -> list[str]:
        return list(dict.fromkeys(c for m in self.manual for c in m.columns))


def default_crm_mapping() -> Mapping:
    """The mapping of leadscore's own CRM schema (what ``leadscore generate`` writes)."""
    return Mapping(
        form="crm",
        categorical=list(schema.FIRMOGRAPHIC_CATEGORICAL),
        numeric=list(schema.FIRMOGRAPHIC_NUMERIC),
        missing_values=["", "unknown", "Unknown"],
        exclude=list(schema.PII_COLUMNS),
        manual=[
            ManualProcess(name="MQL flag", kind="flag", columns=["is_mql"]),
            ManualProcess(name="Manual points", kind="score", columns=["manual_score"], threshold=60),
            ManualProcess(
                name="BANT",
                kind="count",
                columns=["bant_budget", "bant_authority", "bant_need", "bant_timing"],
                threshold=3,
            ),
        ],
        segments=["source", "company_size_band", "industry"],
    )


def load_yaml_model(path: Path, model: type[M], what: str) -> M:
    """Read a YAML file into a pydantic model; a bad file raises :class:`DataError` naming the file and the field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: {what} file not found") from None
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a {what} file must be a YAML mapping (key: value), got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise DataError(validation_error_text(str(path), exc)) from None


def validation_error_text(source: str, exc: ValidationError) -> str:
    """``<source>: field 'a.b': <what is wrong>`` for the first error of a pydantic validation."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{source}: field {where!r}: {first['msg']}"


def load_mapping(path: Path | None) -> Mapping:
    """Read and validate a mapping file; ``None`` gives the default CRM mapping."""
    return default_crm_mapping() if path is None else load_yaml_model(path, Mapping, "mapping")


def read_table(path: Path) -> pd.DataFrame:
    """Read a Parquet or CSV file; a clear error for a missing, unreadable or empty file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix in (".csv", ".txt"):
            frame = pd.read_csv(path, low_memory=False, keep_default_na=False, na_values=[""])
            frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed: ")])
        else:
            raise DataError(f"{path}: unsupported file type {path.suffix!r}; use .parquet or .csv")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: file is empty") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: cannot be read: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: file has no rows")
    return frame


def find_table(folder: Path, stem: str) -> Path:
    """``folder/stem`` as given, or with a ``.parquet`` / ``.csv`` suffix."""
    for candidate in (folder / stem, folder / f"{stem}.parquet", folder / f"{stem}.csv"):
        if candidate.is_file():
            return candidate
    raise DataError(f"{folder}: no {stem}.parquet or {stem}.csv")


def require_columns(frame: pd.DataFrame, columns: list[str], source: Path | str) -> None:
    """Fail with the file and the missing column names."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(
            f"{source}: column(s) {absent} named in the mapping are not in the file; it has {list(frame.columns)}"
        )


def parse_datetimes(frame: pd.DataFrame, column: str, source: Path | str, *, required: bool) -> pd.Series:
    """Parse a timestamp column to naive UTC; unparseable values name the file, column and value."""
    raw = frame[column]
    if pd.api.types.is_datetime64_any_dtype(raw):
        parsed = raw
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        bad = raw.notna() & parsed.isna()
        if bad.any():
            raise DataError(
                f"{source}: column {column!r} has unparseable date {raw[bad].iloc[0]!r} (row {int(bad.idxmax())})"
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    parsed = parsed.astype("datetime64[ns]")
    if required and parsed.isna().any():
        raise DataError(f"{source}: column {column!r} is empty in {int(parsed.isna().sum())} row(s)")
    return parsed
