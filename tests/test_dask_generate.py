"""Generation at scale: seeded chunks written as folders of Parquet parts, read back by the local reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.build import build_crm_frame, read_crm_tables
from leadscore.features.mapping import DataError, default_crm_mapping
from leadscore.training.synthetic import write_crm, write_crm_parts

TABLES = ("leads", "activities", "outcomes")


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("parts")
    write_crm_parts(2_500, out, seed=4, chunk_leads=1_000)
    return out


def read(folder: Path, table: str) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted((folder / table).glob("*.parquet"))], ignore_index=True)


def test_each_chunk_is_one_part_per_table_holding_its_leads_and_their_rows(parts: Path) -> None:
    for table in TABLES:
        assert sorted(p.name for p in (parts / table).iterdir()) == [f"part-0000{i}.parquet" for i in range(3)]
    leads = [pd.read_parquet(parts / "leads" / f"part-0000{i}.parquet") for i in range(3)]
    assert [len(x) for x in leads] == [1_000, 1_000, 500]
    assert list(leads[1]["lead_id"].iloc[[0, -1]]) == ["L00001001", "L00002000"]
    for i, chunk in enumerate(leads):
        for table in ("activities", "outcomes"):
            rows = pd.read_parquet(parts / table / f"part-0000{i}.parquet")
            assert rows["lead_id"].isin(chunk["lead_id"]).all()
    assert not [p for p in parts.iterdir() if p.name.startswith(".")], "the staging folder is left behind"


def test_the_same_seed_gives_the_same_parts_and_another_seed_others(parts: Path, tmp_path: Path) -> None:
    write_crm_parts(2_500, tmp_path / "same", seed=4, chunk_leads=1_000)
    write_crm_parts(2_500, tmp_path / "other", seed=5, chunk_leads=1_000)
    for table in TABLES:
        pd.testing.assert_frame_equal(read(parts, table), read(tmp_path / "same", table))
    assert not read(parts, "leads")["source"].equals(read(tmp_path / "other", "leads")["source"])


def test_the_local_reader_reads_a_folder_of_parts_as_the_whole_table(parts: Path) -> None:
    tables = read_crm_tables(parts, default_crm_mapping())
    assert len(tables.leads) == 2_500 and tables.leads["lead_id"].is_unique
    pd.testing.assert_frame_equal(tables.activities, read(parts, "activities"))
    frame = build_crm_frame(tables, default_crm_mapping()).frame
    assert 0 < len(frame) < 2_500 and frame["label"].isin([0, 1]).all()


def test_a_table_both_as_a_folder_and_as_a_file_is_refused(parts: Path, tmp_path: Path) -> None:
    both = tmp_path / "both"
    write_crm_parts(300, both, seed=1, chunk_leads=100)
    (both / "leads.parquet").write_bytes((parts / "leads" / "part-00000.parquet").read_bytes())
    with pytest.raises(DataError, match=r"both a folder leads/ and leads.parquet"):
        read_crm_tables(both, default_crm_mapping())


def test_writing_parts_replaces_an_earlier_single_file_dataset(tmp_path: Path) -> None:
    from leadscore.training.synthetic import generate_crm

    write_crm(generate_crm(200, seed=1), tmp_path)
    write_crm_parts(300, tmp_path, seed=1, chunk_leads=100)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(TABLES)
    assert len(read_crm_tables(tmp_path, default_crm_mapping()).leads) == 300


def test_generate_writes_parts_above_the_chunk_size_and_refuses_csv_there(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["generate", "--out", str(tmp_path / "g"), "--leads", "1500", "--chunk-leads", "600"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "g" / "leads").glob("*.parquet"))) == 3
    result = runner.invoke(
        app, ["generate", "--out", str(tmp_path / "c"), "--leads", "1500", "--chunk-leads", "600", "--csv"]
    )
    assert result.exit_code == 2 and "use Parquet" in result.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())
