"""Issue 13: a user's own export goes in read right, or is refused with one line that says what to fix.

Dates are read with one format per column (never guessed per value), labels match as text with YAML's
booleans understood, there are no hidden defaults (id, unused columns), and user mistakes end in one
``error:`` line with exit code 2 and nothing registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.build import LABEL
from leadscore.features.dates import detect_format, parse_dates
from leadscore.features.errors import DataError
from leadscore.features.flat import build_flat
from leadscore.features.mapping import Mapping, load_mapping
from leadscore.features.reading import read_file


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_error(code: int, stderr: str, *needles: str) -> str:
    assert code == 2, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def leads(n: int = 600, seed: int = 0, *, start: str = "2024-01-01") -> pd.DataFrame:
    """A flat export with a learnable label: visits raise the conversion odds."""
    rng = np.random.default_rng(seed)
    visits = rng.integers(0, 10, n)
    converted = rng.random(n) < 0.08 + 0.06 * visits
    created = pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, 400 * 24, n)), unit="h")
    return pd.DataFrame(
        {
            "ref": [f"R{i:05d}" for i in range(n)],
            "created": created,
            "source": rng.choice(["web", "event", "partner"], n),
            "visits": visits,
            "converted": np.where(converted, "yes", "no"),
        }
    )


def write(
    tmp_path: Path, frame: pd.DataFrame, mapping: str, name: str = "leads.csv", **to_csv: object
) -> tuple[Path, Path]:
    data, config = tmp_path / name, tmp_path / "mapping.yaml"
    frame.to_csv(data, index=False, **to_csv)
    config.write_text(mapping)
    return data, config


MAPPING = """
form: flat
id: ref
created_at: created
label: {column: converted, positive: [yes]}
categorical: [source]
numeric: [visits]
"""


# --- 3. dates: one format per column ---------------------------------------------------------------------


def test_day_first_dates_are_read_day_first_for_every_row() -> None:
    days = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.DataFrame({"d": days.strftime("%d/%m/%Y")})
    found = detect_format(frame["d"], "d", "f.csv")
    assert (found.format, found.day_first) == ("%d/%m/%Y", True)
    assert (parse_dates(frame, "d", "f.csv", required=True) == days).all()


def test_month_first_dates_are_read_month_first() -> None:
    days = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.DataFrame({"d": days.strftime("%m/%d/%Y %H:%M")})
    assert (parse_dates(frame, "d", "f.csv", required=True) == days).all()


def test_dates_no_value_can_decide_are_refused_with_samples_and_the_fix(tmp_path: Path, home: Path) -> None:
    frame = leads()
    frame["created"] = pd.to_datetime(frame["created"]).dt.strftime("%d/%m/%Y")
    frame = frame[pd.to_datetime(frame["created"], format="%d/%m/%Y").dt.day <= 12]
    data, config = write(tmp_path, frame, MAPPING)
    line = assert_one_error(*run("train", "--data", str(data), "--config", str(config))[::2], "'created'", "format")
    assert "day-first" in line and repr(frame["created"].iloc[0]) in line
    assert not (home / "mlflow.db").exists()


def test_a_given_format_settles_ambiguous_dates(tmp_path: Path) -> None:
    frame = leads()
    frame["created"] = frame["created"].dt.strftime("%d/%m/%Y")
    frame = frame[pd.to_datetime(frame["created"], format="%d/%m/%Y").dt.day <= 12].reset_index(drop=True)
    data, config = write(
        tmp_path, frame, MAPPING.replace("created_at: created", 'created_at: {column: created, format: "%d/%m/%Y"}')
    )
    tf = build_flat(data, load_mapping(config))
    expected = pd.to_datetime(frame["created"], format="%d/%m/%Y").sort_values(kind="stable").to_numpy()
    assert (tf.frame["created"].to_numpy() == expected).all()


def test_one_column_with_two_formats_is_refused() -> None:
    frame = pd.DataFrame({"d": ["2024-01-31", "31/01/2024", "2024-02-01"]})
    with pytest.raises(DataError, match=r"column 'd' has unparseable date '31/01/2024' \(row 2\)"):
        detect_format(frame["d"], "d", "f.csv")


def test_future_timestamps_are_an_error_naming_column_and_value(tmp_path: Path, home: Path) -> None:
    frame = leads()
    frame.loc[7, "created"] = pd.Timestamp("2099-03-01")
    data, config = write(tmp_path, frame, MAPPING)
    assert_one_error(
        *run("train", "--data", str(data), "--config", str(config))[::2], "'created'", "2099-03-01", "today"
    )


def test_timestamps_after_as_of_are_an_error(tmp_path: Path, home: Path) -> None:
    data, config = write(tmp_path, leads(), MAPPING)
    code, _, err = run("train", "--data", str(data), "--config", str(config), "--as-of", "2024-06-01")
    assert_one_error(code, err, "'created'", "--as-of 2024-06-01")


# --- 4. labels ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "positive, values",
    [
        ("[yes]", ("yes", "no")),
        ("[Yes]", ("YES", "no")),
        ("[true]", ("True", "False")),
        ("[1]", (1, 0)),
        ("[Won]", ("won", "lost")),
    ],
    ids=["yaml-yes", "case", "yaml-true", "number", "text"],
)
def test_labels_match_as_text_case_insensitively(tmp_path: Path, positive: str, values: tuple) -> None:
    frame = leads()
    frame["converted"] = np.where(frame["converted"] == "yes", values[0], values[1])
    data, config = write(tmp_path, frame, MAPPING.replace("positive: [yes]", f"positive: {positive}"))
    tf = build_flat(data, load_mapping(config))
    assert tf.frame[LABEL].sum() == (frame["converted"] == values[0]).sum() > 0


def test_a_label_matching_nothing_lists_looked_for_and_found(tmp_path: Path, home: Path) -> None:
    frame = leads()
    frame["converted"] = np.where(frame["converted"] == "yes", "Converted", "Open")
    data, config = write(tmp_path, frame, MAPPING)
    line = assert_one_error(*run("train", "--data", str(data), "--config", str(config))[::2], "no positive labels")
    assert "'yes'" in line and "'converted'" in line and "'open'" in line


# --- 5. no hidden defaults ------------------------------------------------------------------------------------


def test_without_an_id_rows_are_numbered_and_the_run_says_so(tmp_path: Path) -> None:
    frame = leads().drop(columns=["ref"])
    data, config = write(tmp_path, frame, MAPPING.replace("id: ref\n", ""))
    tf = build_flat(data, load_mapping(config))
    assert sorted(tf.frame["row"]) == list(range(1, len(frame) + 1))
    assert any("row number" in note for note in tf.notes)


def test_duplicate_ids_are_an_error_with_examples(tmp_path: Path, home: Path) -> None:
    frame = leads()
    frame.loc[[3, 9], "ref"] = "R00001"
    data, config = write(tmp_path, frame, MAPPING)
    assert_one_error(*run("train", "--data", str(data), "--config", str(config))[::2], "'ref'", "duplicate", "'R00001'")


def test_unused_columns_are_listed_in_the_output_and_the_run(tmp_path: Path, home: Path) -> None:
    import mlflow

    frame = leads().assign(notes_field="x", owner=lambda f: f["source"])
    data, config = write(tmp_path, frame, MAPPING)
    code, out, err = run(
        "train", "--data", str(data), "--config", str(config), "--min-conversions", "20", "--no-report", "--json"
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["unused_columns"] == ["notes_field", "owner"]
    assert "notes_field" in err and "owner" in err
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    params = mlflow.get_run(summary["run_id"]).data.params
    assert params["unused_columns"] == "notes_field, owner"


# --- 8. one error line per mistake ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9" * 400, "inf", "-Infinity"], ids=["400-digits", "inf", "minus-infinity"])
def test_huge_or_infinite_numbers_are_refused_naming_column_and_row(tmp_path: Path, home: Path, value: str) -> None:
    frame = leads().astype({"visits": object})
    frame.loc[4, "visits"] = value
    data, config = write(tmp_path, frame, MAPPING)
    assert_one_error(*run("train", "--data", str(data), "--config", str(config))[::2], "'visits'", "row 5")


def test_malformed_yaml_names_its_line(tmp_path: Path, home: Path) -> None:
    data, config = write(tmp_path, leads(), "form: flat\nlabel: {column: converted\ncategorical: [source]\n")
    assert_one_error(*run("train", "--data", str(data), "--config", str(config))[::2], "mapping.yaml", "line 3")


def test_all_rows_censored_says_why_with_counts(tmp_path: Path, home: Path) -> None:
    frame = leads()
    won = frame.loc[frame["converted"] == "yes", ["ref", "created"]].rename(columns={"created": "at"})
    won.to_csv(tmp_path / "won.csv", index=False)
    mapping = MAPPING.replace(
        "label: {column: converted, positive: [yes]}", "conversions: {table: won.csv, id: ref, at: at}"
    )
    data, config = write(tmp_path, frame, mapping)
    code, _, err = run("train", "--data", str(data), "--config", str(config), "--horizon-days", "900")
    assert_one_error(code, err, "all 600 leads are censored", "900 days")


def test_unknown_version_or_model_is_one_line(tmp_path: Path, home: Path) -> None:
    assert_one_error(*run("promote", "--version", "99")[::2], "lead-scoring", "not found")
    data, config = write(tmp_path, leads(), MAPPING)
    code, _, err = run("train", "--data", str(data), "--config", str(config), "--min-conversions", "20", "--no-report")
    assert code == 0, err
    assert_one_error(*run("promote", "--version", "99")[::2], "version=99", "not found")


# --- 2. reading -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sep, encoding",
    [(",", "utf-8"), (";", "utf-8-sig"), ("\t", "utf-8"), ("|", "cp1252"), (";", "latin-1")],
    ids=["comma", "semicolon-bom", "tab", "pipe-cp1252", "semicolon-latin1"],
)
def test_csv_delimiter_and_encoding_are_sniffed(tmp_path: Path, sep: str, encoding: str) -> None:
    frame = pd.DataFrame({"name": ["Zoë", "Çağ", "Ana; Bo"], "city": ["Genève", "Köln", "x"], "n": [1, 2, 3]})
    if encoding in ("cp1252", "latin-1"):
        frame["name"] = ["Zoë", "Ça", "Ana; Bo"]
    path = tmp_path / "t.csv"
    frame.to_csv(path, sep=sep, index=False, encoding=encoding)
    read = read_file(path)
    assert list(read.columns) == ["name", "city", "n"]
    assert read.to_dict("list") == frame.to_dict("list")


def test_parquet_and_excel_read_like_csv(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": ["x", "y"], "n": [1.5, 2.0]})
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_excel(tmp_path / "t.xlsx", index=False)
    for name in ("t.parquet", "t.xlsx"):
        assert read_file(tmp_path / name).to_dict("list") == frame.to_dict("list")


def test_lookups_are_joined_by_key(tmp_path: Path) -> None:
    frame = leads().assign(account=lambda f: [f"A{i % 50}" for i in range(len(f))])
    accounts = pd.DataFrame({"account": [f"A{i}" for i in range(50)], "employees": np.arange(50) * 10})
    accounts.sample(frac=1, random_state=0).to_csv(tmp_path / "accounts.csv", index=False)
    data, config = write(
        tmp_path,
        frame,
        MAPPING
        + "lookups: [{table: accounts.csv, on: account}]\nexclude: [account]\n".replace("numeric: [visits]", ""),
    )
    config.write_text(config.read_text().replace("numeric: [visits]", "numeric: [visits, employees]"))
    tf = build_flat(data, load_mapping(config))
    joined = tf.frame.set_index("ref")
    expected = frame.set_index("ref")["account"].str[1:].astype(int) * 10
    assert (joined["employees"] == expected.reindex(joined.index)).all()


def test_a_lookup_with_repeated_keys_is_refused(tmp_path: Path) -> None:
    frame = leads().assign(account="A1")
    pd.DataFrame({"account": ["A1", "A1"], "employees": [1, 2]}).to_csv(tmp_path / "accounts.csv", index=False)
    data, config = write(tmp_path, frame, MAPPING + "lookups: [{table: accounts.csv, on: account}]\n")
    with pytest.raises(DataError, match=r"accounts.csv: lookup key 'account' repeats .*'A1'"):
        build_flat(data, load_mapping(config))


def test_a_conversions_table_gives_the_flat_form_a_horizon_and_censoring(tmp_path: Path) -> None:
    frame = leads()
    rng = np.random.default_rng(1)
    won = frame.loc[frame["converted"] == "yes", ["ref", "created"]].copy()
    delay = rng.integers(1, 60, len(won))
    won["at"] = (won["created"] + pd.to_timedelta(delay, unit="D")).dt.strftime("%d/%m/%Y %H:%M")
    won[["ref", "at"]].to_csv(tmp_path / "won.csv", index=False, sep=";")
    mapping = MAPPING.replace(
        "label: {column: converted, positive: [yes]}", "conversions: {table: won.csv, id: ref, at: at}"
    )
    data, config = write(tmp_path, frame.drop(columns=["converted"]), mapping)
    tf = build_flat(data, load_mapping(config), horizon_days=30)
    as_of = max(frame["created"].max(), pd.to_datetime(won["at"], format="%d/%m/%Y %H:%M").max())
    kept = frame[frame["created"] + pd.Timedelta(days=30) <= as_of]
    assert tf.excluded == {"horizon_not_elapsed": len(frame) - len(kept)}
    assert len(tf.frame) == len(kept) and tf.horizon_days == 30
    within = won.set_index("ref").loc[lambda w: pd.Series(delay, index=w.index) <= 30].index
    assert set(tf.frame.loc[tf.frame[LABEL] == 1, "ref"]) == set(within) & set(kept["ref"])


# --- 6. split ---------------------------------------------------------------------------------------------------


def test_file_order_split_holds_out_the_last_rows(tmp_path: Path) -> None:
    from leadscore.training.split import split_frame

    frame = leads().drop(columns=["created"])
    data, config = write(tmp_path, frame, MAPPING.replace("created_at: created\n", "split: file_order\n"))
    tf = build_flat(data, load_mapping(config))
    split = split_frame(tf, 0.25)
    assert split.method == "file_order" and list(split.holdout) == list(range(450, 600))
    assert not tf.warnings


def test_a_random_split_beside_a_time_like_column_warns(tmp_path: Path) -> None:
    frame = leads().rename(columns={"created": "signup_date"})
    data, config = write(tmp_path, frame, MAPPING.replace("created_at: created\n", ""))
    tf = build_flat(data, load_mapping(config))
    assert tf.split_rule == "random"
    assert any("signup_date" in w and "random" in w for w in tf.warnings)


def test_mapping_needs_a_label_or_conversions() -> None:
    with pytest.raises(ValueError, match="'label"):
        Mapping.model_validate({"form": "flat", "categorical": ["a"]})


def test_an_order_column_sorts_rows_for_a_file_order_split(tmp_path: Path) -> None:
    from leadscore.training.split import split_frame

    frame = leads().drop(columns=["created"]).assign(seq=lambda f: np.arange(len(f))[::-1])
    data, config = write(tmp_path, frame, MAPPING.replace("created_at: created\n", "order: seq\n"))
    tf = build_flat(data, load_mapping(config))
    assert tf.split_rule == "file_order" and list(tf.frame["seq"]) == list(range(len(frame)))
    split = split_frame(tf, 0.2)
    assert set(tf.frame["ref"].iloc[split.holdout]) == set(frame["ref"].iloc[:120])


def test_excel_export_trains(tmp_path: Path, home: Path) -> None:
    _, config = write(tmp_path, leads(), MAPPING)
    xlsx = tmp_path / "leads.xlsx"
    leads().to_excel(xlsx, index=False)
    code, _, err = run("train", "--data", str(xlsx), "--config", str(config), "--min-conversions", "20", "--no-report")
    assert code == 0, err


def test_crm_data_all_censored_says_why_with_counts(crm_folder: Path, home: Path) -> None:
    code, _, err = run("train", "--data", str(crm_folder), "--horizon-days", "5000")
    assert_one_error(code, err, "no lead is eligible", "horizon_not_elapsed: ", "censored")


def test_coverage_weighs_missing_features_by_importance() -> None:
    from leadscore.features.coverage import check_coverage, coverage

    frame = pd.DataFrame({"a": [1, 2], "b": ["", ""], "c": ["x", "y"]})
    cov = coverage(frame, ["a", "b", "c", "d"], {"a": 0.5, "b": 0.02, "c": 0.38, "d": 0.1}, [""])
    assert cov.missing == ["b", "d"] and cov.share == pytest.approx(0.12)
    with pytest.raises(DataError, match=r"12% of its importance\): \['b', 'd'\]"):
        check_coverage(cov, "f.csv", allow=False)
    assert "12%" in check_coverage(cov, "f.csv", allow=True)
    assert check_coverage(coverage(frame, ["a", "b"], {"a": 0.99, "b": 0.01}, [""]), "f.csv", allow=False)


def test_label_values_in_neither_list_are_open_outcomes_left_out(tmp_path: Path) -> None:
    frame = leads()
    frame["converted"] = np.where(frame["converted"] == "yes", "Won", "Lost")
    frame.loc[frame.index % 5 == 0, "converted"] = "Engaging"
    mapping = MAPPING.replace("positive: [yes]", "positive: [won], negative: [LOST]")
    data, config = write(tmp_path, frame, mapping)
    tf = build_flat(data, load_mapping(config))
    assert tf.excluded == {"outcome_not_known": 120} and len(tf.frame) == 480
    assert set(tf.frame["ref"]) == set(frame.loc[frame["converted"] != "Engaging", "ref"])
    assert tf.frame[LABEL].sum() == (frame["converted"] == "Won").sum()
    assert any("'engaging' (120)" in note for note in tf.notes)


def test_crm_tables_with_day_first_dates_read_right(crm_folder: Path, tmp_path: Path) -> None:
    from leadscore.features.build import _latest_timestamp, read_crm_tables
    from leadscore.features.mapping import default_crm_mapping

    folder = tmp_path / "crm"
    folder.mkdir()
    columns = {
        "leads": ["created_at"],
        "activities": ["occurred_at"],
        "outcomes": ["opportunity_created_at", "closed_at"],
    }
    for name, dated in columns.items():
        table = pd.read_parquet(crm_folder / f"{name}.parquet")
        for column in dated:
            table[column] = table[column].dt.strftime("%d/%m/%Y %H:%M:%S")
        table.to_csv(folder / f"{name}.csv", index=False, sep=";")
    mapping = default_crm_mapping()
    truth = read_crm_tables(crm_folder, mapping)
    read = read_crm_tables(folder, mapping)
    assert (read.leads["created_at"] == truth.leads["created_at"].dt.floor("s")).all()
    assert _latest_timestamp(read, mapping) == _latest_timestamp(truth, mapping).floor("s")


def test_crm_dates_that_cannot_be_decided_are_refused(crm_folder: Path, tmp_path: Path) -> None:
    from leadscore.features.build import read_crm_tables
    from leadscore.features.mapping import default_crm_mapping

    folder = tmp_path / "crm"
    folder.mkdir()
    for name in ("activities", "outcomes"):
        (folder / f"{name}.parquet").write_bytes((crm_folder / f"{name}.parquet").read_bytes())
    table = pd.read_parquet(crm_folder / "leads.parquet")
    table = table[table["created_at"].dt.day <= 12]
    table["created_at"] = table["created_at"].dt.strftime("%d/%m/%Y")
    table.to_csv(folder / "leads.csv", index=False)
    with pytest.raises(DataError, match=r"leads.csv: column 'created_at': dates such as .* day-first and month-first"):
        read_crm_tables(folder, default_crm_mapping())
    given = default_crm_mapping().model_copy(update={"date_formats": {"created_at": "%d/%m/%Y"}})
    read = read_crm_tables(folder, given)
    assert (
        read.leads["created_at"].to_numpy() == pd.to_datetime(table["created_at"], format="%d/%m/%Y").to_numpy()
    ).all()


def test_the_data_digest_covers_lookups_and_conversions(tmp_path: Path) -> None:
    from leadscore.features.build import load_training_frame

    frame = leads().assign(account=lambda f: [f"A{i % 50}" for i in range(len(f))])
    won = frame.loc[frame["converted"] == "yes", ["ref", "created"]].rename(columns={"created": "at"})
    won.to_csv(tmp_path / "won.csv", index=False)
    accounts = pd.DataFrame({"account": [f"A{i}" for i in range(50)], "employees": np.arange(50)})
    accounts.to_csv(tmp_path / "accounts.csv", index=False)
    mapping = MAPPING.replace(
        "label: {column: converted, positive: [yes]}", "conversions: {table: won.csv, id: ref, at: at}"
    )
    mapping += "lookups: [{table: accounts.csv, on: account}]\nexclude: [account, converted]\n"
    data, config = write(tmp_path, frame, mapping)
    digests = [load_training_frame(data, load_mapping(config), horizon_days=30).digest]
    accounts.assign(employees=accounts["employees"] + 1).to_csv(tmp_path / "accounts.csv", index=False)
    digests.append(load_training_frame(data, load_mapping(config), horizon_days=30).digest)
    won.iloc[1:].to_csv(tmp_path / "won.csv", index=False)
    digests.append(load_training_frame(data, load_mapping(config), horizon_days=30).digest)
    assert len(set(digests)) == 3
