"""The compiled trees the API scores with: the same margins and TreeSHAP values as LightGBM itself, from the
C kernel where it is built and from LightGBM (the booster's model string) where it is not."""

from __future__ import annotations

import dataclasses
import importlib
import json
import pickle
import platform
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression

from leadscore.models import compiled_trees
from leadscore.models.calibration import MarginCalibrator
from leadscore.models.compiled_trees import CompiledTrees, leaf_credit_table
from leadscore.models.scorer import Scorer

ROOT = Path(__file__).resolve().parents[1]


def _data(seed: int, n: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    X[:, 0] = rng.integers(0, 12, n)  # a categorical column
    X[:, 1] = np.where(rng.random(n) < 0.3, 0.0, X[:, 1])  # many exact zeros
    X[rng.random(X.shape) < 0.15] = np.nan
    logit = (
        np.nan_to_num(X[:, 2]) + (np.nan_to_num(X[:, 0]) % 3 == 0) - np.isnan(X[:, 3]) + 0.5 * np.nan_to_num(X[:, 1])
    )
    return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _probe(seed: int) -> np.ndarray:
    """Rows that reach every branch kind: missing, zero, unseen, negative and fractional category codes."""
    X, _ = _data(seed, 500)
    rng = np.random.default_rng(seed + 1)
    X[:100, 0] = rng.choice([-3.0, -0.5, 0.5, 2.7, 40.0, 1e9, np.nan], 100)
    X[100:150] = 0.0
    X[150:200] = np.nan
    return X


def _kernel_built() -> bool:
    try:
        importlib.import_module("leadscore.models._trees")
    except ImportError:
        return False
    return True


def _cpu_has_fast_pext() -> bool | None:
    """From /proc/cpuinfo: BMI2 on Intel, or on AMD from Zen 3 (family 25); None where it cannot tell."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return None
    first_cpu = Path("/proc/cpuinfo").read_text().split("\n\n")[0]
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in first_cpu.splitlines())}
    bmi2 = "bmi2" in fields.get("flags", "").split()
    if fields.get("vendor_id") == "GenuineIntel":
        return bmi2
    if fields.get("vendor_id") == "AuthenticAMD":
        return bmi2 and int(fields.get("cpu family", "0")) >= 25
    return None


def _lightgbms_margin_with(booster: lgb.Booster, X: np.ndarray, position: int, value: float) -> np.ndarray:
    """The raw margin of ``booster`` with a single-leaf tree of ``value`` put at ``position`` among its trees: each
    tree's leaf value (``pred_leaf`` and ``get_leaf_output``), summed one by one in that order."""
    leaves = booster.predict(X, pred_leaf=True)
    per_tree = np.array([[booster.get_leaf_output(t, int(leaf)) for t, leaf in enumerate(row)] for row in leaves])
    per_tree = np.insert(per_tree, position, value, axis=1)
    return np.cumsum(per_tree, axis=1)[:, -1]  # numpy's cumsum adds left to right


def _without_kernel(trees: CompiledTrees, monkeypatch: pytest.MonkeyPatch) -> CompiledTrees:
    """A copy of ``trees`` in a process as if the install had built no C kernel."""
    monkeypatch.setattr(compiled_trees, "kernel_module", lambda: None)
    copy = pickle.loads(pickle.dumps(trees))
    assert not copy.native
    return copy


KERNEL = pytest.mark.skipif(not _kernel_built(), reason="the C kernel (models/_trees.c) was not built by the install")
PATHS = pytest.mark.parametrize("native", [pytest.param(True, marks=KERNEL), False], ids=["C", "LightGBM"])


@PATHS
@pytest.mark.parametrize(
    "params",
    [
        {"objective": "binary", "num_leaves": 15},
        {"objective": "binary", "num_leaves": 31, "zero_as_missing": True, "max_cat_threshold": 4},
        {"objective": "binary", "num_leaves": 7, "use_missing": False},
        {"objective": "regression", "num_leaves": 15, "min_data_in_leaf": 400},
    ],
    ids=["default", "zero-as-missing", "no-missing", "regression"],
)
def test_margin_and_contributions_equal_lightgbms(params: dict, native: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel, and without it LightGBM from the model string the tables keep: the booster's margins float for
    float, its TreeSHAP values to 1e-12."""
    X, y = _data(0)
    booster = lgb.train(
        {**params, "verbosity": -1, "seed": 0, "num_threads": 1}, lgb.Dataset(X, y, categorical_feature=[0]), 40
    )
    compiled = CompiledTrees.from_booster(booster)
    if not native:
        compiled = _without_kernel(compiled, monkeypatch)
    assert compiled.native is native
    probe = _probe(0)
    shap = booster.predict(probe, pred_contrib=True)
    margin, contributions = compiled.explain(probe)
    np.testing.assert_array_equal(margin, booster.predict(probe, raw_score=True))  # summed in LightGBM's order
    np.testing.assert_array_equal(compiled.margin(probe), margin)
    np.testing.assert_allclose(contributions, shap[:, :-1], rtol=0, atol=1e-12)
    assert compiled.expected_value == pytest.approx(shap[0, -1], abs=1e-12)
    one_margin, one = compiled.explain(probe[7:8])
    np.testing.assert_allclose(one[0], contributions[7], rtol=0, atol=1e-15)
    assert one_margin[0] == margin[7]
    with pytest.raises(ValueError, match="4 columns; the trees read 6"):
        compiled.explain(probe[:, :4])
    margin, contributions = compiled.explain(probe[:0])
    assert margin.shape == (0,) and contributions.shape == (0, 6) and compiled.margin([]).shape == (0,)


@KERNEL
def test_the_kernel_sums_trees_in_the_boosters_order_and_refuses_bad_tables() -> None:
    X, y = _data(2)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(X, y, categorical_feature=[0]),
        30,
    )
    compiled = CompiledTrees.from_booster(booster)
    probe = _probe(2)
    margin, contributions = compiled.explain(probe)
    wide = dataclasses.replace(compiled, path_lookup=compiled.path_lookup.astype(np.int32))  # deep trees' tables
    # a tree without a split in the middle of the ensemble (LightGBM makes one when no split gains)
    order = np.arange(31)
    mixed = dataclasses.replace(
        compiled,
        n_trees=31,
        split_trees=np.delete(order, 5),
        single_leaf_trees=order[5:6],
        single_leaf_value=np.array([0.3]),
    )
    expected = {"wide": margin, "mixed": _lightgbms_margin_with(booster, probe, 5, 0.3)}
    for name, trees in (("wide", wide), ("mixed", mixed)):
        assert trees.native
        for rows in (slice(None), slice(3, 4)):
            got = trees.explain(probe[rows])
            np.testing.assert_array_equal(got[0], expected[name][rows])
            np.testing.assert_array_equal(got[1], contributions[rows])  # a single-leaf tree credits no feature
            np.testing.assert_array_equal(trees.margin(probe[rows]), expected[name][rows])  # the walk from the root
    with pytest.raises(TypeError, match="format"):  # a table of the wrong type is refused, not read
        tables = list(compiled._kernel_tables(*compiled._leaf_paths()))
        tables[5] = tables[5].astype(np.float64)
        importlib.import_module("leadscore.models._trees").bind(
            tuple(tables), 6, compiled.width, 15, compiled.cat_left.shape[1]
        )
    bad = dataclasses.replace(compiled, node_feature=compiled.node_feature + 100)
    with pytest.raises(ValueError, match="out of range"):
        bad.explain(probe[:2])
    assert (
        pickle.loads(pickle.dumps(compiled)).explain(probe[:5])[1].tolist() == compiled.explain(probe[:5])[1].tolist()
    )


@KERNEL
@pytest.mark.parametrize(
    ("params", "wide"),
    [
        ({"num_leaves": 15}, False),
        ({"num_leaves": 31, "zero_as_missing": True, "max_cat_threshold": 4}, False),
        ({"num_leaves": 70, "max_depth": 8, "min_data_in_leaf": 5}, True),
    ],
    ids=["15-leaves", "31-leaves-zero-missing", "70-leaves"],
)
def test_both_ways_of_reading_path_decisions_give_the_same_floats(params: dict, wide: bool) -> None:
    """PEXT of a tree's decisions (where the CPU has a fast one, trees of at most 64 splits) and the loop over
    a leaf's path splits: the same TreeSHAP floats, bit for bit, and LightGBM's to 1e-12."""
    X, y = _data(7)
    booster = lgb.train(
        {"objective": "binary", **params, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(X, y, categorical_feature=[0]),
        25,
    )
    compiled = CompiledTrees.from_booster(booster)
    native = importlib.import_module("leadscore.models._trees")
    shape = (6, compiled.width, compiled.path_lookup.shape[-1], compiled.cat_left.shape[1])
    tables = compiled._kernel_tables(*compiled._leaf_paths())
    fast, loop = native.bind(tables, *shape), native.bind(tables, *shape, False)
    assert (compiled.width > 64) == wide
    assert native.path_bits(loop) == "loop"
    if wide:  # over 64 splits a tree: always the loop
        assert native.path_bits(fast) == "loop"
    elif _cpu_has_fast_pext() is not None:
        assert native.path_bits(fast) == ("pext" if _cpu_has_fast_pext() else "loop")
    probe = _probe(7)
    answers = []
    for handle in (fast, loop):
        margin, contributions = np.empty(len(probe)), np.empty_like(probe)
        native.explain(handle, probe, margin, contributions)
        answers.append((margin, contributions))
    np.testing.assert_array_equal(answers[0][0], answers[1][0])
    np.testing.assert_array_equal(answers[0][1], answers[1][1])
    np.testing.assert_array_equal(answers[0][0], booster.predict(probe, raw_score=True))
    np.testing.assert_allclose(answers[0][1], booster.predict(probe, pred_contrib=True)[:, :-1], rtol=0, atol=1e-12)


@KERNEL
def test_margins_of_many_rows_split_across_threads_are_lightgbms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch scoring walks the trees in C on every core: the same floats as LightGBM, in row order."""
    X, y = _data(3)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1},
        lgb.Dataset(X, y, categorical_feature=[0]),
        40,
    )
    compiled = CompiledTrees.from_booster(booster)
    rows = np.concatenate([_probe(3)] * 7)  # 3,500 rows: a part per thread, none a multiple of the kernel's block
    calls = []
    kernel, handle = compiled._kernel
    monkeypatch.setattr(
        compiled,
        "_kernel",
        (
            type(
                "Spy",
                (),
                {"margin": staticmethod(lambda *a: calls.append(len(a[1])) or kernel.margin(*a))},
            ),
            handle,
        ),
    )
    monkeypatch.setattr(compiled_trees, "_WORK_PER_THREAD", 1000)
    monkeypatch.setattr(compiled_trees, "cores", lambda: 3)
    np.testing.assert_array_equal(compiled.margin(rows), booster.predict(rows, raw_score=True))
    assert sorted(calls) == [1166, 1167, 1167]


@KERNEL
def test_the_kernel_refuses_a_tree_walk_that_could_loop_or_leave_its_tree() -> None:
    X, y = _data(4)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1}, lgb.Dataset(X, y), 5
    )
    compiled = CompiledTrees.from_booster(booster)
    native = importlib.import_module("leadscore.models._trees")
    shape = (6, compiled.width, compiled.path_lookup.shape[-1], compiled.cat_left.shape[1])
    for slot, value in ((3, 0), (0, ~15)):  # a split's child back at the root; a leaf past the tree's leaves
        tables = list(compiled._kernel_tables(*compiled._leaf_paths()))
        child = tables[-1].copy()
        child[slot] = value
        with pytest.raises(ValueError, match="out of range, or a child before its split"):
            native.bind((*tables[:-1], child), *shape)


@KERNEL
@pytest.mark.parametrize(
    ("table", "at", "value"),
    [
        (7, 0, 16),  # a path split past its tree's splits
        (9, 3, 10**8),  # a leaf's outcomes past the outcome table
        (10, 5, 10**8),  # an outcome's credits past the credit table
        (15, 2, 6),  # a credit for a feature the rows do not have
        (13, 1, -1),  # groups that run backwards
        (17, 0, 99),  # a tree that does not exist, in the sum
    ],
    ids=["path", "outcomes", "credits", "feature", "groups", "order"],
)
def test_the_kernel_refuses_tables_that_point_out_of_range_when_it_binds_them(table: int, at: int, value: int) -> None:
    """The kernel checks every index once, when it binds the tables, so scoring rows needs no check."""
    X, y = _data(6)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbosity": -1, "num_threads": 1}, lgb.Dataset(X, y), 5
    )
    compiled = CompiledTrees.from_booster(booster)
    native = importlib.import_module("leadscore.models._trees")
    shape = (6, compiled.width, compiled.path_lookup.shape[-1], compiled.cat_left.shape[1])
    tables = list(compiled._kernel_tables(*compiled._leaf_paths()))
    native.bind(tuple(tables), *shape)  # as they are: accepted
    tables[table] = tables[table].copy()
    tables[table][at] = value
    with pytest.raises(ValueError, match="out of range"):
        native.bind(tuple(tables), *shape)


def test_trees_without_splits_add_their_constant() -> None:
    """No tree has a split: nothing for the kernel to walk, so LightGBM scores them (the constant, no credit)."""
    X, _ = _data(1, 300)
    booster = lgb.train(
        {"objective": "regression", "verbosity": -1, "min_data_in_leaf": 10}, lgb.Dataset(X, np.full(300, 2.5)), 5
    )
    compiled = CompiledTrees.from_booster(booster)
    assert not compiled.native
    np.testing.assert_array_equal(compiled.margin(X[:10]), booster.predict(X[:10], raw_score=True))
    margin, contributions = compiled.explain(X[:10])
    assert not contributions.any() and margin[0] == pytest.approx(2.5)


def test_trees_without_the_kernel_or_a_model_string_refuse_to_score(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables saved without the booster's model string cannot be scored where the kernel is missing: an error
    that says why, never an answer from elsewhere."""
    X, y = _data(8, 500)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_threads": 1}, lgb.Dataset(X, y), 3)
    compiled = _without_kernel(dataclasses.replace(CompiledTrees.from_booster(booster), model_string=""), monkeypatch)
    for score in (compiled.margin, compiled.explain):
        with pytest.raises(RuntimeError, match=r"C kernel .* not available .* no LightGBM model string"):
            score(X[:2])


def test_one_leafs_credits_by_brute_force_shapley() -> None:
    """The tabulated formula against the Shapley definition on the leaf's own game."""
    from itertools import combinations
    from math import factorial

    zero = np.array([0.3, 0.6, 0.8])
    table = leaf_credit_table(2.0, zero)
    d = len(zero)
    for pattern in range(2**d):
        one = [(pattern >> j) & 1 for j in range(d)]

        def value(subset: tuple[int, ...], one: list[int] = one) -> float:
            return 2.0 * np.prod([one[j] if j in subset else zero[j] for j in range(d)])

        for i in range(d):
            others = [j for j in range(d) if j != i]
            phi = sum(
                factorial(len(s)) * factorial(d - len(s) - 1) / factorial(d) * (value((*s, i)) - value(s))
                for k in range(d)
                for s in combinations(others, k)
            )
            assert table[pattern, i] == pytest.approx(phi, abs=1e-12)


def test_platt_curve_gives_one_margin_the_floats_it_gives_it_among_many() -> None:
    """A request's single lead (numpy's scalar arithmetic) and a batch (its array arithmetic): the same floats."""
    from leadscore.models.curve import CalibrationCurve

    curve = CalibrationCurve(slope=0.9247643684735383, intercept=-0.0701967787653831)
    margins = np.random.default_rng(9).normal(size=20_000) * 4
    many = curve(margins)
    assert many.tolist() == [curve(m)[0] for m in margins] == [curve(np.array([m]))[0] for m in margins]


def test_isotonic_curve_predicts_as_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    margin = rng.normal(size=2000)
    y = (rng.random(2000) < 1 / (1 + np.exp(-2 * margin))).astype(int)
    calibrator = MarginCalibrator("isotonic").fit(margin, y)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
    probe = np.concatenate([rng.normal(size=500) * 3, [-100.0, 100.0]])
    np.testing.assert_allclose(calibrator.predict(probe), reference.predict(probe), rtol=0, atol=1e-12)


def test_the_scoring_service_and_batch_scoring_load_a_model_without_scikit_learn_or_lightgbm(
    scorer: Scorer, tmp_path: Path
) -> None:
    path = scorer.save(tmp_path / "scorer.joblib")
    code = (
        "import sys; from leadscore.serving.app import create_app; from leadscore.models import registry; from leadscore.models.scorer import Scorer\n"
        "from leadscore.cli import app; from leadscore.training.batch import load_leads, score_leads, write_scores\n"
        f"s = Scorer.load({str(path)!r}); s.score_records([{{'source': 'web'}}]); s.score_table({{'source': ['web', 'event']}})\n"
        "heavy = sorted(m for m in ('sklearn', 'lightgbm') if m in sys.modules); assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_the_api_and_its_batch_worker_score_without_pandas(scorer: Scorer, tmp_path: Path) -> None:
    """Scoring leads from JSON never loads pandas (nor pyarrow): a single lead, a micro-batch past
    ``ROW_BY_ROW`` (encoded by column), a 100-lead batch in the worker's code, a lead with 100 activities."""
    path = scorer.save(tmp_path / "scorer.joblib")
    code = (
        "import sys, orjson; import leadscore.serving.app, leadscore.serving.batch_worker\n"
        "from leadscore.models.scorer import Scorer; from leadscore.models.lead_hash import lead_hasher\n"
        "from leadscore.serving.batch_work import score_batch_body; from leadscore.serving.state import LoadedModel\n"
        "from leadscore.serving.schemas import EXAMPLE_LEAD\n"
        f"s = Scorer.load({str(path)!r}); s.score_records([{{'source': 'web'}}])\n"
        "s.score_records([{'source': str(i % 3), 'employees': i, 'is_mql': i % 2 == 0} for i in range(40)])\n"
        "busy = {**EXAMPLE_LEAD, 'activities': EXAMPLE_LEAD['activities'] * 50}\n"
        "leads = [{**EXAMPLE_LEAD, 'lead_id': f'L-{i}'} for i in range(99)] + [busy]\n"
        "model = LoadedModel(s, 'lead-scoring', '1', 'static')\n"
        "done = score_batch_body(orjson.dumps({'leads': leads}), 1000, model, 'r', None, True, lead_hasher(b'k' * 32))\n"
        "assert done.rows == 100, done.rows\n"
        "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@KERNEL
def test_the_scorer_without_the_kernel_gives_the_kernels_answers_through_lightgbm(
    fitted, scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Where no kernel was built, the serving form scores through LightGBM, and says so in the log: the same
    probability to 1e-12, the same score, tier and reasons."""
    records = fitted.holdout.head(150).to_dict("records")
    assert scorer.trees.native
    expected, expected_table = scorer.score_records(records), scorer.score_table(fitted.holdout)
    monkeypatch.setattr(compiled_trees, "kernel_module", lambda: None)
    loaded = Scorer.load(scorer.save(tmp_path / "scorer.joblib"))
    assert not loaded.trees.native
    for explain in (True, False):
        got = loaded.score_records(records, explain=explain)
        for mine, theirs in zip(got, expected, strict=True):
            assert mine["probability"] == pytest.approx(theirs["probability"], rel=0, abs=1e-12)
            assert {k: v for k, v in mine.items() if k != "probability"} == {
                k: v for k, v in theirs.items() if k != "probability" and (explain or k != "reasons")
            }
    assert "trees kernel (leadscore.models._trees) was not built: LightGBM scores this model" in caplog.text
    table = loaded.score_table(fitted.holdout)
    np.testing.assert_allclose(table["probability"], expected_table["probability"], rtol=0, atol=1e-12)
    for column in ("score", "tier", "queue"):
        assert table[column].tolist() == expected_table[column].tolist()


def test_a_process_without_the_kernels_imports_lightgbm_to_score(fitted, scorer: Scorer, tmp_path: Path) -> None:
    """With the kernels made unimportable (as where the install built none), the API's imports and scoring work,
    LightGBM scores the trees and the answers are the kernel path's."""
    path = scorer.save(tmp_path / "scorer.joblib")
    records = fitted.holdout.head(20).to_dict("records")
    (tmp_path / "records.pkl").write_bytes(pickle.dumps(records))
    code = (
        "import json, pickle, sys\n"
        "sys.modules['leadscore.models._trees'] = sys.modules['leadscore.features._engagement'] = None\n"
        "from leadscore.serving.app import create_app; from leadscore.models.scorer import Scorer\n"
        f"s = Scorer.load({str(path)!r}); assert 'lightgbm' not in sys.modules\n"
        f"records = pickle.loads(open({str(tmp_path / 'records.pkl')!r}, 'rb').read())\n"
        "answers = s.score_records(records)\n"
        "print(json.dumps({'native': s.trees.native, 'lightgbm': 'lightgbm' in sys.modules, 'answers': answers}))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    out = json.loads(run.stdout)
    assert out["native"] is False and out["lightgbm"] is True
    expected = scorer.score_records(records)
    for mine, theirs in zip(out["answers"], expected, strict=True):
        assert mine["probability"] == pytest.approx(theirs["probability"], rel=0, abs=1e-12)
        assert mine["tier"] == theirs["tier"] and mine["score"] == theirs["score"]
        for side in ("positive", "negative"):
            assert [(f["feature"], f["contribution"]) for f in mine["reasons"][side]] == [
                (f["feature"], f["contribution"]) for f in theirs["reasons"][side]
            ]
