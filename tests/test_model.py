"""Model behaviour: one artifact scores batches and requests alike, is calibrated, explains itself, respects intent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone

from leadscore.features.build import SCORING_AT
from leadscore.features.encoder import FeatureEncoder
from leadscore.features.online import lead_feature_record
from leadscore.features.schema import Activity, LeadRecord
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.baselines import ManualProcessClassifier
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.placement import Placement
from leadscore.models.routing import RoutingSpec, TierSpec, fit_routing
from leadscore.models.scorer import ARTIFACT_FILE, SCORER_FILE, Scorer
from leadscore.training.metrics import binary_metrics, expected_calibration_error, top_share
from leadscore.training.train import FitResult


def holdout_rows(fitted: FitResult, n: int = 200) -> pd.DataFrame:
    return fitted.holdout.head(n)


def test_estimators_keep_the_sklearn_contract() -> None:
    for est in (LeadScoringModel(FeatureEncoder(numeric=["x"])), ManualProcessClassifier(), FeatureEncoder()):
        params = est.get_params()
        assert clone(est).get_params().keys() == params.keys()
        assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")]


def test_model_beats_every_manual_process_on_the_holdout(fitted: FitResult) -> None:
    model = fitted.metrics["model"]["roc_auc"]
    manual = {k: v["roc_auc"] for k, v in fitted.metrics.items() if k.startswith("manual:")}
    assert set(manual) == {"manual:MQL flag", "manual:Manual points", "manual:BANT"}
    assert all(model > auc for auc in manual.values()), (model, manual)
    assert model > 0.7


def test_model_is_calibrated_on_the_holdout(fitted: FitResult) -> None:
    assert fitted.metrics["model"]["ece"] < 0.05


def test_holdout_is_the_newest_period(fitted: FitResult) -> None:
    created = fitted.frame.frame["created_at"]
    assert created.iloc[fitted.split.train].max() <= created.iloc[fitted.split.holdout].min()
    assert fitted.split.method == "time"


def test_request_records_score_exactly_as_the_batch_frame(fitted: FitResult, scorer: Scorer) -> None:
    """Train/serve skew: the API's scorer, fed dicts one or many at a time, gives the batch DataFrame path's answers."""
    rows = holdout_rows(fitted)
    batch = fitted.artifact.score_frame(rows)
    records = rows.to_dict("records")
    for explain in (False, True):
        many = scorer.score_records(records, explain=explain)
        one_by_one = [scorer.score_records([r], explain=explain)[0] for r in records]
        for answers in (many, one_by_one):
            np.testing.assert_allclose(
                [a["probability"] for a in answers], batch["probability"].to_numpy(), rtol=0, atol=1e-12
            )
            assert [a["tier"] for a in answers] == list(batch["tier"])
            assert [a["score"] for a in answers] == list(batch["score"])


def test_batch_scoring_with_the_serving_form_gives_the_artifacts_floats(fitted: FitResult, scorer: Scorer) -> None:
    """`leadscore score` scores with the scorer (trees walked in C); promotion and reports with LightGBM: the same answers."""
    rows = fitted.holdout
    batch = fitted.artifact.score_frame(rows)
    table = scorer.score_table(rows)
    np.testing.assert_array_equal(table["probability"], batch["probability"].to_numpy())
    for column in ("score", "tier", "queue"):
        assert table[column].tolist() == batch[column].tolist()


def test_batch_scoring_falls_back_to_lightgbm_where_no_kernel_was_built(
    fitted: FitResult, scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadscore.features.mapping import Mapping
    from leadscore.models.compiled_trees import CompiledTrees
    from leadscore.training.batch import batch_model, score_leads

    fitted.artifact.save(tmp_path / ARTIFACT_FILE)
    scorer.save(tmp_path / SCORER_FILE)
    mapping = Mapping.model_validate(scorer.metadata["mapping"])
    answers = []
    for built in (True, False):
        monkeypatch.setattr(CompiledTrees, "native", property(lambda self, built=built: built))
        model = batch_model(tmp_path)
        assert isinstance(model, Scorer if built else ScoringArtifact)
        answers.append(score_leads(fitted.holdout, model, mapping, "lead-scoring", "7"))
    pd.testing.assert_frame_equal(*answers)
    assert list(answers[0].columns) == [
        mapping.id,
        "probability",
        "score",
        "tier",
        "queue",
        "model_name",
        "model_version",
    ]


def test_a_lead_from_the_api_schema_scores_like_its_training_row(fitted: FitResult, scorer: Scorer, crm_tables) -> None:
    row = holdout_rows(fitted).iloc[3]
    acts = crm_tables.activities[crm_tables.activities["lead_id"] == row["lead_id"]]
    lead = LeadRecord(
        **{
            k: (None if pd.isna(row[k]) else row[k])
            for k in (
                "lead_id",
                "source",
                "campaign",
                "country",
                "region",
                "industry",
                "employees",
                "annual_revenue",
                "title",
                "seniority",
                "department",
            )
        },
        activities=[Activity(type=t, occurred_at=o) for t, o in zip(acts["type"], acts["occurred_at"], strict=True)],
    )
    record = lead_feature_record(lead, row[SCORING_AT].to_pydatetime())
    via_api = scorer.score_records([record], explain=False)[0]["probability"]
    via_training = fitted.artifact.score_frame(row.to_frame().T)["probability"].iloc[0]
    assert via_api == pytest.approx(via_training, abs=1e-12)


def test_booking_a_demo_never_lowers_the_score(fitted: FitResult, scorer: Scorer) -> None:
    rows = holdout_rows(fitted).to_dict("records")
    base = scorer.score_records(rows, explain=False)
    for record in rows:
        for name in ("demo_request_7d", "demo_request_total", "meeting_booked_total", "pricing_page_view_total"):
            record[name] = record[name] + 1
    more = scorer.score_records(rows, explain=False)
    assert all(m["probability"] >= b["probability"] for m, b in zip(more, base, strict=True))


def test_reasons_name_readable_factors_that_are_lightgbms_treeshap_values(fitted: FitResult, scorer: Scorer) -> None:
    record = holdout_rows(fitted).iloc[0].to_dict()
    scored = scorer.score_records([record])[0]
    reasons = scored["reasons"]
    assert 1 <= len(reasons["positive"]) <= 3 and 1 <= len(reasons["negative"]) <= 3
    assert all(r["contribution"] > 0 for r in reasons["positive"]) and all(
        r["contribution"] < 0 for r in reasons["negative"]
    )
    assert all(r["label"] and r["label"] != r["feature"] for r in reasons["positive"] + reasons["negative"])
    model = fitted.artifact.model
    matrix = model.encoder_.transform_records([record])
    shap = model.booster_.predict(matrix, pred_contrib=True)[0, :-1]
    if hasattr(model, "weights_"):  # a blend: the weighted sum of TreeSHAP values and the linear model's terms
        a, b = model.weights_
        shap = a * shap + b * model.linear_.terms_.contributions(matrix)[0]
    shap = shap * model.calibrator_.slope_
    names = list(fitted.artifact.input_columns)
    for factor in reasons["positive"] + reasons["negative"]:
        assert factor["contribution"] == pytest.approx(shap[names.index(factor["feature"])], abs=1e-4)
    top = sorted(names, key=lambda n: -shap[names.index(n)])[: len(reasons["positive"])]
    assert [f["feature"] for f in reasons["positive"]] == top
    assert scored["probability"] == pytest.approx(
        scorer.score_records([record], explain=False)[0]["probability"], abs=1e-12
    )


def test_reasons_rank_by_contribution_keep_the_feature_order_on_ties_and_leave_out_no_effect() -> None:
    from leadscore.models.explain import reasons

    contributions = np.array([0.5, -0.2, 0.5, 0.0, -0.2, 0.1, 0.5, -0.7, 0.0])
    names = [f"f{i}" for i in range(9)]
    top = reasons(contributions, names, {"f0": "First"}, {"f0": np.float64(2.0), "f7": float("nan")}, k=3)
    assert [f["feature"] for f in top["positive"]] == ["f0", "f2", "f6"]
    assert [f["feature"] for f in top["negative"]] == ["f7", "f1", "f4"]
    assert top["positive"][0] == {"feature": "f0", "label": "First", "value": 2.0, "contribution": 0.5}
    assert top["negative"][0]["value"] is None
    shown = reasons(contributions, names, {}, {"f0": "inbound", "f2": 3.5, "f6": float("nan"), "f7": np.int64(4)}, k=3)
    assert [f["value"] for f in shown["positive"]] == ["inbound", 3.5, None] and shown["negative"][0]["value"] == 4
    assert type(shown["negative"][0]["value"]) is int  # numpy numbers leave as plain ones (JSON)
    few = reasons(np.array([0.0, 0.3, 0.0]), names[:3], {}, {}, k=3)
    assert few == {"positive": [{"feature": "f1", "label": "f1", "value": None, "contribution": 0.3}], "negative": []}


def test_score_is_the_percentile_among_recent_leads_and_tiers_follow_the_policy(fitted: FitResult) -> None:
    scored = fitted.artifact.score_frame(fitted.holdout)
    assert scored["score"].between(0, 100).all()
    assert (scored["score"] >= 90).mean() == pytest.approx(0.10, abs=0.02)
    shares = scored["tier"].value_counts(normalize=True)
    assert shares["A"] == pytest.approx(0.10, abs=0.02) and shares["B"] == pytest.approx(0.20, abs=0.03)
    assert list(fitted.artifact.routing.tiers[0].model_dump()) == [
        "name",
        "queue",
        "sla_hours",
        "min_probability",
        "expected_share",
    ]


def test_capacity_routing_sizes_the_a_tier_by_leads_per_week() -> None:
    p = np.linspace(0, 1, 1000)
    spec = RoutingSpec(
        tiers=[TierSpec(name="A", queue="ae", sla_hours=1, per_week=50), TierSpec(name="D", queue="nurture")]
    )
    policy = fit_routing(spec, p, leads_per_week=500)
    assert (policy.tier_index(p) == 0).sum() == 100  # 50 a week of 500: the top 10% of 1,000, the cut-off's lead in
    with pytest.raises(ValueError, match="per week"):
        fit_routing(spec, p, leads_per_week=None)


REFERENCE = np.array([0.0, 0.1, 0.1, 0.1, 0.25, 0.4, 0.4, 0.7, 1.0])  # ties, and the scale's own ends
CUTOFFS = np.array([0.7, 0.4, 0.4, 0.1])  # tiers 0-4; tiers 1 and 2 share a cut-off
EDGES = sorted(
    {
        *REFERENCE.tolist(),
        *np.nextafter(REFERENCE, -np.inf).tolist(),
        *np.nextafter(REFERENCE, np.inf).tolist(),
        -0.0,
        -1.0,
        2.0,
        0.05,
        0.55,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.sampled_from(EDGES), st.floats(-0.5, 1.5)))
def test_one_probability_is_placed_as_an_array_of_them(p: float) -> None:
    """The scalar form (a request's leads) and the vectorised form (tables): the same score and tier."""
    placement = Placement(REFERENCE, CUTOFFS)
    assert placement.score(p) == placement.scores(np.array([p]))[0]
    assert placement.tier(p) == placement.tiers(np.array([p]))[0]


@pytest.mark.parametrize(
    ("p", "score", "tier"),
    [
        (1.0, 8, 0),  # at the top of the reference: the top score; at or above the best cut-off
        (0.7, 7, 0),  # exactly at a cut-off: that tier (the cut-off is reached)
        (float(np.nextafter(0.7, 0)), 6, 1),  # just below it: the next tier
        (0.4, 6, 1),  # two tiers share the cut-off 0.4: the first of them; tied percentiles: the last one
        (0.25, 4, 3),
        (0.1, 3, 3),
        (float(np.nextafter(0.1, 0)), 0, 4),  # below every cut-off: the last tier
        (0.0, 0, 4),
        (-1.0, 0, 4),  # below the scale: score 0
        (2.0, 8, 0),  # above it: the top score
    ],
    ids=[
        "top",
        "at-cut-off",
        "below-cut-off",
        "shared-cut-off",
        "between",
        "tied-percentile",
        "below-all",
        "zero",
        "under",
        "over",
    ],
)
def test_placement_on_the_edges(p: float, score: int, tier: int) -> None:
    """Score: how many reference values are at or below p, minus one. Tier: the first whose cut-off p reaches."""
    placement = Placement(REFERENCE, CUTOFFS)
    assert (placement.score(p), placement.tier(p)) == (score, tier)
    assert placement.scores(np.array([p])).tolist() == [score] and placement.tiers(np.array([p])).tolist() == [tier]


def test_placement_refuses_nan_and_unordered_scales() -> None:
    placement = Placement(REFERENCE, CUTOFFS)
    for place in (placement.score, placement.tier):
        with pytest.raises(ValueError, match="NaN"):
            place(float("nan"))
    for place in (placement.scores, placement.tiers):
        with pytest.raises(ValueError, match="NaN"):
            place(np.array([0.5, np.nan]))
    with pytest.raises(ValueError, match="non-decreasing"):
        Placement(REFERENCE[::-1], CUTOFFS)
    with pytest.raises(ValueError, match="non-increasing"):
        Placement(REFERENCE, CUTOFFS[::-1])


def test_artifact_round_trips_through_one_file(fitted: FitResult, tmp_path: Path) -> None:
    path = fitted.artifact.save(tmp_path / "a.joblib")
    loaded = ScoringArtifact.load(path)
    rows = holdout_rows(fitted, 50)
    pd.testing.assert_frame_equal(loaded.score_frame(rows), fitted.artifact.score_frame(rows))
    assert not list(tmp_path.glob(".*.tmp"))
    assert loaded.metadata["training_window"]["end"] < loaded.metadata["holdout_window"]["end"]


def test_scorer_round_trips_through_one_file(fitted: FitResult, scorer: Scorer, tmp_path: Path) -> None:
    loaded = Scorer.load(scorer.save(tmp_path / "s.joblib"))
    records = holdout_rows(fitted, 20).to_dict("records")
    assert loaded.score_records(records) == scorer.score_records(records)
    assert loaded.input_columns == list(fitted.artifact.input_columns) and loaded.metadata == fitted.artifact.metadata
    assert not list(tmp_path.glob(".*.tmp"))
    # a scorer saved by an earlier leadscore held its lookups of the time (other types, fewer of them)
    earlier = {**loaded.__getstate__(), "_names": loaded.input_columns, "_cutoffs": np.array([0.5])}
    restored = Scorer.__new__(Scorer)
    restored.__setstate__(earlier)
    assert restored.score_records(records) == scorer.score_records(records)


def test_metrics_by_hand() -> None:
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert top_share(y, p, 0.2) == (0.5, pytest.approx(0.5 / 0.3))
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0]), bins=2) == 0.0
    assert expected_calibration_error(np.array([0, 0]), np.array([0.5, 0.5]), bins=1) == 0.5
    m = binary_metrics(y, p)
    assert m["base_rate"] == pytest.approx(0.3) and m["conversions"] == 3 and m["n"] == 10
    assert m["roc_auc"] == pytest.approx((6 + 7 + 0.5 * 6 + 0) / 21)


def test_logistic_baseline_learns_on_a_seeded_sample_above_max_rows() -> None:
    from leadscore.models.baselines import RowSample, logistic_baseline

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=500), "c": rng.choice(["a", "b"], size=500)})
    y = (frame["x"] + rng.normal(size=500) > 0).astype(int).to_numpy()
    encoder = FeatureEncoder(categorical=["c"], numeric=["x"])
    assert RowSample(max_rows=500).rows(500) is None
    rows = RowSample(max_rows=100, random_state=3).rows(500)
    assert len(rows) == 100 and len(set(rows)) == 100 and (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, RowSample(max_rows=100, random_state=3).rows(500))
    sampled = logistic_baseline(encoder, max_rows=100, random_state=3).fit(frame, y)
    direct = clone(sampled.estimator).fit(frame.iloc[rows], y[rows])
    np.testing.assert_array_equal(sampled.predict_proba(frame), direct.predict_proba(frame))
    everything = logistic_baseline(encoder, max_rows=None).fit(frame, y)
    np.testing.assert_array_equal(
        everything.predict_proba(frame), clone(everything.estimator).fit(frame, y).predict_proba(frame)
    )


def test_logistic_baseline_predicts_large_inputs_in_blocks_with_the_answers_of_all_rows_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadscore.models import baselines
    from leadscore.models.baselines import logistic_baseline

    rng = np.random.default_rng(2)
    frame = pd.DataFrame(
        {"x": rng.normal(size=1000), "z": rng.exponential(size=1000), "c": rng.choice(["a", "b", "c"], size=1000)}
    )
    y = (frame["x"] + rng.normal(size=1000) > 0).astype(int).to_numpy()
    model = logistic_baseline(FeatureEncoder(categorical=["c"], numeric=["x", "z"])).fit(frame, y)
    whole = model.estimator_.predict_proba(frame)
    calls = []
    spy = model.estimator_.predict_proba
    monkeypatch.setattr(model.estimator_, "predict_proba", lambda X: calls.append(len(X)) or spy(X))
    monkeypatch.setattr(baselines, "cores", lambda: 3)
    model.set_params(block_rows=300)
    np.testing.assert_array_equal(model.predict_proba(frame), whole)
    assert sorted(calls) == [333, 333, 334]


def test_logistic_baseline_clipping_changes_no_spline_value_and_new_missing_numbers_score() -> None:
    """The clip before the spline only spares slow paths: out-of-range and newly missing numbers score as with a
    spline that extrapolates by a constant and no clip."""
    from leadscore.models.baselines import logistic_baseline

    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"x": rng.normal(size=400), "z": rng.exponential(size=400), "c": rng.choice(["a", "b"], size=400)}
    )
    frame.loc[::7, "z"] = np.nan
    y = (frame["x"] + rng.normal(size=400) > 0).astype(int).to_numpy()
    encoder = FeatureEncoder(categorical=["c"], numeric=["x", "z"])
    clipped = logistic_baseline(encoder).fit(frame, y)
    unclipped = logistic_baseline(encoder)
    unclipped.estimator.set_params(
        prepare__numbers__cliptofitrange="passthrough", prepare__numbers__splinetransformer__extrapolation="constant"
    )
    unclipped.fit(frame, y)
    beyond = pd.DataFrame({"x": [-50.0, 50.0, np.nan, 0.1], "z": [1e6, -3.0, 0.5, np.nan], "c": ["a", "b", "zzz", "a"]})
    np.testing.assert_allclose(clipped.predict_proba(beyond), unclipped.predict_proba(beyond), rtol=0, atol=1e-12)
    assert clipped.estimator_[1].transform(clipped.estimator_[0].transform(beyond)).format == "csr"


def test_manual_points_and_counts_get_the_logistic_curve_fitted_on_every_row() -> None:
    """Fitting the curve once per distinct (value, outcome) pair, weighted by its count, is the row-by-row fit."""
    from sklearn.linear_model import LogisticRegression

    from leadscore.features.mapping import ManualProcess

    rng = np.random.default_rng(2)
    points = rng.integers(0, 60, size=3000).astype(float)
    points[::11] = np.nan
    bant = pd.DataFrame({c: rng.random(3000) < 0.4 for c in ("b", "a", "n", "t")})
    frame = pd.concat([pd.DataFrame({"points": points}), bant], axis=1)
    y = (rng.random(3000) < 1 / (1 + np.exp(-(np.nan_to_num(points, nan=30) / 15 - 2)))).astype(int)
    processes = (
        (
            ManualProcess(name="points", kind="score", columns=["points"], threshold=40),
            np.nan_to_num(points, nan=np.nanmedian(points)),
        ),
        (
            ManualProcess(name="BANT", kind="count", columns=list("bant"), threshold=3),
            bant.sum(axis=1).to_numpy(dtype=float),
        ),
    )
    for process, x in processes:
        clf = ManualProcessClassifier(process).fit(frame, y)
        row_by_row = LogisticRegression().fit(x.reshape(-1, 1), y)
        np.testing.assert_allclose(clf.predict_proba(frame), row_by_row.predict_proba(x.reshape(-1, 1)), atol=1e-9)
