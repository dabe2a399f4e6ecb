"""The input mapping: where a user's columns are, in a YAML file, and loading data by it.

Two forms: ``crm`` (three tables: leads, activities, outcomes, as in ``features.schema``) and ``flat``
(one table with a label column, like most CRM exports). See ``data/mappings/`` for examples.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadscore.features import schema
from leadscore.features.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DataError", "Label", "ManualProcess", "Mapping", "load_mapping", "parse_datetimes", "read_table"]

M = TypeVar("M", bound=BaseModel)


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


TRUE_WORDS = ("true", "yes", "y", "t", "on", "1")
FALSE_WORDS = ("false", "no", "n", "f", "off", "0")


def label_token(value: object) -> str:
    """A label value as the text it matches on: stripped, lower case, ``1.0`` -> ``1``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip().lower()


class Label(BaseModel):
    """Flat form: the label column and the values that mean converted.

    Values match as text, case-insensitively; YAML's booleans (``yes``, ``true``, ``on`` read as true) match
    any of the words for true (``true``, ``yes``, ``y``, ``t``, ``on``, ``1``), and likewise for false.
    Without ``negative`` every other value is a non-conversion; with it, rows whose value is in neither list
    (an open deal: ``Engaging``, ``Prospecting``) have no outcome yet and are left out, counted.
    """

    model_config = ConfigDict(extra="forbid")

    column: str
    positive: list[Any] = Field(default_factory=lambda: [True], min_length=1)
    negative: list[Any] | None = None

    @property
    def tokens(self) -> set[str]:
        """Every text a label value may have to count as positive."""
        return _tokens_of(self.positive)

    @property
    def negative_tokens(self) -> set[str] | None:
        """Every text a label value may have to count as negative; ``None``: anything not positive."""
        return None if self.negative is None else _tokens_of(self.negative)


def _tokens_of(values: list[Any]) -> set[str]:
    out: set[str] = set()
    for value in values:
        if value is True:
            out.update(TRUE_WORDS)
        elif value is False:
            out.update(FALSE_WORDS)
        else:
            out.add(label_token(value))
    return out


class Lookup(BaseModel):
    """A lookup table joined to the leads by a key column (e.g. accounts by ``account``)."""

    model_config = ConfigDict(extra="forbid")

    table: str
    on: str
    right_on: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, raw: Any) -> Any:
        """YAML 1.1 reads the key ``on`` as the boolean true: take it back as ``on``."""
        if isinstance(raw, dict) and True in raw and "on" not in raw:
            raw = {("on" if k is True else k): v for k, v in raw.items()}
        return raw


class Conversions(BaseModel):
    """Flat form: a table of converted leads (``id``) and, when known, when they converted (``at``).

    A lead converted if its id appears in the table; with ``at`` and a ``created_at``, a conversion counts
    within ``--horizon-days`` of creation and leads whose horizon has not ended are left out (censored).
    """

    model_config = ConfigDict(extra="forbid")

    table: str
    id: str
    at: str | None = None
    format: str | None = None


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
    id: str | None = None
    created_at: str | None = None
    date_formats: dict[str, str] = Field(
        default_factory=dict, description="Column -> strptime format, for dates whose format must be given."
    )
    label: Label | None = None
    conversions: Conversions | None = None
    lookups: list[Lookup] = Field(default_factory=list)
    split: Literal["time", "file_order", "random"] | None = None
    order: str | None = None
    delimiter: str | None = None
    encoding: str | None = None
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

    @model_validator(mode="before")
    @classmethod
    def _dated_column(cls, raw: Any) -> Any:
        """``created_at: {column: c, format: f}`` is ``created_at: c`` with ``date_formats[c] = f``."""
        if isinstance(raw, dict) and isinstance(raw.get("created_at"), dict):
            raw = dict(raw)
            spec = dict(raw.pop("created_at"))
            column = spec.pop("column", None)
            fmt = spec.pop("format", None)
            if not isinstance(column, str) or spec:
                raise ValueError("'created_at' is a column name or {column: ..., format: ...}")
            raw["created_at"] = column
            if fmt is not None:
                raw["date_formats"] = {**raw.get("date_formats", {}), column: fmt}
        return raw

    @model_validator(mode="after")
    def _check(self) -> Mapping:
        if self.form == "flat" and self.label is None and self.conversions is None:
            raise ValueError("a flat mapping needs 'label: {column: ...}' or 'conversions: {table: ..., id: ...}'")
        if self.label is not None and self.conversions is not None:
            raise ValueError("give either 'label' (a column) or 'conversions' (a table), not both")
        if self.form == "crm" and self.created_at is None:
            self.created_at = schema.CREATED_AT
        if self.form == "crm" and self.id is None:
            self.id = schema.LEAD_ID
        if self.conversions is not None and self.id is None:
            raise ValueError("'conversions' are matched to leads by id: name the leads' 'id' column")
        if self.split == "time" and self.created_at is None:
            raise ValueError("'split: time' needs a 'created_at' column")
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
        raise DataError(f"{path}: not valid YAML: {yaml_error_text(exc)}") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a {what} file must be a YAML mapping (key: value), got {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise DataError(validation_error_text(str(path), exc)) from None


def yaml_error_text(exc: yaml.YAMLError) -> str:
    """A YAML parse error on one line, with the line and column it points at."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def validation_error_text(source: str, exc: ValidationError) -> str:
    """``<source>: field 'a.b': <what is wrong>`` for the first error of a pydantic validation."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{source}: field {where!r}: {first['msg']}"


def load_mapping(path: Path | None) -> Mapping:
    """Read and validate a mapping file; ``None`` gives the default CRM mapping."""
    return default_crm_mapping() if path is None else load_yaml_model(path, Mapping, "mapping")


def read_table(path: Path, *, delimiter: str | None = None, encoding: str | None = None) -> pd.DataFrame:
    """Read a Parquet, CSV (delimiter and encoding sniffed) or Excel file; see :mod:`features.reading`."""
    from leadscore.features.reading import read_file

    return read_file(path, delimiter=delimiter, encoding=encoding)


def find_table(folder: Path, stem: str) -> Path:
    """``folder/stem`` as given, or with a ``.parquet`` / ``.csv`` / ``.xlsx`` ... suffix."""
    from leadscore.features.reading import find_in

    return find_in(Path(folder), stem)


def require_columns(frame: pd.DataFrame, columns: list[str], source: Path | str) -> None:
    """Fail with the file and the missing column names."""
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise DataError(
            f"{source}: column(s) {absent} named in the mapping are not in the file; it has {list(frame.columns)}"
        )


def parse_datetimes(
    frame: pd.DataFrame, column: str, source: Path | str, *, required: bool, format: str | None = None
) -> pd.Series:
    """Parse a timestamp column to naive UTC with one format for all its values (given or detected from all of
    them, never guessed per value); see :mod:`features.dates`."""
    from leadscore.features.dates import parse_dates

    return parse_dates(frame, column, source, required=required, format=format)
