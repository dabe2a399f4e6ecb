"""A points-based manual qualification process, written the way Marketo / Mautic users write scoring rules.

A YAML rules file gives points when a lead matches a condition, an optional decay of those points with
inactivity, and the MQL threshold::

    name: Example points
    threshold: 50                      # MQL when points >= threshold
    decay:                             # optional: points halve every 14 days since the last activity
      column: days_since_last_activity
      every_days: 14
      factor: 0.5
    rules:
      - when: {column: seniority, in: [c_level, vp]}
        points: 20
        decays: false                  # fit (demographic) points do not decay; behaviour points do (default)
      - when: {column: pricing_page_view_total, gte: 2}
        points: 15
      - when: [{column: employees, gte: 100}, {column: employees, lt: 1000}]   # a list: all must hold
        points: 10

Operators: ``in``, ``not_in``, ``eq``, ``ne``, ``contains`` (text, case-insensitive, after trimming),
``gt``, ``gte``, ``lt``, ``lte``, ``between: [low, high]`` (inclusive; numbers), ``missing: true|false``.
A missing value matches nothing but ``missing: true``. Points may be negative. Decay multiplies the
points of decaying rules by ``factor ** floor(days / every_days)``; a lead with no recorded activity
(missing days) is not decayed.

:class:`PointRulesClassifier` is the process as an sklearn-style estimator: ``passed(X)`` is the MQL
decision; ``predict_proba`` is a logistic curve of points fitted on the training leads, so the process
gets ranking and calibration metrics on the same footing as the model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from leadscore.features.columns import encode_numeric
from leadscore.features.mapping import DataError, load_yaml_model, validation_error_text

Scalar = str | float | bool
TEXT_OPS = ("in", "not_in", "eq", "ne", "contains")
NUMBER_OPS = ("gt", "gte", "lt", "lte", "between")


class Condition(BaseModel):
    """One test on one column; several operators on the same condition must all hold."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    column: str = Field(min_length=1)
    in_: list[Scalar] | None = Field(default=None, alias="in", min_length=1)
    not_in: list[Scalar] | None = Field(default=None, min_length=1)
    eq: Scalar | None = None
    ne: Scalar | None = None
    contains: list[str] | str | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    between: tuple[float, float] | None = None
    missing: bool | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        used = [name for name in ("in_", *TEXT_OPS[1:], *NUMBER_OPS, "missing") if getattr(self, name) is not None]
        if not used:
            ops = ", ".join(["in", *TEXT_OPS[1:], *NUMBER_OPS, "missing"])
            raise ValueError(f"condition on {self.column!r} has no operator; use one of: {ops}")
        if self.between is not None and self.between[0] > self.between[1]:
            raise ValueError(
                f"'between' on {self.column!r} needs [low, high] with low <= high; got {list(self.between)}"
            )
        return self


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    when: Condition | list[Condition]
    points: float
    decays: bool = True
    name: str | None = None

    @property
    def conditions(self) -> list[Condition]:
        return self.when if isinstance(self.when, list) else [self.when]

    @model_validator(mode="after")
    def _nonempty(self) -> Rule:
        if isinstance(self.when, list) and not self.when:
            raise ValueError("'when' needs at least one condition")
        return self


class Decay(BaseModel):
    model_config = ConfigDict(extra="forbid")

    column: str = "days_since_last_activity"
    every_days: float = Field(gt=0)
    factor: float = Field(default=0.5, gt=0, le=1)


class PointRules(BaseModel):
    """A whole rules file."""

    model_config = ConfigDict(extra="forbid")

    name: str = "Point rules"
    threshold: float
    rules: list[Rule] = Field(min_length=1)
    decay: Decay | None = None

    @property
    def columns(self) -> list[str]:
        cols = [c.column for r in self.rules for c in r.conditions]
        if self.decay is not None:
            cols.append(self.decay.column)
        return list(dict.fromkeys(cols))


def load_point_rules(path: Path) -> PointRules:
    """Read and validate a rules file; a bad file raises :class:`DataError` naming the file and the field."""
    return load_yaml_model(path, PointRules, "rules")


def _text(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip().casefold()


def _missing_mask(values: np.ndarray, missing: frozenset[str]) -> np.ndarray:
    return np.fromiter(
        (
            v is None
            or v is pd.NA
            or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and v.strip() in missing)
            for v in values
        ),
        dtype=bool,
        count=len(values),
    )


def condition_mask(condition: Condition, X: pd.DataFrame, missing_values: tuple[str, ...] = ("",)) -> np.ndarray:
    """Which rows meet one condition (missing values meet only ``missing: true``)."""
    values = X[condition.column].to_numpy(dtype=object)
    missing = _missing_mask(values, frozenset(missing_values))
    ok = np.ones(len(values), dtype=bool)
    if condition.missing is not None:
        ok &= missing if condition.missing else ~missing
    if any(getattr(condition, op) is not None for op in ("in_", *TEXT_OPS[1:])):
        text = np.array([_text(v) for v in values], dtype=object)
        if condition.in_ is not None:
            ok &= np.isin(text, [_text(v) for v in condition.in_])
        if condition.not_in is not None:
            ok &= ~np.isin(text, [_text(v) for v in condition.not_in])
        if condition.eq is not None:
            ok &= text == _text(condition.eq)
        if condition.ne is not None:
            ok &= text != _text(condition.ne)
        if condition.contains is not None:
            needles = [condition.contains] if isinstance(condition.contains, str) else condition.contains
            needles = [_text(n) for n in needles]
            ok &= np.array([any(n in t for n in needles) for t in text], dtype=bool)
        ok &= ~missing
    if any(getattr(condition, op) is not None for op in NUMBER_OPS):
        number = encode_numeric(
            [float(v) if isinstance(v, bool | np.bool_) else v for v in values], frozenset(missing_values)
        )
        known = ~np.isnan(number)
        with np.errstate(invalid="ignore"):
            if condition.gt is not None:
                ok &= number > condition.gt
            if condition.gte is not None:
                ok &= number >= condition.gte
            if condition.lt is not None:
                ok &= number < condition.lt
            if condition.lte is not None:
                ok &= number <= condition.lte
            if condition.between is not None:
                ok &= (number >= condition.between[0]) & (number <= condition.between[1])
        ok &= known
    return ok


class PointRulesClassifier(ClassifierMixin, BaseEstimator):
    """A points-based manual process (see the module docstring) as an estimator.

    Parameters
    ----------
    rules : PointRules or dict
        The rules (a dict is validated like a rules file).
    missing_values : tuple of str
        Text values that mean "not filled in".
    source : str
        Where the rules came from (a file name), quoted in error messages.
    """

    def __init__(
        self, rules: PointRules | dict | None = None, missing_values: tuple[str, ...] = ("",), source: str = ""
    ):
        self.rules = rules
        self.missing_values = missing_values
        self.source = source

    @property
    def _where(self) -> str:
        return self.source or "point rules"

    def _spec(self) -> PointRules:
        if self.rules is None:
            raise ValueError("PointRulesClassifier needs rules (a PointRules or a dict as in a rules file)")
        if isinstance(self.rules, PointRules):
            return self.rules
        try:
            return PointRules.model_validate(self.rules)
        except ValidationError as exc:
            raise DataError(validation_error_text(self._where, exc)) from None

    @property
    def name(self) -> str:
        return self._spec().name

    def _check_columns(self, spec: PointRules, X: pd.DataFrame) -> None:
        for i, rule in enumerate(spec.rules):
            for condition in rule.conditions:
                if condition.column not in X.columns:
                    raise DataError(
                        f"{self._where}: field 'rules.{i}.when': column {condition.column!r} is not in the data"
                    )
        if spec.decay is not None and spec.decay.column not in X.columns:
            raise DataError(f"{self._where}: field 'decay.column': column {spec.decay.column!r} is not in the data")

    def points(self, X: pd.DataFrame) -> np.ndarray:
        """Each lead's points after decay."""
        spec = self._spec()
        self._check_columns(spec, X)
        fixed = np.zeros(len(X))
        decaying = np.zeros(len(X))
        for rule in spec.rules:
            hit = np.ones(len(X), dtype=bool)
            for condition in rule.conditions:
                hit &= condition_mask(condition, X, tuple(self.missing_values))
            (decaying if rule.decays else fixed)[hit] += rule.points
        if spec.decay is not None:
            days = encode_numeric(X[spec.decay.column].to_numpy(dtype=object), frozenset(self.missing_values))
            days = np.clip(np.nan_to_num(days, nan=0.0), 0, None)
            decaying = decaying * spec.decay.factor ** np.floor(days / spec.decay.every_days)
        return fixed + decaying

    def fit(self, X: pd.DataFrame, y: Any) -> PointRulesClassifier:
        spec = self._spec()
        y = np.asarray(y).astype(int)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if len(np.unique(y)) < 2:
            raise ValueError(
                f"{self._where}: the training leads need both conversions and non-conversions; got only {np.unique(y)}"
            )
        self.spec_ = spec
        points = self.points(X)
        self.scale_ = float(np.std(points)) or 1.0
        self.curve_ = LogisticRegression().fit((points / self.scale_).reshape(-1, 1), y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "classes_")
        p = self.curve_.predict_proba((self.points(X) / self.scale_).reshape(-1, 1))[:, 1]
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.passed(X).astype(int)

    def passed(self, X: pd.DataFrame) -> np.ndarray:
        """The MQL decision: points (after decay) at or above the threshold."""
        return self.points(X) >= self._spec().threshold
