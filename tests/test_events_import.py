"""``leadscore events import``: a CRM export of outcome events, loaded idempotently, bad rows refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.models.store import lead_hash_key, lead_hasher

MAPPING = """\
columns: {lead_id: Lead ID, kind: Status, occurred_at: Date, actor: Owner, reason: Why, amount: Amount,
          reengage_on: Recycle on}
kinds: {Accepted: accepted, Disqualified: rejected, Opportunity: opportunity_created, Won: closed_won,
        Nurture: recycled}
reasons: {Not ICP: not_icp, No budget: no_budget}
timezone: Europe/Berlin
"""
EXPORT = """\
Lead ID,Status,Date,Owner,Why,Amount,Recycle on,Notes
L1,Accepted,2026-03-02 10:00,ae-1,,,,"Called Jane Doe"
L2,Disqualified,2026-03-02 11:00,ae-1,No budget,,,
L1,Opportunity,2026-03-09 10:00,ae-1,,25000,,
L1,Won,2026-04-01 10:00,ae-1,,25000,,
L3,Nurture,2026-03-03 10:00,sdr-2,,,2026-06-01,
"""


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEADSCORE_HOME", str(tmp_path / "home"))
    (tmp_path / "events.yaml").write_text(MAPPING)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_import_twice_stores_each_event_once(env: Path) -> None:
    (env / "export.csv").write_text(EXPORT)
    code, out, err = run("events", "import", str(env / "export.csv"), "--config", str(env / "events.yaml"))
    assert code == 0, err
    assert "5 stored, 0 already there" in out
    code, out, _ = run("events", "import", str(env / "export.csv"), "--config", str(env / "events.yaml"))
    assert code == 0 and "0 stored, 5 already there" in out
    with sqlite3.connect(env / "home" / "scores.db") as conn:
        rows = conn.execute(
            "select lead_hash, kind, occurred_at, reason, amount, reengage_on from outcome_events"
        ).fetchall()
        dump = "\n".join(conn.iterdump())
    assert len(rows) == 5
    l1 = lead_hasher(lead_hash_key(env / "home", None))("L1")  # the API's hash: HMAC under the home's key
    assert (l1, "accepted") in {(r[0], r[1]) for r in rows}
    assert {r[3] for r in rows if r[1] == "rejected"} == {"no_budget"}
    assert next(r for r in rows if r[1] == "accepted")[2].startswith("2026-03-02 09:00")  # Berlin -> UTC
    assert next(r for r in rows if r[1] == "recycled")[5] == "2026-06-01"
    assert "Jane" not in dump and "'L1'" not in dump


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("L9,Sold,2026-03-02 10:00,ae-1,,,,", "row 7, column 'Status'", id="unknown-status"),
        pytest.param("L9,Disqualified,2026-03-02 10:00,ae-1,bad lead,,,", "row 7, column 'Why'", id="bad-reason"),
        pytest.param("L9,Accepted,yesterday,ae-1,,,,", "row 7, column 'Date'", id="bad-date"),
        pytest.param("L9,Opportunity,2026-03-02 10:00,ae-1,,,,", "row 7, column 'amount'", id="opp-no-amount"),
        pytest.param(",Accepted,2026-03-02 10:00,ae-1,,,,", "row 7, column 'Lead ID'", id="no-lead"),
    ],
)
def test_a_bad_row_stops_the_import_naming_it(env: Path, line: str, message: str) -> None:
    (env / "export.csv").write_text(EXPORT + line + "\n")
    code, _out, err = run("events", "import", str(env / "export.csv"), "--config", str(env / "events.yaml"))
    assert code == 2
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (env / "home" / "scores.db").exists()  # nothing stored


def test_a_mapping_without_required_columns_is_refused(env: Path) -> None:
    (env / "bad.yaml").write_text("columns: {lead_id: Lead ID}\n")
    (env / "export.csv").write_text(EXPORT)
    code, _, err = run("events", "import", str(env / "export.csv"), "--config", str(env / "bad.yaml"))
    assert code == 2 and "missing: ['kind', 'occurred_at', 'actor']" in err
