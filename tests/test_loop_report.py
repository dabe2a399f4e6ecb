"""The loop report: outcomes per lead from out-of-order events, SLA edges, matured against young cohorts,
calibration flags, estimated AUC, drift, and the CLI writing HTML, JSON and CSV (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.mapping import Mapping
from leadscore.models.drift import compare, reference_of
from leadscore.models.serving_form import load_scorer
from leadscore.models.settings import MlflowSettings
from leadscore.training.handoff import fill_database, play
from leadscore.training.loop_report import build
from leadscore.training.loop_report.figures import (
    LoopData,
    compute,
    drift,
    estimated_auc,
    lead_outcomes,
    realized_auc,
    realized_vs_predicted,
)
from leadscore.training.train import FitResult, TrainOptions, register_fit
from tests.factories import make_crm
from tests.postgres import PostgresServer

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def scores(*rows: tuple[str, float, datetime, float | None]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "request_id": f"r-{lead}",
                "lead_hash": lead,
                "probability": p,
                "score": int(p * 100),
                "tier": "A",
                "queue": "sdr",
                "sla_hours": sla,
                "scored_at": at,
                "model_input": json.dumps({"source": "web", "employees": 50}),
            }
            for lead, p, at, sla in rows
        ]
    )


def events(*rows: tuple[str, str, datetime] | tuple[str, str, datetime, dict[str, Any]]) -> pd.DataFrame:
    out = []
    for row in rows:
        lead, kind, at, *extra = row
        out.append({"lead_hash": lead, "kind": kind, "occurred_at": at, "actor": "a", "reason": None, "amount": None})
        out[-1].update(extra[0] if extra else {})
    return pd.DataFrame(out, columns=["lead_hash", "kind", "occurred_at", "actor", "reason", "amount"])


def outcomes(s: pd.DataFrame, e: pd.DataFrame, horizon: int = 90) -> pd.DataFrame:
    data = LoopData(scores=s, events=e, as_of=AS_OF, horizon_days=horizon, segments=["source"])
    return lead_outcomes(data).set_index("lead_hash")


def test_events_count_in_the_order_they_happened_not_the_order_they_arrived() -> None:
    t = AS_OF - timedelta(days=30)
    s = scores(("a", 0.3, t, 24.0))
    e = events(  # arrival order: the close first, the acceptance last
        ("a", "closed_lost", t + timedelta(days=20)),
        ("a", "closed_won", t + timedelta(days=10), {"amount": 9000.0}),
        ("a", "opportunity_created", t + timedelta(days=3), {"amount": 8000.0}),
        ("a", "contacted", t + timedelta(hours=5)),
        ("a", "accepted", t + timedelta(hours=2)),
    )
    row = outcomes(s, e).loc["a"]
    assert row["first_touch_at"] == pd.Timestamp(t + timedelta(hours=2))
    assert row["hours_to_touch"] == pytest.approx(2.0)
    assert not row["won"]  # lost after it was won: the latest close counts
    assert row["pipeline"] == 8000.0 and row["converted"]
    reversed_rows = outcomes(s, e.iloc[::-1].reset_index(drop=True)).loc["a"]
    assert reversed_rows.drop("request_id").equals(row.drop("request_id"))


def test_sla_edges() -> None:
    t = AS_OF - timedelta(days=2)
    s = scores(
        ("at-due", 0.2, t, 24.0),
        ("after-due", 0.2, t, 24.0),
        ("never", 0.2, t, 24.0),
        ("not-due-yet", 0.2, AS_OF - timedelta(hours=1), 24.0),
        ("touch-before-score", 0.2, t, 24.0),
        ("rejected", 0.2, t, 24.0),
        ("nurture", 0.2, t, None),
    )
    e = events(
        ("at-due", "accepted", t + timedelta(hours=24)),
        ("after-due", "contacted", t + timedelta(hours=24, seconds=1)),
        ("touch-before-score", "accepted", t - timedelta(minutes=1)),
        ("rejected", "rejected", t + timedelta(hours=3), {"reason": "no_budget"}),
    )
    status = outcomes(s, e)["sla_status"].to_dict()
    assert status == {
        "at-due": "on time",
        "after-due": "late",
        "never": "overdue",
        "not-due-yet": "pending",
        "touch-before-score": "overdue",
        "rejected": "on time",
        "nurture": "no SLA",
    }


def test_only_matured_cohorts_are_compared_with_the_prediction() -> None:
    s = scores(
        ("old-won", 0.5, AS_OF - timedelta(days=91), 24.0),
        ("old-late-opp", 0.5, AS_OF - timedelta(days=120), 24.0),
        ("young", 0.5, AS_OF - timedelta(days=89), 24.0),
    )
    e = events(
        ("old-won", "opportunity_created", AS_OF - timedelta(days=80), {"amount": 1.0}),
        ("old-late-opp", "opportunity_created", AS_OF - timedelta(days=10), {"amount": 1.0}),  # 110 days in
        ("young", "opportunity_created", AS_OF - timedelta(days=88), {"amount": 1.0}),
    )
    leads = outcomes(s, e)
    assert leads["matured"].to_dict() == {"old-won": True, "old-late-opp": True, "young": False}
    assert leads["converted"].to_dict() == {"old-won": True, "old-late-opp": False, "young": True}
    overall = next(r for r in realized_vs_predicted(leads.reset_index()) if r["tier"] == "all")
    assert overall["leads"] == 2 and overall["conversions"] == 1


@pytest.mark.parametrize(("true_rate", "flagged"), [(0.20, False), (0.32, True)], ids=["calibrated", "departs"])
def test_a_tier_is_flagged_when_its_prediction_lies_outside_the_interval(true_rate: float, flagged: bool) -> None:
    rng = np.random.default_rng(3)
    n = 1500
    at = AS_OF - timedelta(days=100)
    s = scores(*[(f"l{i}", 0.2, at, 24.0) for i in range(n)])
    won = np.flatnonzero(rng.random(n) < true_rate)
    e = events(*[(f"l{i}", "opportunity_created", at + timedelta(days=5), {"amount": 1.0}) for i in won])
    (tier, _all) = realized_vs_predicted(outcomes(s, e).reset_index())
    assert tier["tier"] == "A" and tier["departs"] is flagged
    assert tier["ci_low"] < tier["realized"] < tier["ci_high"]


def test_estimated_auc_matches_brute_force_and_a_calibrated_sample() -> None:
    p = np.array([0.1, 0.4, 0.4, 0.8])
    num = sum(
        p[i] * (1 - p[j]) * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
        for i in range(4)
        for j in range(4)
        if i != j
    )
    den = sum(p[i] * (1 - p[j]) for i in range(4) for j in range(4) if i != j)
    assert estimated_auc(p) == pytest.approx(num / den)
    rng = np.random.default_rng(0)
    big = rng.beta(1.2, 6.0, 40_000)
    y = rng.random(len(big)) < big
    assert estimated_auc(big) == pytest.approx(realized_auc(y, big), abs=0.01)


def test_drift_flags_a_shifted_sample_and_not_a_resample() -> None:
    rng = np.random.default_rng(5)

    def sample(n: int, shift: float, paid: float) -> pd.DataFrame:
        employees = rng.lognormal(5 + shift, 1.0, n)
        source = np.where(rng.random(n) < paid, "paid", "web")
        return pd.DataFrame(
            {
                "probability": rng.beta(2 + 2 * shift, 8, n),
                "model_input": [
                    json.dumps({"employees": e, "source": s}) for e, s in zip(employees, source, strict=True)
                ],
            }
        )

    reference = sample(5000, 0.0, 0.2)
    same = {r["what"]: r["shifted"] for r in drift(reference, sample(5000, 0.0, 0.2))}
    shifted = {r["what"]: r for r in drift(reference, sample(5000, 1.0, 0.6))}
    assert same == {"score (probability)": False, "employees": False, "source": False}
    assert all(r["shifted"] for r in shifted.values())
    assert shifted["employees"]["measure"] == "PSI" and shifted["source"]["measure"] == "JS"


def _simulated(n: int = 3000) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, datetime]:
    tables = make_crm(n, 11)
    leads, opps = tables.leads, tables.outcomes
    rng = np.random.default_rng(2)
    p = np.clip(rng.beta(1.5, 8.0, len(leads)), 0.001, 0.99)
    tier = np.select([p > 0.3, p > 0.15, p > 0.07], ["A", "B", "C"], "D")
    scored = pd.DataFrame(
        {
            "lead_id": leads["lead_id"],
            "probability": p,
            "score": (p * 100).astype(int),
            "tier": tier,
            "queue": pd.Series(tier).map({"A": "account-executive", "B": "sdr", "C": "sdr", "D": "nurture"}),
            "sla_hours": pd.Series(tier).map({"A": 1.0, "B": 24.0, "C": 48.0, "D": np.nan}),
            "scored_at": pd.to_datetime(leads["created_at"], utc=True),
        }
    )
    as_of = scored["scored_at"].max().to_pydatetime()
    return scored, leads, opps, as_of


def test_the_simulated_hand_off_is_seeded_and_plausible() -> None:
    scored, leads, opps, as_of = _simulated()
    first, again = play(scored, leads, opps, as_of, seed=4), play(scored, leads, opps, as_of, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert (first["occurred_at"] <= pd.Timestamp(as_of)).all()
    assert set(first["kind"]) >= {"accepted", "rejected", "recycled", "opportunity_created", "closed_won"}
    kinds = first.pivot_table(index="lead_id", columns="kind", values="occurred_at", aggfunc="min")
    with_opp = kinds[kinds["opportunity_created"].notna()]
    touched = with_opp[["accepted", "contacted"]].min(axis=1)
    assert (touched <= with_opp["opportunity_created"]).all()  # no opportunity before the first touch
    rejected = first[first["kind"] == "rejected"].merge(leads, on="lead_id")
    small = rejected["employees"] < 100
    assert (rejected.loc[small, "reason"] == "not_icp").mean() > (rejected.loc[~small, "reason"] == "not_icp").mean()


def _fill(url: str) -> datetime:
    scored, leads, opps, as_of = _simulated()
    engine = create_engine(url)
    fill_database(engine, scored, leads, opps, as_of, seed=1)
    engine.dispose()
    return as_of


def test_loop_report_cli_writes_html_json_and_csv(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    as_of = _fill(url)
    since = (as_of - timedelta(days=180)).date().isoformat()
    until = (as_of + timedelta(days=1)).date().isoformat()
    out = tmp_path / "report"
    args = ["loop-report", "--since", since, "--until", until, "--as-of", as_of.isoformat(), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--db", url, "--segment", "source", "--segment", "region"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "loop.json").read_text())
    h = summary["header"]
    assert 0 < h["matured_leads"] < h["leads"]
    assert 0.1 < h["on_time"] < 0.95 and h["sla"]["late"] + h["sla"]["overdue"] > 0  # some SLA misses
    assert {r["tier"] for r in summary["tables"]["realized_vs_predicted"]} == {"A", "B", "C", "D", "all"}
    assert summary["tables"]["drift_previous_period"], "the previous 180 days are compared with"
    assert summary["tables"]["drift"] == []  # the simulated version is not in a registry: no holdout reference
    assert [r["version"] for r in summary["tables"]["drift_references"]] == ["lead-scoring/demo"]
    assert any("lead-scoring/demo" in n and "no holdout reference" in n for n in summary["notes"])
    assert h["funnel_keys"] == ["source", "campaign"]
    for name in (
        "weekly",
        "by_tier",
        "by_queue",
        "by_source",
        "by_region",
        "rejection_reasons",
        "expected_vs_observed",
        "funnel_by_source",
        "funnel_by_campaign",
        "drift_previous_period",
    ):
        assert len(pd.read_csv(out / f"{name}.csv")) > 0
    html = (out / "loop.html").read_text()
    assert "Realized against predicted" in html and "data:image/png;base64," in html
    assert "Funnel: MQL → SAL → SQL → opportunity → won" in html and "no holdout reference" in html
    assert "http://" not in html and "https://" not in html  # offline
    assert "L0000" not in html and "lead_id" not in html


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2026-05-01", "--until", "2026-04-01"], "must come after --since"),
        (["--since", "May 1st", "--until", "2026-04-01"], "--since 'May 1st'"),
        (["--since", "2020-01-01", "--until", "2020-02-01"], "no scores from 2020-01-01"),
    ],
)
def test_loop_report_refuses_bad_windows_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    _fill(url)
    result = CliRunner().invoke(app, ["loop-report", *args, "--db", url, "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_loop_report_reads_the_same_figures_from_postgresql(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database("loop_report")
    as_of = _fill(url)
    lite = f"sqlite:///{tmp_path / 'loop.db'}"
    _fill(lite)
    window = (as_of - timedelta(days=180), as_of + timedelta(days=1))
    on_pg, on_sqlite = build(url, *window, as_of=as_of), build(lite, *window, as_of=as_of)
    assert on_pg["header"] == on_sqlite["header"]
    assert on_pg["tables"]["realized_vs_predicted"] == on_sqlite["tables"]["realized_vs_predicted"]


def test_events_export_writes_what_the_model_saw_with_its_conversions(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    as_of = _fill(url)
    out = tmp_path / "export"
    since = (as_of - timedelta(days=365)).date().isoformat()
    until = (as_of + timedelta(days=1)).date().isoformat()
    result = CliRunner().invoke(
        app, ["events", "export", "--out", str(out), "--since", since, "--until", until, "--db", url]
    )
    assert result.exit_code == 0, result.output
    leads = pd.read_csv(out / "leads.csv")
    conversions = pd.read_csv(out / "conversions.csv")
    mapping = Mapping.model_validate(yaml.safe_load((out / "mapping.yaml").read_text()))
    assert mapping.form == "flat" and mapping.conversions is not None and mapping.created_at == "scored_at"
    assert leads["lead_id"].is_unique and leads["lead_id"].str.fullmatch("[0-9a-f]{64}").all()  # hashed ids only
    assert {"email", "name"}.isdisjoint(leads.columns) and "source" in mapping.categorical
    assert set(conversions["lead_id"]) <= set(leads["lead_id"])
    joined = conversions.merge(leads[["lead_id", "scored_at"]], on="lead_id")
    assert (pd.to_datetime(joined["converted_at"]) >= pd.to_datetime(joined["scored_at"])).all()  # after the score
    assert 0 < len(conversions) < len(leads)


def _holdout_like(rng: np.random.Generator, n: int, shift: float = 0.0, paid: float = 0.2) -> pd.DataFrame:
    """Leads with one numeric, one categorical and one boolean feature, and a probability."""
    return pd.DataFrame(
        {
            "employees": np.where(rng.random(n) < 0.1, np.nan, rng.lognormal(5 + shift, 1.0, n)),
            "source": np.where(rng.random(n) < paid, "paid", "web"),
            "bant_budget": rng.random(n) < 0.4 + shift / 2,
            "probability": rng.beta(2 + 2 * shift, 8, n),
        }
    )


def _logged(frame: pd.DataFrame, version: str, model: str = "lead-scoring") -> pd.DataFrame:
    """``frame``'s leads as score-log rows of ``model``/``version`` scored a day apart from AS_OF - 60 days."""
    inputs = frame.drop(columns="probability").astype(object).where(frame.notna(), None)
    return pd.DataFrame(
        {
            "request_id": [f"{version}-{i}" for i in range(len(frame))],
            "lead_hash": [f"{version}-{i}" for i in range(len(frame))],
            "model_name": model,
            "model_version": version,
            "probability": frame["probability"],
            "score": (frame["probability"] * 100).astype(int),
            "tier": "A",
            "queue": "sdr",
            "sla_hours": 24.0,
            "scored_at": AS_OF - timedelta(days=60),
            "model_input": [json.dumps(r) for r in inputs.to_dict("records")],
        }
    )


def test_holdout_drift_flags_a_shifted_sample_and_not_an_unshifted_one() -> None:
    rng = np.random.default_rng(3)
    holdout = _holdout_like(rng, 4000)
    reference = reference_of(holdout, holdout["probability"], ["employees"], ["source"], ["bant_budget"])
    assert reference["score"]["kind"] == "number" and sum(reference["score"]["shares"]) == pytest.approx(1)
    assert reference["features"]["employees"]["shares"][-1] == pytest.approx(0.1, abs=0.02)  # the share missing
    scores = pd.concat(
        [
            _logged(_holdout_like(rng, 3000), "1"),
            _logged(_holdout_like(rng, 3000, shift=1.0, paid=0.6), "2"),
            _logged(_holdout_like(rng, 500), "3"),
        ],
        ignore_index=True,
    )
    data = LoopData(
        scores=scores,
        events=events(),
        as_of=AS_OF,
        references={
            "lead-scoring/1": reference,
            "lead-scoring/2": reference,
            "lead-scoring/3": "none recorded with this version",
        },
    )
    summary = compute(data)
    rows = {(r["version"], r["what"]): r for r in summary["tables"]["drift"]}
    what = ["score (probability)", "bant_budget", "employees", "source"]
    assert not any(rows["lead-scoring/1", w]["shifted"] for w in what)
    assert all(rows["lead-scoring/2", w]["shifted"] for w in what)
    assert [rows["lead-scoring/2", w]["measure"] for w in what] == ["PSI", "JS", "PSI", "JS"]
    assert not any(v == "lead-scoring/3" for v, _ in rows)  # no reference: nothing measured, and no crash
    versions = {r["version"]: r for r in summary["tables"]["drift_references"]}
    assert versions["lead-scoring/1"]["reference"] == "holdout" and versions["lead-scoring/1"]["holdout_rows"] == 4000
    assert versions["lead-scoring/3"] == {
        "version": "lead-scoring/3",
        "leads": 500,
        "holdout_rows": None,
        "reference": "none recorded with this version",
    }
    assert any("lead-scoring/3" in n and "no holdout reference" in n for n in summary["notes"])
    assert any("lead-scoring/2" in n and "employees has shifted" in n for n in summary["notes"])
    assert not any("lead-scoring/1" in n for n in summary["notes"])


def test_few_scores_are_measured_against_the_holdout_but_never_flagged() -> None:
    rng = np.random.default_rng(4)
    holdout = _holdout_like(rng, 4000)
    reference = reference_of(holdout, holdout["probability"], ["employees"], ["source"], ["bant_budget"])
    few = _logged(_holdout_like(rng, 50, shift=1.0, paid=0.9), "1")
    data = LoopData(scores=few, events=events(), as_of=AS_OF, references={"lead-scoring/1": reference})
    rows = compute(data)["tables"]["drift"]
    assert all(r["value"] is not None and not r["shifted"] for r in rows)
    assert next(r for r in rows if r["what"] == "source")["value"] > 0.1


def test_a_feature_missing_from_the_logged_inputs_is_reported_without_a_value() -> None:
    rng = np.random.default_rng(6)
    holdout = _holdout_like(rng, 2000)
    reference = reference_of(holdout, holdout["probability"], ["employees"], ["source"], ["bant_budget"])
    current = _logged(_holdout_like(rng, 1000).drop(columns="employees"), "1")
    rows = {
        r["what"]: r
        for r in compute(
            LoopData(scores=current, events=events(), as_of=AS_OF, references={"lead-scoring/1": reference})
        )["tables"]["drift"]
    }
    assert rows["employees"]["value"] is None and not rows["employees"]["shifted"]
    assert rows["employees"]["note"] == "not in the logged model inputs"


def test_training_records_the_holdout_reference_with_the_model(fitted: FitResult, tmp_path: Path) -> None:
    reference = fitted.artifact.metadata["drift_reference"]
    tf = fitted.frame
    assert reference["rows"] == len(fitted.split.holdout)
    assert set(reference["features"]) == set(tf.feature_columns)
    kinds = {n: f["kind"] for n, f in reference["features"].items()}
    assert {kinds[n] for n in tf.numeric} == {"number"} and {kinds[n] for n in tf.categorical} == {"category"}
    for summary in [reference["score"], *reference["features"].values()]:
        shares = summary["shares"].values() if isinstance(summary["shares"], dict) else summary["shares"]
        assert sum(shares) == pytest.approx(1)
    # the serving form (arrays + JSON, no pickle) carries it to the registry
    path = fitted.artifact.scorer().save(tmp_path / "scorer.npz")
    assert load_scorer(path).metadata["drift_reference"] == json.loads(json.dumps(reference))
    # the holdout measured against its own reference: nothing has shifted
    rows = compare(reference, fitted.holdout_probability["model"], fitted.holdout)
    assert not any(r["shifted"] for r in rows) and max(r["value"] for r in rows) < 1e-9


def test_the_funnel_counts_each_stage_and_the_stages_before_it() -> None:
    t = AS_OF - timedelta(days=40)
    s = pd.concat(
        [
            scores(("won", 0.4, t, 24.0), ("opp-no-meeting", 0.3, t, 24.0), ("sql", 0.2, t, 24.0)),
            scores(("sal", 0.2, t, 24.0), ("untouched", 0.1, t, 24.0), ("nurture", 0.05, t, None)),
        ],
        ignore_index=True,
    )
    s.loc[s["lead_hash"].isin(["sal", "untouched", "nurture"]), "model_input"] = json.dumps({"source": "paid"})
    e = events(
        ("won", "accepted", t + timedelta(hours=1)),
        ("won", "meeting_booked", t + timedelta(days=1)),
        ("won", "opportunity_created", t + timedelta(days=5), {"amount": 100.0}),
        ("won", "closed_won", t + timedelta(days=20), {"amount": 120.0}),
        ("opp-no-meeting", "opportunity_created", t + timedelta(days=3), {"amount": 50.0}),
        ("sql", "accepted", t + timedelta(hours=2)),
        ("sql", "meeting_booked", t + timedelta(days=2)),
        ("sal", "accepted", t + timedelta(hours=3)),
    )
    data = LoopData(scores=s, events=e, as_of=AS_OF, references={})
    summary = compute(data)
    assert summary["header"]["funnel_keys"] == ["source"]  # no campaign in the logged inputs
    rows = {r["source"]: r for r in summary["tables"]["funnel_by_source"]}
    web, paid, every = rows["web"], rows["paid"], rows["all"]
    assert [web[k] for k in ("scored", "mql", "sal", "sql", "opportunity", "won")] == [3, 3, 3, 3, 2, 1]
    assert [paid[k] for k in ("scored", "mql", "sal", "sql", "opportunity", "won")] == [3, 2, 1, 0, 0, 0]
    assert every["mql"] == 5 and every["won"] == 1
    assert web["opportunity_to_won"] == 0.5 and paid["mql_to_sal"] == 0.5 and paid["sal_to_sql"] == 0.0
    assert every["mql_to_won"] == pytest.approx(1 / 5) and web["won_amount"] == 120.0
    assert [r["source"] for r in summary["tables"]["funnel_by_source"]] == ["web", "paid", "all"]  # most MQLs first


@pytest.mark.integration
@pytest.mark.slow
def test_the_report_reads_each_versions_holdout_reference_from_the_registry(
    server_settings: MlflowSettings, fitted: FitResult, crm_folder: Path, tmp_path: Path
) -> None:
    registered = register_fit(fitted, TrainOptions(data=crm_folder, min_conversions=40), server_settings)
    scored, leads, opps, as_of = _simulated()
    url = f"sqlite:///{tmp_path / 'loop.db'}"
    engine = create_engine(url)
    fill_database(engine, scored, leads, opps, as_of, seed=1, model=(server_settings.model_name, registered.version))
    with engine.begin() as conn:  # some scores of a version the registry does not have
        conn.execute(text("update score_log set model_version = '99' where id <= 300"))
    engine.dispose()
    summary = build(url, as_of - timedelta(days=4000), as_of + timedelta(days=1), as_of=as_of, settings=server_settings)
    mine, missing = f"{server_settings.model_name}/{registered.version}", f"{server_settings.model_name}/99"
    versions = {r["version"]: r for r in summary["tables"]["drift_references"]}
    assert versions[mine]["reference"] == "holdout" and versions[mine]["holdout_rows"] == len(fitted.split.holdout)
    assert versions[missing]["reference"].startswith("could not be read from the registry")
    rows = {r["what"]: r for r in summary["tables"]["drift"] if r["version"] == mine}
    assert {"score (probability)", "source", "employees"} <= set(rows)
    assert rows["employees"]["value"] is not None and rows["employees"]["measure"] == "PSI"
    assert all(r["version"] == mine for r in summary["tables"]["drift"])
