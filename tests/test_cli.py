"""The README's main job and the automation-facing outputs of the CLI, on the embedded store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app

pytestmark = pytest.mark.slow


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def test_demo_runs_the_main_job_end_to_end_and_serves_a_score(home: Path, tmp_path: Path) -> None:
    out = invoke("demo", "--workdir", str(tmp_path / "demo"), "--leads", "4000")
    for step in ("== generate", "== train", "== promote", "== score", "== hand-off", "== serve"):
        assert step in out
    loop = json.loads((tmp_path / "demo" / "loop-report" / "loop.json").read_text())
    assert loop["header"]["events"] > 0 and 0 < loop["header"]["matured_leads"] < loop["header"]["leads"]
    assert (tmp_path / "demo" / "loop-report" / "loop.html").exists()
    scores = pd.read_csv(tmp_path / "demo" / "scores.csv")
    assert len(scores) == 4000 and scores["model_version"].eq(1).all()
    assert set(scores["tier"]) == {"A", "B", "C", "D"}
    served = json.loads(out[out.index("== serve") + len("== serve") :])
    assert served["model"] == {"name": "lead-scoring", "version": "1"}
    assert 0 <= served["score"] <= 100 and served["reasons"]["positive"]
    assert (home / "mlflow.db").exists()


def test_generate_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    invoke("generate", "--out", str(tmp_path / "a"), "--leads", "500", "--seed", "3")
    invoke("generate", "--out", str(tmp_path / "b"), "--leads", "500", "--seed", "3", "--csv")
    a = pd.read_parquet(tmp_path / "a" / "leads.parquet")
    b = pd.read_csv(tmp_path / "b" / "leads.csv", keep_default_na=False, na_values=[""], parse_dates=["created_at"])
    assert list(a["lead_id"]) == list(b["lead_id"]) and list(a["source"]) == list(b["source"])


def test_train_json_is_one_object_and_history_records_the_alias(home: Path, crm_folder: Path) -> None:
    summary = json.loads(invoke("train", "--data", str(crm_folder), "--min-conversions", "40", "--no-report", "--json"))
    assert summary["version"] == "1" and summary["alias"] == "challenger"
    assert 0.5 < summary["metrics"]["model"]["roc_auc"] <= 1
    promoted = json.loads(invoke("promote", "--json"))
    assert promoted["promoted"] is True and promoted["candidate"] == "1"
    moves = [json.loads(line) for line in invoke("history", "--json").splitlines()]
    assert [(m["alias"], m["to_version"]) for m in moves] == [("champion", "1"), ("challenger", "1")]
