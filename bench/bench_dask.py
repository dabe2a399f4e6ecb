"""The Dask engine against the local engine: generate, train and score, end to end through the CLI.

    .venv/bin/python bench/bench_dask.py [--local 1000000] [--dask 1000000 10000000] [--memory-limit 6GB]
        [--workdir DIR] [--model-uri models:/lead-scoring/1] [--steps train score]

For each size in ``--local``: ``leadscore generate``, then ``train`` and ``score`` with the local engine;
for each size in ``--dask``: the same commands with ``--engine dask --scheduler`` a local cluster of 2
worker processes (one thread each, ``--memory-limit`` each) started by this script. Both engines score
with the same model, so the ratio compares engines, not models: ``--model-uri`` when given, else the
model the local engine trained at its first size (else the one Dask trained at that size). Data already
generated in ``--workdir`` (``crm-N``) is reused; ``--steps score --model-uri ...`` runs scoring alone.
Every command runs as its own process, timed from start to exit. Prints wall seconds, the command
process's peak resident memory and, for the Dask commands, each worker's peak (workers are restarted
before each command, so a peak belongs to one command), and the ratios of seconds per lead to the local
engine's at the first local size. A local command that fails (e.g. out of memory) is reported with its
exit status, and the bench goes on. Training runs with ``--no-report`` on both engines. The machine is
noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from distributed import Client, LocalCluster

CLI = str(Path(sys.executable).parent / "leadscore")
GIB = 1024**3


def run(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one CLI command: wall seconds, its peak resident memory (bytes), exit status and standard output."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen([CLI, *args], env=env, stdout=subprocess.PIPE, stderr=errors)
        out = process.stdout.read().decode()
        process.stdout.close()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        errors.seek(0)
        error = errors.read().decode(errors="replace").strip().splitlines() if process.returncode else []
    return {
        "seconds": time.perf_counter() - began,
        "peak": usage.ru_maxrss * 1024,
        "status": process.returncode,
        "error": error[-1] if error else "",
        "stdout": out,
    }


def version_of(r: dict[str, Any]) -> str:
    """The registered version a ``train --json`` run reports."""
    return json.loads(r["stdout"].strip().splitlines()[-1])["version"]


def worker_peaks(client: Client) -> list[int]:
    """Each worker process's peak resident memory so far, in bytes."""
    peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return [peaks[w] for w in sorted(peaks)]


def line(engine: str, leads: int, step: str, r: dict, workers: list[int] | None, base: float | None) -> str:
    per_lead = r["seconds"] / leads
    ratio = f"{per_lead / base:>6.2f}" if base else f"{'':>6}"
    peaks = " ".join(f"{p / GIB:5.2f}" for p in workers) if workers else "-"
    failed = f"  FAILED (exit {r['status']}): {r['error']}" if r["status"] else ""
    return (
        f"{engine:<6} {leads:>11,} {step:<9} {r['seconds']:>9.1f} {ratio} {r['peak'] / GIB:>9.2f}  {peaks:<12}{failed}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", type=int, nargs="*", default=[1_000_000], help="sizes for the local engine")
    parser.add_argument("--dask", type=int, nargs="*", default=[1_000_000, 10_000_000], help="sizes for Dask")
    parser.add_argument("--memory-limit", default="6GB", help="memory limit of each Dask worker")
    parser.add_argument("--workdir", type=Path, default=None, help="where data goes (default: a temporary folder)")
    parser.add_argument("--model-uri", default=None, help="score with this model on both engines")
    parser.add_argument("--steps", nargs="+", choices=["train", "score"], default=["train", "score"])
    args = parser.parse_args()
    if "train" not in args.steps and not args.model_uri:
        parser.error("--steps without train needs --model-uri")
    root = Path(args.workdir or tempfile.mkdtemp(prefix="bench-dask-"))
    env = {**os.environ, "LEADSCORE_HOME": str(root / "home")}
    env.pop("LEADSCORE_TRACKING_URI", None)

    print(f"{'engine':<6} {'leads':>11} {'step':<9} {'wall s':>9} {'ratio':>6} {'peak GiB':>9}  workers' peak GiB")
    base: dict[str, float] = {}  # seconds per lead of the local engine at its first size, by step
    model: list[str] = [args.model_uri] if args.model_uri else []  # the model both engines score with

    def generate(n: int) -> Path:
        data = root / f"crm-{n}"
        if not (data / "leads").is_dir():
            r = run(["generate", "--leads", str(n), "--out", str(data), "--seed", "1"], env)
            print(line("-", n, "generate", r, None, None), flush=True)
        return data

    def train(engine: str, n: int, data: Path, address: list[str], client: Client | None) -> None:
        if "train" not in args.steps:
            return
        if client is not None:
            client.restart()
        r = run(["train", "--data", str(data), "--no-report", "--json", *address], env)
        print(line(engine, n, "train", r, client and worker_peaks(client), base.get("train")), flush=True)
        if engine == "local":
            base.setdefault("train", r["seconds"] / n)
        if r["status"] == 0 and not model:
            model.append(f"models:/lead-scoring/{version_of(r)}")

    def score(engine: str, n: int, data: Path, out: Path, address: list[str], client: Client | None) -> None:
        if "score" not in args.steps or not model:
            return
        if client is not None:
            client.restart()
        r = run(["score", "--input", str(data), "--output", str(out), "--model-uri", model[0], *address], env)
        print(line(engine, n, "score", r, client and worker_peaks(client), base.get("score")), flush=True)
        if engine == "local":
            base.setdefault("score", r["seconds"] / n)

    for n in args.local:
        data = generate(n)
        train("local", n, data, [], None)
        score("local", n, data, root / f"local-{n}.parquet", [], None)

    if args.dask:
        options = {"n_workers": 2, "threads_per_worker": 1, "memory_limit": args.memory_limit}
        quiet = {"processes": True, "dashboard_address": None, "silence_logs": logging.ERROR}
        with LocalCluster(**quiet, **options) as cluster, Client(cluster) as client:
            address = ["--engine", "dask", "--scheduler", cluster.scheduler_address]
            for n in args.dask:
                data = generate(n)
                train("dask", n, data, address, client)
                score("dask", n, data, root / f"dask-{n}", address, client)
    against = f"the local engine's at {args.local[0]:,} leads (same step)" if args.local else "(no local run)"
    print(
        f"ratio = seconds per lead / {against}; peak = the command "
        f"process's peak resident memory; workers = each Dask worker's peak for that command "
        f"(2 processes, 1 thread, memory limit {args.memory_limit} each); both engines score with "
        f"{model[0] if model else '(no model)'}; data and store in {root}"
    )


if __name__ == "__main__":
    main()
