"""The points rules process: estimator contract, hand-computed points with decay, and clear errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from leadscore.features.build import build_crm_frame
from leadscore.features.mapping import DataError, default_crm_mapping
from leadscore.models.point_rules import PointRulesClassifier, load_point_rules

EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "rules" / "example-points.yaml"

RULES = {
    "name": "test points",
    "threshold": 30,
    "decay": {"column": "days_since_last_activity", "every_days": 10, "factor": 0.5},
    "rules": [
        {"when": {"column": "title", "in": ["VP Sales", "cto"]}, "points": 20, "decays": False},
        {"when": {"column": "pricing_page_view_total", "gte": 2}, "points": 16},
        {
            "when": [{"column": "employees", "gte": 100}, {"column": "employees", "lt": 1000}],
            "points": 8,
            "decays": False,
        },
        {"when": {"column": "title", "contains": "student"}, "points": -10, "decays": False},
    ],
}


def _leads() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "title": ["VP Sales", "CTO ", "Student", "Analyst", None, "vp sales"],
            "pricing_page_view_total": [3, 2, 5, 1, 2, 0],
            "employees": [150, 50, np.nan, 999, 1000, "500"],
            "days_since_last_activity": [0, 25, 9.9, np.nan, 10, 3],
        }
    )


def test_points_by_hand_with_decay():
    clf = PointRulesClassifier(RULES)
    points = clf.points(_leads())
    # 0: title 20 + pricing 16 (0 days: no decay) + size 8            = 44
    # 1: title 20 (case/space-insensitive) + pricing 16 x 0.5^2 (25 d) = 24
    # 2: pricing 16 (9.9 d: no step yet) - 10 student; size missing    = 6
    # 3: size 8 (999 < 1000); no activity recorded: no decay           = 8
    # 4: missing title matches nothing; pricing 16 x 0.5 (10 d)        = 8
    # 5: title 20 + size 8 ("500" parsed as a number)                  = 28
    assert points.tolist() == [44, 24, 6, 8, 8, 28]
    assert clf.passed(_leads()).tolist() == [True, False, False, False, False, False]


def test_estimator_contract():
    clf = PointRulesClassifier(RULES, missing_values=("", "n/a"), source="rules.yaml")
    params = clf.get_params()
    assert params == {"rules": RULES, "missing_values": ("", "n/a"), "source": "rules.yaml"}
    twin = clone(clf)
    assert twin is not clf and twin.get_params()["rules"] == RULES
    with pytest.raises(NotFittedError):
        twin.predict_proba(_leads())
    leads = pd.concat([_leads()] * 5, ignore_index=True)
    y = np.tile([1, 0, 0, 1, 0, 1], 5)
    assert twin.fit(leads, y) is twin
    proba = twin.predict_proba(leads)
    assert proba.shape == (30, 2) and np.allclose(proba.sum(axis=1), 1)
    order = np.argsort(twin.points(leads))
    assert np.all(np.diff(proba[order, 1]) >= -1e-12)  # more points never means a lower probability
    assert twin.predict(leads).tolist() == twin.passed(leads).astype(int).tolist()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("threshold: 10\nrules:\n  - when: {column: title, gte: many}\n    points: 5\n", "rules.0.when"),
        ("threshold: 10\nrules:\n  - when: {column: title}\n    points: 5\n", "rules.0.when"),
        ("threshold: 10\nrules:\n  - when: {column: title, in: [a]}\n    points: lots\n", "rules.0.points"),
        ("rules:\n  - when: {column: title, in: [a]}\n    points: 5\n", "threshold"),
        ("threshold: 10\nrules: []\n", "rules"),
        (
            "threshold: 10\ndecay: {every_days: 0}\nrules:\n  - when: {column: title, in: [a]}\n    points: 5\n",
            "decay.every_days",
        ),
        ("threshold: 10\nrules:\n  - when: {column: title, in: [a], since: 3}\n    points: 5\n", "rules.0.when"),
    ],
    ids=["text-for-number", "no-operator", "bad-points", "no-threshold", "no-rules", "zero-decay", "unknown-key"],
)
def test_bad_rules_file_names_file_and_field(tmp_path, text, field):
    path = tmp_path / "points.yaml"
    path.write_text(text)
    with pytest.raises(DataError) as caught:
        load_point_rules(path)
    message = str(caught.value)
    assert str(path) in message and field in message


def test_rule_on_a_column_the_data_lacks_names_it(tmp_path):
    clf = PointRulesClassifier(
        {"threshold": 1, "rules": [{"when": {"column": "budgt", "eq": "yes"}, "points": 1}]}, source="p.yaml"
    )
    with pytest.raises(DataError, match=r"p\.yaml: field 'rules\.0\.when': column 'budgt'"):
        clf.fit(_leads(), [0, 1, 0, 1, 0, 1])


def test_example_rules_fit_the_synthetic_schema(crm_tables):
    spec = load_point_rules(EXAMPLE)
    tf = build_crm_frame(crm_tables, default_crm_mapping(), source="test")
    assert set(spec.columns) <= set(tf.frame.columns)
    passed = PointRulesClassifier(spec).passed(tf.frame)
    assert 0.05 < passed.mean() < 0.6  # a real MQL share, neither nobody nor everybody
