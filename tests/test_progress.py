"""Issue 13, item 9: long jobs show their stages on a terminal's stderr, time them into ``--json``, and
``--help`` is readable at 80 columns."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from leadscore.training.progress import Stages


def test_stages_are_timed_and_shown_in_order_on_a_terminal() -> None:
    sink = io.StringIO()
    stages = Stages(Console(file=sink, force_terminal=True, width=80))
    with stages.stage("outer"):
        with stages.stage("inner"):
            pass
    with stages.stage("next"):
        pass
    assert list(stages.timings) == ["inner", "outer", "next"]
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", sink.getvalue())
    assert shown.index("done inner") < shown.index("done outer") < shown.index("done next")


def test_stages_without_a_terminal_show_nothing_but_still_time(capsys) -> None:
    stages = Stages.for_terminal()  # pytest's stderr is not a terminal
    with stages.stage("work"):
        pass
    assert "work" in stages.timings and capsys.readouterr().err == ""


def test_train_json_carries_stage_timings_and_quiet_silences_notes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 800
    visits = rng.integers(0, 10, n)
    pd.DataFrame(
        {"visits": visits, "source": rng.choice(["a", "b"], n), "won": rng.random(n) < 0.1 + 0.06 * visits}
    ).to_csv(tmp_path / "leads.csv", index=False)
    (tmp_path / "m.yaml").write_text("form: flat\nlabel: {column: won}\ncategorical: [source]\nnumeric: [visits]\n")
    env = {**os.environ, "LEADSCORE_HOME": str(tmp_path / "home")}
    env.pop("LEADSCORE_TRACKING_URI", None)
    args = [sys.executable, "-m", "leadscore.cli", "train", "--data", str(tmp_path / "leads.csv")]
    args += ["--config", str(tmp_path / "m.yaml"), "--min-conversions", "30", "--no-report", "--json", "--quiet"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert list(summary["timings"]) == [
        "reading the data and building the frame",
        "fitting the model and its baselines",
        "logging the run and registering the model",
    ]
    assert all(v >= 0 for v in summary["timings"].values())
    assert summary["notes"] and "note:" not in out.stderr and "done" not in out.stderr


def test_help_is_readable_at_80_columns() -> None:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    out = subprocess.run(
        [sys.executable, "-m", "leadscore.cli", "train", "--help"], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert all(len(line) <= 80 for line in out.splitlines())
    for option in ("--observation-days", "--holdout-fraction", "--min-conversions", "--quiet"):
        assert option in out
    assert "…" not in out and "[default: 90; x>=1]" in out
