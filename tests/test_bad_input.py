"""Bad input: one clear line naming the file, column or value; exit code 2; nothing logged, registered or half-written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app

FLAT_MAPPING = """
form: flat
id: lead_id
label: {column: converted}
categorical: [source]
numeric: [visits]
"""


def flat(tmp_path: Path, n: int = 400, positives: int = 150, **columns: object) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    label = np.zeros(n, dtype=int)
    label[:positives] = 1
    frame = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(n)],
            "source": rng.choice(["a", "b"], n),
            "visits": rng.integers(0, 9, n),
            "converted": label,
            **columns,
        }
    )
    data, mapping = tmp_path / "leads.csv", tmp_path / "mapping.yaml"
    frame.to_csv(data, index=False)
    mapping.write_text(FLAT_MAPPING)
    return data, mapping


def run_train(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.stderr


def assert_refused(home: Path, code: int, stderr: str, *needles: str) -> None:
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert not (home / "mlflow.db").exists(), "nothing may be logged or registered for bad input"


def test_missing_label_column(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    pd.read_csv(data).drop(columns=["converted"]).to_csv(data, index=False)
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "leads.csv", "'converted'")


def test_missing_id_column_in_crm_leads(home: Path, crm_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    for name in ("activities", "outcomes"):
        (folder / f"{name}.parquet").write_bytes((crm_folder / f"{name}.parquet").read_bytes())
    pd.read_parquet(crm_folder / "leads.parquet").drop(columns=["lead_id"]).to_parquet(folder / "leads.parquet")
    assert_refused(home, *run_train("--data", str(folder)), "leads.parquet", "'lead_id'")


def test_unparseable_dates(home: Path, crm_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    folder.mkdir()
    for name in ("activities", "outcomes"):
        (folder / f"{name}.parquet").write_bytes((crm_folder / f"{name}.parquet").read_bytes())
    leads = pd.read_parquet(crm_folder / "leads.parquet")
    leads["created_at"] = leads["created_at"].astype(str)
    leads.loc[3, "created_at"] = "the 32nd of Smarch"
    leads.to_csv(folder / "leads.csv", index=False)
    assert_refused(home, *run_train("--data", str(folder)), "leads.csv", "'created_at'", "the 32nd of Smarch")


def test_no_positive_labels(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path, positives=0)
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "no positive labels")


def test_fewer_conversions_than_the_minimum_states_the_minimum(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path, positives=60)
    assert_refused(
        home, *run_train("--data", str(data), "--config", str(mapping)), "only 60 conversions", "at least 120"
    )


def test_mapping_names_a_column_that_is_not_there(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    mapping.write_text(FLAT_MAPPING.replace("[visits]", "[visits, page_views]"))
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "leads.csv", "'page_views'")


def test_invalid_mapping_field_names_the_file_and_field(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    mapping.write_text(FLAT_MAPPING.replace("form: flat", "form: spreadsheet"))
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "mapping.yaml", "'form'")


def test_empty_file(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    data.write_text("")
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "leads.csv", "empty")


def test_header_only_file(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    data.write_text("lead_id,source,visits,converted\n")
    assert_refused(home, *run_train("--data", str(data), "--config", str(mapping)), "leads.csv", "no rows")


def test_missing_data_path(home: Path, tmp_path: Path) -> None:
    assert_refused(home, *run_train("--data", str(tmp_path / "nope")), "nope")


def test_score_output_is_never_left_half_written(home: Path, tmp_path: Path) -> None:
    """A refused scoring run leaves no output (and no temporary file) behind."""
    data, _ = flat(tmp_path)
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        app, ["score", "--input", str(data), "--output", str(out), "--model-uri", "models:/nothing@champion"]
    )
    assert result.exit_code == 2
    assert "nothing" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".scores.csv*"))


def test_bad_routing_file_names_the_file_and_field(home: Path, tmp_path: Path) -> None:
    data, mapping = flat(tmp_path)
    routing = tmp_path / "routing.yaml"
    routing.write_text("tiers:\n  - {name: A, queue: ae, share: 0.1}\n  - {name: D, queue: nurture, share: 0.5}\n")
    assert_refused(
        home,
        *run_train("--data", str(data), "--config", str(mapping), "--routing", str(routing)),
        "routing.yaml",
        "last tier",
    )


def test_a_bad_setting_is_one_line_naming_its_variable(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadscore.serving.settings import get_serving_settings

    cases = [
        ({"LEADSCORE_MAX_INFLIGHT_LEADS": "lots"}, ["LEADSCORE_MAX_INFLIGHT_LEADS='lots'", "integer"]),
        (  # the single leads' share must leave batches room
            {"LEADSCORE_MAX_INFLIGHT_LEADS": "32", "LEADSCORE_MAX_INFLIGHT_SINGLE_LEADS": "32"},
            ["LEADSCORE_MAX_INFLIGHT_SINGLE_LEADS (32) must be less than LEADSCORE_MAX_INFLIGHT_LEADS (32)"],
        ),
    ]
    for variables, needles in cases:
        with monkeypatch.context() as env:
            for name, value in variables.items():
                env.setenv(name, value)
            get_serving_settings.cache_clear()
            result = CliRunner().invoke(app, ["serve", "--port", "1"])
            get_serving_settings.cache_clear()
        assert_refused(home, result.exit_code, result.stderr, *needles)
