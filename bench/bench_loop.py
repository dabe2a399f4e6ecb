"""Benchmark the closed loop: events in through the API and by ``events import``, and ``loop-report`` at scale.

Run: ``.venv/bin/python bench/bench_loop.py [--leads 1000000] [--events 3000000] [--seconds 10]``.

1. ``POST /v1/events`` in batches of 100 against ``leadscore serve`` on 127.0.0.1 (SQLite score log; the
   route needs no model), from ``--clients`` threads for ``--seconds``: events stored per second.
2. ``leadscore events import`` of a CSV of ``--import-events`` events, then the same file again (all
   duplicates): events per second each time.
3. ``loop-report`` over ``--leads`` scored leads (with their model inputs) and ``--events`` events, written
   straight into SQLite: the seconds the command takes, end to end (no registry: no holdout reference);
   then, in this process, the seconds the drift against a holdout reference adds for those scores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

BIN = Path(sys.executable).parent
KINDS = ("accepted", "rejected", "contacted", "meeting_booked", "opportunity_created", "closed_won", "closed_lost")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def api_events(home: Path, seconds: float, clients: int) -> float:
    port = free_port()
    env = {**os.environ, "LEADSCORE_HOME": str(home), "LEADSCORE_POLL_SECONDS": "3600", "LEADSCORE_LOG_LEVEL": "ERROR"}
    server = subprocess.Popen(
        [str(BIN / "leadscore"), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not start")
            time.sleep(0.2)
        stored = [0] * clients
        stop = time.monotonic() + seconds

        def client(k: int) -> None:
            with httpx.Client(base_url=base, timeout=30) as c:
                i = 0
                while time.monotonic() < stop:
                    now = datetime.now(UTC).isoformat()
                    batch = [
                        {
                            "event_id": f"c{k}-{i}-{j}",
                            "lead_id": f"L{k}-{i}-{j}",
                            "kind": "contacted",
                            "occurred_at": now,
                            "actor": "sdr-1",
                        }
                        for j in range(100)
                    ]
                    answer = c.post("/v1/events", json={"events": batch})
                    answer.raise_for_status()
                    stored[k] += answer.json()["stored"]
                    i += 1

        began = time.monotonic()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sum(stored) / (time.monotonic() - began)
    finally:
        server.terminate()
        server.wait(30)


def import_events(home: Path, n: int) -> tuple[float, float]:
    rng = np.random.default_rng(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    frame = pd.DataFrame(
        {
            "Lead ID": [f"L{i}" for i in rng.integers(0, n // 3, n)],
            "Status": rng.choice(["Accepted", "Contacted", "Meeting"], n),
            "Date": [(t0 + timedelta(seconds=int(s))).isoformat() for s in rng.integers(0, 86_400 * 90, n)],
            "Owner": rng.choice(["sdr-1", "sdr-2", "ae-1"], n),
        }
    )
    frame = frame.drop_duplicates(["Lead ID", "Status", "Date"])
    path = home / "events.csv"
    frame.to_csv(path, index=False)
    (home / "events.yaml").write_text(
        "columns: {lead_id: Lead ID, kind: Status, occurred_at: Date, actor: Owner}\n"
        "kinds: {Accepted: accepted, Contacted: contacted, Meeting: meeting_booked}\n"
    )
    env = {**os.environ, "LEADSCORE_HOME": str(home)}
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        subprocess.run(
            [str(BIN / "leadscore"), "events", "import", str(path), "--config", str(home / "events.yaml")],
            env=env,
            check=True,
            capture_output=True,
        )
        rates.append(len(frame) / (time.perf_counter() - began))
    return rates[0], rates[1]


def fill(db: Path, leads: int, events: int) -> tuple[datetime, datetime]:
    """``leads`` scores over 26 weeks with model inputs, and ``events`` events of them, written with sqlite3."""
    from sqlalchemy import create_engine

    from leadscore.models.store import create_events_table

    engine = create_engine(f"sqlite:///{db}")
    create_events_table(engine)
    engine.dispose()
    rng = np.random.default_rng(1)
    end = datetime(2026, 9, 1, tzinfo=UTC)
    start = end - timedelta(weeks=26)
    span = (end - start).total_seconds()
    scored = [start + timedelta(seconds=float(s)) for s in np.sort(rng.random(leads) * span)]
    p = rng.beta(1.5, 9.0, leads)
    tier = np.select([p > 0.3, p > 0.15, p > 0.07], ["A", "B", "C"], "D")
    sla = {"A": 1.0, "B": 24.0, "C": 48.0, "D": None}
    queue = {"A": "account-executive", "B": "sdr", "C": "sdr", "D": "nurture"}
    sources = np.array(["inbound", "paid", "event", "partner", "outbound", "webinar"])
    hashes = [hashlib.sha256(f"L{i}".encode()).hexdigest() for i in range(leads)]
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "insert into score_log (request_id, lead_hash, model_name, model_version, probability, score, tier, "
            "scored_at, queue, sla_hours, model_input) values (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (
                    f"r{i}",
                    hashes[i],
                    "lead-scoring",
                    "1",
                    float(p[i]),
                    int(p[i] * 100),
                    str(tier[i]),
                    scored[i].strftime(fmt),
                    queue[tier[i]],
                    sla[tier[i]],
                    json.dumps({"source": str(sources[i % 6]), "employees": float(i % 5000), "region": "NA"}),
                )
                for i in range(leads)
            ),
        )
        who = rng.integers(0, leads, events)
        kinds = rng.choice(KINDS, events, p=[0.4, 0.15, 0.25, 0.08, 0.06, 0.03, 0.03])
        delay = rng.gamma(1.0, 40.0, events)
        conn.executemany(
            "insert into outcome_events (event_key, lead_hash, kind, occurred_at, actor, reason, reengage_on, amount, "
            "received_at) values (?,?,?,?,?,?,?,?,?)",
            (
                (
                    f"e{j}",
                    hashes[who[j]],
                    str(kinds[j]),
                    (scored[who[j]] + timedelta(hours=float(delay[j]))).strftime(fmt),
                    "sdr-1",
                    "no_budget" if kinds[j] == "rejected" else None,
                    None,
                    25_000.0 if kinds[j] in ("opportunity_created", "closed_won") else None,
                    end.strftime(fmt),
                )
                for j in range(events)
            ),
        )
    return start, end


def holdout_drift(db: Path, start: datetime, end: datetime) -> None:
    """What the drift against a holdout reference adds to the report: every score's model input parsed,
    and the score and each feature measured against a reference (built here from 20,000 of the scores)."""
    from sqlalchemy import create_engine

    from leadscore.models.drift import reference_of
    from leadscore.training.loop_report.data import read_scores
    from leadscore.training.loop_report.figures import LoopData, _inputs, drift_against_holdout

    engine = create_engine(f"sqlite:///{db}")
    scores = read_scores(engine, start, end + timedelta(days=1))
    engine.dispose()
    sample = scores.iloc[:: max(1, len(scores) // 20_000)]
    inputs = _inputs(sample)
    reference = reference_of(inputs, sample["probability"].to_numpy(), ["employees"], ["source", "region"])
    data = LoopData(scores=scores, events=pd.DataFrame(), references={"lead-scoring/1": reference})
    began = time.perf_counter()
    data.inputs()
    parsed = time.perf_counter()
    rows, _, _ = drift_against_holdout(data)
    done = time.perf_counter()
    print(
        f"drift against a holdout reference, {len(scores):,} scores: inputs parsed in {parsed - began:.1f}s, "
        f"{len(rows)} measures in {done - parsed:.1f}s (inputs parsed once also serve the segments)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--import-events", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--skip", nargs="*", default=[], choices=["api", "import", "report"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if "api" not in args.skip:
            (root / "api").mkdir()
            rate = api_events(root / "api", args.seconds, args.clients)
            print(f"POST /v1/events, batches of 100, {args.clients} clients: {rate:,.0f} events/s")
        if "import" not in args.skip:
            (root / "import").mkdir()
            first, again = import_events(root / "import", args.import_events)
            print(
                f"events import of {args.import_events:,} events: {first:,.0f} events/s; again (all duplicates): {again:,.0f} events/s"
            )
        if "report" not in args.skip:
            db = root / "loop.db"
            began = time.perf_counter()
            start, end = fill(db, args.leads, args.events)
            print(f"filled {args.leads:,} scores and {args.events:,} events in {time.perf_counter() - began:.0f}s")
            began = time.perf_counter()
            subprocess.run(
                [
                    str(BIN / "leadscore"),
                    "loop-report",
                    "--since",
                    start.date().isoformat(),
                    "--until",
                    (end + timedelta(days=1)).date().isoformat(),
                    "--as-of",
                    end.isoformat(),
                    "--db",
                    f"sqlite:///{db}",
                    "--out",
                    str(root / "report"),
                    "--segment",
                    "source",
                ],
                check=True,
            )
            print(
                f"loop-report on {args.leads:,} scored leads and {args.events:,} events: {time.perf_counter() - began:.1f}s"
            )
            holdout_drift(db, start, end)


if __name__ == "__main__":
    main()
