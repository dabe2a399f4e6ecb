"""Issue 13: ``leadscore inspect`` drafts a mapping that trains as it is; messy exports go in without pandas;
``score`` refuses a file that lacks the model's features.

The exports are written by the messy-export generator (``training.messy``), the same synthetic CRM the
way real tools export it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.inspect import inspect_export, mapping_yaml
from leadscore.features.mapping import Mapping


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("messy")
    code, _, err = run("generate", "--out", str(out), "--leads", "3000", "--seed", "3", "--export-style", "messy")
    assert code == 0, err
    return out


def test_the_messy_exports_look_like_real_ones(exports: Path) -> None:
    raw = (exports / "telemarketing.csv").read_bytes()
    header = raw.split(b"\n")[0].decode("cp1252")
    assert header.count(";") >= 5 and "," not in header and "id" not in header.lower().split(";")
    assert b";unknown;" in raw and b";yes" in raw and b";no" in raw
    mql = (exports / "funnel" / "mql.csv").read_bytes()
    assert mql.startswith(b"\xef\xbb\xbf")
    dates = pd.read_csv(exports / "funnel" / "mql.csv", encoding="utf-8-sig")["first_contact_date"]
    assert (dates.str.slice(0, 2).astype(int) > 12).any()  # day first: some "days" are above 12
    won = pd.read_csv(exports / "funnel" / "won.csv")
    assert set(won["mql_id"]) <= set(pd.read_csv(exports / "funnel" / "mql.csv", encoding="utf-8-sig")["mql_id"])


def test_inspect_drafts_the_funnel_export(exports: Path) -> None:
    draft = inspect_export(exports / "funnel")
    assert draft.main.name == "mql.csv" and draft.id == "mql_id"
    assert (draft.created_at, draft.created_format) == ("first_contact_date", "%d/%m/%Y %H:%M")
    assert draft.conversions == {"table": "won.csv", "id": "mql_id", "at": "won_date", "format": "%d/%m/%Y %H:%M"}
    assert draft.lookups == [{"table": "accounts.csv", "on": "account_id"}]
    roles = {c.name: (c.role, c.reason) for c in draft.columns}
    assert roles["lead_status"][0] == "exclude" and "post-outcome" in roles["lead_status"][1]
    assert roles["contact_email"][0] == "skip"
    mapping = Mapping.model_validate(yaml.safe_load(mapping_yaml(draft)))
    assert {"industry", "employees", "web_visits_7d"} <= set(mapping.feature_columns)
    assert "lead_status" in mapping.exclude and "unknown" in mapping.missing_values


@pytest.mark.parametrize("shape", ["funnel", "telemarketing.csv"])
def test_inspect_then_train_works_as_drafted(exports: Path, home: Path, tmp_path: Path, shape: str) -> None:
    data, draft = exports / shape, tmp_path / "draft.yaml"
    code, out, err = run("inspect", "--data", str(data), "--out", str(draft))
    assert code == 0, err
    assert "decision" in out and Path(draft).exists()
    code, out, err = run(
        "train", "--data", str(data), "--config", str(draft), "--min-conversions", "40", "--no-report", "--json"
    )
    assert code == 0, err
    assert '"version": "1"' in out
    code, out, err = run(
        "evaluate", "--data", str(data), "--model-uri", "models:/lead-scoring/1", "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    assert ("time split" if shape == "funnel" else "file-order split") in out.splitlines()[0]


def test_inspect_prints_the_label_with_its_values(exports: Path) -> None:
    code, out, err = run("inspect", "--data", str(exports / "telemarketing.csv"))
    assert code == 0, err
    label = next(line for line in out.splitlines() if line.startswith("label: "))
    assert "'y', positive 'yes'" in label and "'no' (" in label
    assert "form: flat" in out and "split: file_order" in out  # no --out: the draft follows the summary


def test_inspect_reads_the_telemarketing_export_as_sorted_without_id(exports: Path) -> None:
    draft = inspect_export(exports / "telemarketing.csv")
    assert draft.id is None and draft.split == "file_order" and "month" in draft.split_reason
    assert (draft.label, draft.positive) == ("y", "yes")
    assert {c.name for c in draft.columns if c.role == "feature" and c.kind == "boolean"} == {"demo"}


def flat_with_suspects(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    visits = rng.integers(0, 10, n)
    y = rng.random(n) < 0.1 + 0.05 * visits
    return pd.DataFrame(
        {
            "Lead Id": [f"L{i}" for i in range(n)],
            "visits": visits,
            "source": rng.choice(["web", "event"], n),
            "Deal Stage": np.where(y, "Closed", rng.choice(["Open", "Closed"], n)),
            "follow_up_note": np.where(y, rng.choice(["call back", "sent deck"], n), ""),
            "rep_rating": np.where(y, 8, 2) + rng.integers(0, 3, n),
            "region": "EU",
            "created": pd.date_range("2024-01-01", periods=n, freq="h").strftime("%m/%d/%Y"),
            "Converted": y.astype(int),
        }
    )


def test_inspect_excludes_leakage_suspects_with_their_reason(tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    flat_with_suspects().to_csv(path, index=False)
    draft = inspect_export(path)
    roles = {c.name: (c.role, c.reason) for c in draft.columns}
    assert roles["Deal Stage"] == ("exclude", "leakage suspect: name looks post-outcome")
    assert roles["follow_up_note"][0] == "exclude" and "filled for 100% of converted" in roles["follow_up_note"][1]
    assert roles["rep_rating"][0] == "exclude" and "holdout AUC" in roles["rep_rating"][1]
    assert roles["region"] == ("exclude", "constant: carries no information")
    assert roles["visits"][0] == roles["source"][0] == "feature"
    assert (draft.id, draft.label, draft.positive) == ("Lead Id", "Converted", "1")


def test_inspect_leaves_undecidable_dates_to_the_user(tmp_path: Path) -> None:
    frame = flat_with_suspects()
    frame["created"] = np.tile(["01/02/2024", "03/04/2024", "05/06/2024", "07/08/2024"], len(frame) // 4)
    path = tmp_path / "leads.csv"
    frame.to_csv(path, index=False)
    draft = inspect_export(path)
    assert draft.created_at is None
    created = next(c for c in draft.columns if c.name == "created")
    assert created.role == "exclude" and "format" in created.reason


# --- 7. score checks coverage ------------------------------------------------------------------------------------


def test_score_refuses_a_file_without_the_models_features(exports: Path, home: Path, tmp_path: Path) -> None:
    data, draft = exports / "telemarketing.csv", tmp_path / "draft.yaml"
    assert run("inspect", "--data", str(data), "--out", str(draft))[0] == 0
    code, _, err = run("train", "--data", str(data), "--config", str(draft), "--min-conversions", "40", "--no-report")
    assert code == 0, err
    table = pd.read_csv(data, sep=";", encoding="cp1252")
    thin = tmp_path / "thin.csv"
    table.drop(columns=["calls", "downloads", "demo"]).to_csv(thin, index=False)
    out = tmp_path / "scores.csv"
    uri = "models:/lead-scoring/1"
    code, _, err = run("score", "--input", str(thin), "--output", str(out), "--model-uri", uri)
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert "'calls'" in err and "'demo'" in err and "of its importance" in err and "--allow-missing-features" in err
    assert not out.exists()
    code, _, err = run(
        "score", "--input", str(thin), "--output", str(out), "--model-uri", uri, "--allow-missing-features"
    )
    assert code == 0 and err.startswith("warning: ") and out.exists()
    code, _, err = run("score", "--input", str(data), "--output", str(out), "--model-uri", uri)
    assert code == 0 and "warning" not in err


def test_inspect_drafts_a_crm_folder_with_its_manual_processes(crm_folder: Path, home: Path, tmp_path: Path) -> None:
    draft = inspect_export(crm_folder)
    assert (draft.form, draft.id, draft.created_at) == ("crm", "lead_id", "created_at")
    roles = {c.name: c.role for c in draft.columns}
    assert roles["email"] == roles["name"] == "skip"
    assert roles["is_mql"] == "manual" and roles["region"] == "feature"
    mapping = Mapping.model_validate(yaml.safe_load(mapping_yaml(draft)))
    assert [m.name for m in mapping.manual] == ["MQL flag", "Manual points", "BANT"]
    assert "NA" not in mapping.missing_values  # North America, not a missing value
    assert not {"email", "name", "is_mql"} & set(mapping.feature_columns)


def test_score_joins_the_lookups_beside_the_input(exports: Path, home: Path, tmp_path: Path) -> None:
    data, draft = exports / "funnel", tmp_path / "draft.yaml"
    assert run("inspect", "--data", str(data), "--out", str(draft))[0] == 0
    code, _, err = run("train", "--data", str(data), "--config", str(draft), "--min-conversions", "40", "--no-report")
    assert code == 0, err
    out, uri = tmp_path / "scores.csv", "models:/lead-scoring/1"
    code, _, err = run("score", "--input", str(data / "mql.csv"), "--output", str(out), "--model-uri", uri)
    assert code == 0 and "warning" not in err, err
    assert pd.read_csv(out)["mql_id"].tolist() == pd.read_csv(data / "mql.csv", encoding="utf-8-sig")["mql_id"].tolist()
    alone = tmp_path / "alone" / "mql.csv"
    alone.parent.mkdir()
    alone.write_bytes((data / "mql.csv").read_bytes())
    code, _, err = run("score", "--input", str(alone), "--output", str(tmp_path / "s2.csv"), "--model-uri", uri)
    assert code == 2 and "'industry'" in err and "'employees'" in err


@pytest.mark.parametrize("shape", ["funnel", "telemarketing.csv"])
def test_the_shipped_mappings_read_the_messy_exports(exports: Path, shape: str) -> None:
    from leadscore.features.build import LABEL
    from leadscore.features.flat import build_flat
    from leadscore.features.mapping import load_mapping

    name = "messy-funnel.yaml" if shape == "funnel" else "messy-telemarketing.yaml"
    tf = build_flat(exports / shape, load_mapping(Path(__file__).parents[1] / "data" / "mappings" / name))
    assert tf.unused == [] and 0.05 < tf.frame[LABEL].mean() < 0.4
    assert tf.split_rule == ("time" if shape == "funnel" else "file_order")


def opportunity_export(folder: Path, n: int = 3000, seed: int = 0) -> Path:
    """A CRM opportunity export in four files: deals (stage Won / Lost / Engaging / Prospecting), accounts,
    products and sales teams, joined by key. Wins depend on the account's sector and the product."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sectors = ["retail", "software", "medical", "finance"]
    accounts = pd.DataFrame(
        {
            "account": [f"Acc {i}" for i in range(80)],
            "sector": rng.choice(sectors, 80),
            "employees": rng.integers(5, 9000, 80),
        }
    )
    products = pd.DataFrame({"product": ["GTX Basic", "GTX Pro", "MG Special"], "series": ["GTX", "GTX", "MG"]})
    teams = pd.DataFrame(
        {"sales_agent": [f"Agent {i}" for i in range(12)], "regional_office": rng.choice(["East", "West"], 12)}
    )
    account = rng.integers(0, 80, n)
    product = rng.integers(0, 3, n)
    logit = -0.5 + 1.2 * (accounts["sector"].to_numpy()[account] == "software") + 0.8 * (product == 1)
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    engage = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 500, n)), unit="D")
    closed = rng.random(n) < 0.8
    stage = np.where(closed, np.where(won, "Won", "Lost"), rng.choice(["Engaging", "Prospecting"], n))
    deals = pd.DataFrame(
        {
            "opportunity_id": [f"{rng.integers(16**7, 16**8):08X}" for _ in range(n)],
            "sales_agent": rng.choice(teams["sales_agent"], n),
            "product": products["product"].to_numpy()[product],
            "account": accounts["account"].to_numpy()[account],
            "deal_stage": stage,
            "engage_date": pd.Series(engage.strftime("%Y-%m-%d")).where(stage != "Prospecting", ""),
            "close_date": pd.Series((engage + pd.Timedelta(days=30)).strftime("%Y-%m-%d")).where(closed, ""),
            "close_value": np.where(closed & won, rng.integers(500, 5000, n), 0),
        }
    ).drop_duplicates("opportunity_id")
    for name, frame in {"deals": deals, "accounts": accounts, "products": products, "sales_teams": teams}.items():
        frame.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_a_four_file_opportunity_export_inspects_and_trains(home: Path, tmp_path: Path) -> None:
    folder = opportunity_export(tmp_path / "crm")
    draft = inspect_export(folder)
    assert draft.main.name == "deals.csv" and draft.id == "opportunity_id"
    assert sorted(lk["table"] for lk in draft.lookups) == ["accounts.csv", "products.csv", "sales_teams.csv"]
    assert (draft.label, draft.positive, draft.negative) == ("deal_stage", "won", ["lost"])
    assert draft.created_at == "engage_date"
    roles = {c.name: c.role for c in draft.columns}
    assert roles["close_date"] == roles["close_value"] == "exclude"
    config = tmp_path / "draft.yaml"
    config.write_text(mapping_yaml(draft))
    code, _, err = run(
        "train", "--data", str(folder), "--config", str(config), "--min-conversions", "40", "--no-report"
    )
    assert code == 0, err
    assert "outcome not known yet" in err and "'engaging'" in err


def test_the_messy_exports_are_reproducible(tmp_path: Path) -> None:
    from leadscore.training.messy import write_messy_exports

    first = write_messy_exports(tmp_path / "a", leads=500, seed=5)
    second = write_messy_exports(tmp_path / "b", leads=500, seed=5)
    other = write_messy_exports(tmp_path / "c", leads=500, seed=6)
    assert all(first[k].read_bytes() == second[k].read_bytes() for k in first)
    assert first["mql"].read_bytes() != other["mql"].read_bytes()
