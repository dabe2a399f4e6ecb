"""Model selection: each candidate family wins on data made for it, and each serves with exact reasons."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from leadscore.features.encoder import FeatureEncoder
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.blend import BlendModel
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.linear import SplineLogisticModel
from leadscore.models.routing import default_routing, fit_routing
from leadscore.models.scorer import SCORER_FILE, Scorer
from leadscore.models.selection import fold_rows, select_model, selection_rows

N = 4000


def frame(kind: str, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, FeatureEncoder]:
    """Leads in time order whose conversion is additive in ten numbers (``additive``: the spline logistic
    model's case), an XOR of two numbers' signs (``interaction``: trees), or that XOR plus a 60-level
    campaign with strong effects of its own (``both``: trees cannot use so many small levels, the linear
    model cannot see the XOR; the blend has both). A category and a flag add small effects."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, 12))
    source = rng.choice(["web", "event", "referral", "paid"], N)
    campaign = rng.integers(0, 60, N)
    flag = rng.random(N) < 0.3
    logit = -1.5 + 0.3 * (source == "referral") + 0.2 * flag
    if kind == "additive":
        logit = logit + x[:, :10] @ np.linspace(0.15, 0.45, 10)
    if kind == "interaction":
        logit = logit + 2.2 * np.sign(x[:, 10]) * np.sign(x[:, 11])
    if kind == "both":
        logit = logit + 1.2 * rng.normal(size=60)[campaign] + 1.5 * np.sign(x[:, 10]) * np.sign(x[:, 11])
    y = (rng.random(N) < 1 / (1 + np.exp(-logit))).astype(int)
    numbers = [f"x{i}" for i in (range(12) if kind != "both" else range(6, 12))]
    data = pd.DataFrame(x, columns=[f"x{i}" for i in range(12)])[numbers]
    data = data.assign(source=source, campaign=[f"c{c}" for c in campaign], flag=flag)
    data.loc[rng.random(N) < 0.05, numbers[0]] = np.nan
    return data, y, FeatureEncoder(categorical=["source", "campaign"], numeric=numbers, boolean=["flag"])


@pytest.mark.parametrize(
    ("kind", "winner"), [("additive", "spline_logistic"), ("interaction", "lightgbm"), ("both", "blend")]
)
def test_each_candidate_family_wins_on_data_made_for_it(kind: str, winner: str) -> None:
    X, y, encoder = frame(kind)
    model, selection = select_model(X, y, encoder, LeadScoringModel(encoder), timed=True)
    figures = {name: round(c["mean_auc"], 4) for name, c in selection.candidates.items()}
    assert selection.winner == winner, figures
    assert set(selection.candidates) == {"lightgbm", "spline_logistic", "blend"}
    assert [c["chosen"] for c in selection.candidates.values()].count(True) == 1
    assert len(selection.candidates["lightgbm"]["grid"]) == 3
    expected = {"spline_logistic": SplineLogisticModel, "lightgbm": LeadScoringModel, "blend": BlendModel}[winner]
    assert type(model) is expected


def test_selection_is_seeded_and_sees_only_the_training_period(crm_tables, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadscore.training import train as train_module
    from tests.factories import fit_crm

    seen = {}
    real = train_module.select_model

    def spy(X: pd.DataFrame, y: np.ndarray, *args: object, **kwargs: object) -> object:
        seen["created"] = pd.to_datetime(X["created_at"]) if "created_at" in X else None
        seen["rows"] = len(X)
        return real(X, y, *args, **kwargs)

    monkeypatch.setattr(train_module, "select_model", spy)
    result = fit_crm(crm_tables)
    holdout_start = pd.to_datetime(result.holdout["created_at"]).min()
    assert seen["rows"] == len(result.split.train)
    assert seen["created"].max() <= holdout_start  # the holdout never takes part in choosing the model
    assert result.artifact.metadata["selection"]["winner"] == result.artifact.metadata["model_kind"]
    X, y, encoder = frame("additive")
    first = select_model(X, y, encoder, LeadScoringModel(encoder))[1]
    assert first.summary() == select_model(X, y, encoder, LeadScoringModel(encoder))[1].summary()


def fitted_artifact(model: object, X: pd.DataFrame, y: np.ndarray) -> ScoringArtifact:
    model.fit(X.iloc[:3000], y[:3000])
    p = model.predict_proba(X.iloc[3000:])[:, 1]
    return ScoringArtifact(
        model=model,
        routing=fit_routing(default_routing(), p, None),
        score_reference=np.quantile(p, np.linspace(0, 1, 101)),
        metadata={"target": "opportunity"},
    )


@pytest.mark.parametrize("kind", ["spline_logistic", "blend"])
def test_linear_and_blend_models_serve_from_the_file_with_exact_reasons(kind: str, tmp_path: Path) -> None:
    X, y, encoder = frame("both")
    linear = SplineLogisticModel(encoder)
    model = linear if kind == "spline_logistic" else BlendModel(encoder, LeadScoringModel(encoder), linear)
    artifact = fitted_artifact(clone(model), X, y)
    scorer = Scorer.load(artifact.scorer().save(tmp_path / SCORER_FILE))
    assert scorer.kind == ("linear" if kind == "spline_logistic" else "blend")
    holdout = X.iloc[3000:]
    expected = artifact.score_frame(holdout)["probability"].to_numpy()
    np.testing.assert_allclose(scorer.score_table(holdout)["probability"], expected, rtol=0, atol=1e-9)
    records = holdout.to_dict("records")
    answers = scorer.score_records(records, explain=True)
    np.testing.assert_allclose([a["probability"] for a in answers], expected, rtol=0, atol=1e-9)
    # exact reasons: the contributions add up to the margin, less one constant for every lead
    matrix = scorer.columns.transform(holdout)
    margin, contributions = scorer.explain(matrix)
    constant = margin - contributions.sum(axis=1)
    np.testing.assert_allclose(constant, constant[0], rtol=0, atol=1e-9)
    assert answers[0]["reasons"]["positive"] or answers[0]["reasons"]["negative"]
    top = answers[0]["reasons"]["positive"][0] if answers[0]["reasons"]["positive"] else None
    if top is not None:
        j = scorer.input_columns.index(top["feature"])
        assert top["contribution"] == round(float(contributions[0, j] * scorer.calibration.slope), 4)


def test_a_linear_models_terms_are_centred_and_extrapolate_flat() -> None:
    X, y, encoder = frame("additive")
    model = SplineLogisticModel(encoder).fit(X, y)
    terms = model.terms_.contributions(model.encoder_.transform(X))
    np.testing.assert_allclose(terms.mean(axis=0), 0, atol=1e-9)  # reasons are against the average lead
    far = X.head(2).copy()
    far["x9"] = [1e6, 1e9]  # beyond every training value: the term stays at its last knot's value
    out = model.terms_.contributions(model.encoder_.transform(far))[:, model.encoder_.columns_.names.index("x9")]
    assert out[0] == out[1]


def test_the_serving_form_of_each_kind_scores_a_lead_with_reasons_well_under_a_millisecond() -> None:
    X, y, encoder = frame("both")
    for model in (
        SplineLogisticModel(encoder),
        BlendModel(encoder, LeadScoringModel(encoder), SplineLogisticModel(encoder)),
    ):
        scorer = fitted_artifact(model, X, y).scorer()
        record = X.iloc[[3500]].to_dict("records")
        scorer.score_records(record)
        took = []
        for _ in range(300):
            began = time.perf_counter()
            scorer.score_records(record, explain=True)
            took.append(time.perf_counter() - began)
        assert np.median(took) < 1e-3, (scorer.kind, np.median(took))


def clocked_frame(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, FeatureEncoder]:
    """Leads in time order over 40 weeks, each week with a conversion rate of its own (a strong random
    effect), and a ``week`` column that says which: a clock. Only leads of weeks already seen can be
    scored by it; a weak number ``x`` is the one signal that carries into new weeks."""
    rng = np.random.default_rng(seed)
    week = np.repeat(np.arange(40), 150)
    x = rng.normal(size=len(week))
    logit = -1.0 + 2.0 * rng.normal(size=40)[week] + 0.3 * x
    y = (rng.random(len(week)) < 1 / (1 + np.exp(-logit))).astype(int)
    data = pd.DataFrame({"week": week.astype(float), "x": x, "source": rng.choice(["web", "event"], len(week))})
    return data, y, FeatureEncoder(categorical=["source"], numeric=["week", "x"])


def test_selection_scores_every_candidate_only_on_leads_newer_than_it_learned_from() -> None:
    """Cross-validation in time order cannot use the clock: each fold is scored on weeks it never saw, so
    the trees' AUC stays near what ``x`` alone gives. Shuffled folds (the untimed case) see every week
    and score far higher; were the timed folds or the row sample ever shuffled, the two would agree."""
    X, y, encoder = clocked_frame()
    timed = select_model(X, y, encoder, LeadScoringModel(encoder), timed=True, max_rows=4500)[1]
    shuffled = select_model(X, y, encoder, LeadScoringModel(encoder), timed=False, max_rows=4500)[1]
    assert timed.rows == 4500 and timed.of_rows == len(y)
    trees_timed = timed.candidates["lightgbm"]["mean_auc"]
    trees_shuffled = shuffled.candidates["lightgbm"]["mean_auc"]
    assert trees_timed < 0.62, trees_timed
    assert trees_shuffled > trees_timed + 0.1, (trees_timed, trees_shuffled)
    for fit_rows, score_rows in fold_rows(4500, 3, timed=True, seed=0):
        assert fit_rows.max() < score_rows.min()
    rows = selection_rows(len(y), 4500, seed=0)
    assert len(rows) == 4500 and (np.diff(rows) > 0).all() and rows[0] < 150 and rows[-1] >= len(y) - 150


def test_a_blend_without_time_order_fits_its_weights_on_a_random_share_of_the_rows() -> None:
    """A file not in time order (an export sorted by status, its converters mostly last): without ``timed``, the
    blend's weights come from a random share of the rows and its mean probability on a random holdout is close
    to the holdout's conversion rate; taken as time order, the file's tail sets them and overstates it by far
    more. Selection on untimed rows returns such a blend."""
    X, y, encoder = frame("both")
    order = np.argsort(y + np.random.default_rng(1).uniform(0.0, 2.0, N), kind="stable")
    X, y = X.iloc[order].reset_index(drop=True), y[order]
    holdout = np.random.default_rng(2).random(N) < 0.25
    train, test = np.flatnonzero(~holdout), np.flatnonzero(holdout)

    def bias(timed: bool) -> float:
        model = BlendModel(encoder, LeadScoringModel(encoder), SplineLogisticModel(encoder), timed=timed)
        p = model.fit(X.iloc[train], y[train]).predict_proba(X.iloc[test])[:, 1]
        return float(p.mean() - y[test].mean())

    random_share, tail = bias(timed=False), bias(timed=True)
    assert abs(random_share) < 0.05  # about two standard errors of a 600-row share's conversion rate
    assert tail > 0.25 and tail > 5 * abs(random_share)

    model, selection = select_model(X, y, encoder, LeadScoringModel(encoder), timed=False, seed=5)
    assert selection.winner == "blend"
    assert (model.timed, model.random_state) == (False, 5)
