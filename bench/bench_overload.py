"""Benchmark `leadscore serve` under overload: goodput, latency of what is admitted, health, memory after.

Run: ``.venv/bin/python bench/bench_overload.py [--home DIR] [--seconds 10]`` (needs ``wrk``). Trains a model
on synthetic data into a temporary embedded store (or uses the champion in ``--home``), starts
``leadscore serve`` on 127.0.0.1 and drives it with:

1. single leads at 8 connections, from ``wrk`` and from the load client (:mod:`load_client`): the peak is
   the better of the two (200 answers per second);
2. single leads at 256 connections from the load client, whose callers honour ``Retry-After`` as a
   routing system is asked to: goodput is its 200 answers per second, the latency goal the p99 of those
   200 answers (every request is timed); then the same from ``wrk``, which retries a 503 at once (a
   retry storm), printed for information;
3. 1,000-lead batches at 64 connections from the load client while a probe in this process times
   ``/healthz`` (a new connection each time, as a liveness probe makes) every 10 ms, ``--rounds`` times (3),
   each after the machine has gone quiet: the goal's figure is the p99 of all rounds' probes together (each
   round's p50, p90, p99 and maximum are printed too; ``--batches-only`` runs this phase and phase 4 alone);
   then the same from ``wrk``, printed for information;
   then (3b) the same batches and, at once, single leads at 8 connections from a second load client (a bulk
   import while a routing system sends its leads): single leads answered per second, their p99 and refusals,
   and ``/healthz``'s p99, for information;
4. the load of phase 3 (the same load client, 64 connections, the same probe, as many rounds) against
   :mod:`reference_server`, a server that does no work: it answers ``/healthz`` and returns the real batch
   answer's bytes at the rate the real server answered batches in phase 3. Its ``/healthz`` percentiles are
   the floor of this machine under this load, measured in the same run;

and prints the resident memory of the serving process tree (the API, its score-log writer and its batch
worker) at start (after a warm-up of single leads and one batch, which starts the batch worker), after the load
and after a 10 s rest, then the goals (``GOALS``), each with its figure and whether it was met. The load
client runs in a process of its own. Timings are only comparable on a quiet machine: the clients, the
probe and the server share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import (
    BIN,
    ROOT,
    free_port,
    parse_wrk,
    rss_mib,
    start,
    stop,
    train_model,
    wait_quiet,
    wait_ready,
)
from load_client import drive_in_process, request_bytes

T = TypeVar("T")

GOALS = {
    "min_goodput_share_at_256": 0.90,  # 200 answers/s at 256 connections, as a share of the 8-connection peak
    "max_p99_ms_at_256": 25.0,
    "max_healthz_p99_ms_under_batches": 5.0,
    "max_rss_growth_after_rest": 0.10,
}


def wrk(url: str, body: bytes, connections: int, seconds: float, workdir: Path) -> dict[str, float]:
    script = workdir / f"post-{connections}.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{int(seconds)}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk(out)
    total = float(out.split(" requests in ")[0].split()[-1])
    result["goodput"] = (total - result["non2xx"]) / seconds
    return result


def p99_ms(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] * 1000 if len(seconds) > 2 else float("nan")


def summary(result: list[tuple[int, float]], seconds: float) -> dict[str, float]:
    """Answers per second by kind, and the p99 of the 200 answers' latency."""
    ok = [t for status, t in result if status == 200]
    return {
        "ok_per_s": len(ok) / seconds,
        "shed": sum(1 for status, _ in result if status == 503),
        "other": sum(1 for status, _ in result if status not in (200, 503)),
        "p99": p99_ms(ok),
    }


def probe_health(base: str, stop_event: threading.Event, seconds: list[float]) -> None:
    while not stop_event.is_set():
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=10) as response:
                response.read()
        except OSError:
            seconds.append(10.0)
        else:
            seconds.append(time.perf_counter() - began)
        time.sleep(0.01)


def percentiles(seconds: list[float]) -> str:
    cuts = statistics.quantiles(seconds, n=100)
    return f"p50 {cuts[49] * 1000:.2f} p90 {cuts[89] * 1000:.2f} p99 {p99_ms(seconds):.2f} max {max(seconds) * 1000:.2f} ms"


def mixed_load(port: int, batch_request: bytes, single_request: bytes, seconds: float) -> dict[str, dict[str, float]]:
    """Phase 3b: 1,000-lead batches at 64 connections and single leads at 8, at once (a bulk import while the
    routing system sends its leads), each from a load client of its own."""
    results: dict[str, list[tuple[int, float]]] = {}

    def singles() -> None:
        results["singles"] = drive_in_process(port, single_request, 8, seconds)

    thread = threading.Thread(target=singles)
    thread.start()
    results["batches"] = drive_in_process(port, batch_request, 64, seconds)
    thread.join()
    return {kind: summary(result, seconds) for kind, result in results.items()}


def reference_floor(
    batch_request: bytes,
    answer: Path,
    batches_per_second: float,
    seconds: float,
    rounds: int,
    env: dict[str, str],
    workdir: Path,
) -> None:
    """Phase 4: the batch phase again, ``rounds`` times, against :mod:`reference_server` (no work; the real
    answer's bytes, at the real server's batch rate), with the same client and probe; prints the probe's
    percentiles there, each round's and all rounds' together."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    per_batch = 1 / batches_per_second if batches_per_second > 0 else 0.1
    reference = start(
        [sys.executable, str(Path(__file__).with_name("reference_server.py")), str(port), str(answer), str(per_batch)],
        env,
        workdir,
        workdir / "reference.log",
    )
    try:
        wait_ready(base + "/healthz", reference)
        batches, health = batch_rounds(
            base, lambda: summary(drive_in_process(port, batch_request, 64, seconds), seconds), rounds, "reference"
        )
    finally:
        stop(reference)
    print(
        f"reference:      {batches['ok_per_s']:8.1f} 200/s (paced at {1 / per_batch:.1f}/s)  /healthz {percentiles(health)} "
        f"({len(health)} probes; the same load against a server that does no work: this machine's floor)"
    )


def batch_rounds(
    base: str, phase: Callable[[], dict[str, float]], rounds: int, label: str
) -> tuple[dict[str, float], list[float]]:
    """``phase`` run ``rounds`` times while ``/healthz`` is probed; prints each round. Returns the median of each
    of the rounds' figures and every probe's seconds, all rounds together."""
    results: list[dict[str, float]] = []
    pooled: list[float] = []
    for round_ in range(1, rounds + 1):
        wait_quiet()
        batches, probes = while_probing(base, phase)
        results.append(batches)
        pooled += probes
        print(
            f"{label} round {round_}: {batches['ok_per_s']:6.1f} batches/s  503s {batches['shed']}  /healthz "
            f"{percentiles(probes)} ({len(probes)} probes)",
            flush=True,
        )
    return {key: statistics.median(r[key] for r in results) for key in results[0]}, pooled


def while_probing(base: str, load: Callable[[], T]) -> tuple[T, list[float]]:
    """``load()``'s result, and the seconds of each ``/healthz`` probe timed while it ran."""
    health: list[float] = []
    stop_event = threading.Event()
    prober = threading.Thread(target=probe_health, args=(base, stop_event, health))
    prober.start()
    try:
        return load(), health
    finally:
        stop_event.set()
        prober.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="Embedded store with a champion.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Load duration of each run.")
    parser.add_argument(
        "--batches-only",
        action="store_true",
        help="Run only phase 3 (batches from the load client, /healthz timed) and phase 4 (the reference floor).",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Rounds of phase 3 and of phase 4: the /healthz figures are those of all rounds' probes together.",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed")

    workdir = Path(tempfile.mkdtemp(prefix="leadscore-overload-"))
    home = (args.home or workdir / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    name, version = train_model(home)
    print(f"model {name} v{version} in {home}")

    from leadscore.serving.schemas import EXAMPLE_LEAD

    lead = json.dumps(EXAMPLE_LEAD).encode()
    batch = json.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L-{i}"} for i in range(1000)]}).encode()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "LEADSCORE_HOME": str(home),
        # the run's score log lives and goes with its work folder: a reused --home does not grow run after run
        "LEADSCORE_SCORE_LOG_URL": f"sqlite:///{workdir / 'scores.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("LEADSCORE_TRACKING_URI", None)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = start([str(BIN / "leadscore"), "serve", "--port", str(port)], env, workdir, workdir / "serve.log")
    try:
        wait_ready(base + "/readyz", process)
        wrk(base + "/v1/score", lead, 8, 2, workdir)  # warm-up
        answer = workdir / "batch-answer.json"  # warm-up too (it starts the batch worker); the reference's answer
        with urllib.request.urlopen(
            urllib.request.Request(base + "/v1/score/batch", batch, {"Content-Type": "application/json"}), timeout=60
        ) as response:
            answer.write_bytes(response.read())
        rss_start = rss_mib(process.pid)
        single, batch_request = request_bytes("/v1/score", lead), request_bytes("/v1/score/batch", batch)
        if not args.batches_only:  # phases 1 and 2
            peak_wrk = wrk(base + "/v1/score", lead, 8, args.seconds, workdir)
            peak_ours = summary(drive_in_process(port, single, 8, args.seconds), args.seconds)
            peak = max(peak_wrk["goodput"], peak_ours["ok_per_s"])
            print(
                f"c=8 single:     {peak_wrk['goodput']:8.0f} 200/s (wrk)  {peak_ours['ok_per_s']:8.0f} 200/s (client)  "
                f"p99 {peak_wrk['p99']:.2f} / {peak_ours['p99']:.2f} ms"
            )
            over = summary(drive_in_process(port, single, 256, args.seconds), args.seconds)
            print(
                f"c=256 single:   {over['ok_per_s']:8.0f} 200/s  p99 of the 200s {over['p99']:.2f} ms  "
                f"503s {over['shed']}  other {over['other']}  (callers honour Retry-After)"
            )
            storm = wrk(base + "/v1/score", lead, 256, args.seconds, workdir)
            print(
                f"c=256 single:   {storm['goodput']:8.0f} 200/s  503s {int(storm['non2xx'])}  "
                "(wrk: retries at once, for information)"
            )

        def batch_phase() -> dict[str, float]:
            return summary(drive_in_process(port, batch_request, 64, args.seconds), args.seconds)

        batches, health = batch_rounds(base, batch_phase, args.rounds, "c=64 batches:")
        health_p99 = p99_ms(health)
        print(
            f"c=64 batches:   {batches['ok_per_s']:8.1f} 200/s ({batches['ok_per_s'] * 1000:.0f} leads/s)  "
            f"p99 {batches['p99']:.0f} ms  503s {batches['shed']:.0f}  (medians of {args.rounds} round(s); callers "
            f"honour Retry-After)  /healthz {percentiles(health)} ({len(health)} probes, all rounds)"
        )
        if args.batches_only:
            stop(process)
            reference_floor(batch_request, answer, batches["ok_per_s"], args.seconds, args.rounds, env, workdir)
            return
        mixed, mixed_health = while_probing(base, lambda: mixed_load(port, batch_request, single, args.seconds))
        print(
            f"mixed:          {mixed['batches']['ok_per_s']:8.1f} batches/s  "
            f"{mixed['singles']['ok_per_s']:8.0f} single leads/s (p99 {mixed['singles']['p99']:.2f} ms, "
            f"503s {mixed['singles']['shed']})  /healthz p99 {p99_ms(mixed_health):.2f} ms "
            "(64 connections of batches and 8 of single leads at once)"
        )
        storm_batches, health_storm = while_probing(
            base, lambda: wrk(base + "/v1/score/batch", batch, 64, args.seconds, workdir)
        )
        print(
            f"c=64 batches:   {storm_batches['goodput']:8.1f} 200/s  503s {int(storm_batches['non2xx'])}  "
            f"/healthz p99 {p99_ms(health_storm):.2f} ms (wrk: retries at once, for information)"
        )
        rss_after = rss_mib(process.pid)
        time.sleep(10)
        rss_rest = rss_mib(process.pid)
        print(f"RSS: start {rss_start:.0f} MiB, after the load {rss_after:.0f} MiB, after 10 s {rss_rest:.0f} MiB")
        stop(process)
        reference_floor(batch_request, answer, batches["ok_per_s"], args.seconds, args.rounds, env, workdir)
    finally:
        stop(process)
        if args.batches_only:
            shutil.rmtree(workdir, ignore_errors=True)

    share = over["ok_per_s"] / peak
    admitted_p99 = over["p99"]
    growth = rss_rest / rss_start - 1
    print("\ngoals")
    for label, figure, goal, met in (
        (
            "goodput at 256 / peak at 8",
            f"{share:.0%}",
            f">= {GOALS['min_goodput_share_at_256']:.0%}",
            share >= GOALS["min_goodput_share_at_256"],
        ),
        (
            "p99 at 256 (admitted)",
            f"{admitted_p99:.1f} ms",
            f"< {GOALS['max_p99_ms_at_256']} ms",
            admitted_p99 < GOALS["max_p99_ms_at_256"],
        ),
        (
            "/healthz p99 under batches",
            f"{health_p99:.2f} ms",
            f"< {GOALS['max_healthz_p99_ms_under_batches']} ms",
            health_p99 < GOALS["max_healthz_p99_ms_under_batches"],
        ),
        (
            "RSS growth after a rest",
            f"{growth:+.0%}",
            f"<= {GOALS['max_rss_growth_after_rest']:.0%}",
            growth <= GOALS["max_rss_growth_after_rest"],
        ),
    ):
        print(f"  {label:<30} {figure:>10}  goal {goal:<10} {'met' if met else 'NOT met'}")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
