"""Benchmark `leadscore serve` under overload: goodput, latency of what is admitted, health, memory after.

Run: ``.venv/bin/python bench/bench_overload.py [--home DIR] [--seconds 10]`` (needs ``wrk``). Trains a model
on synthetic data into a temporary embedded store (or uses the champion in ``--home``), starts
``leadscore serve`` on 127.0.0.1 and drives it with:

1. single leads at 8 connections (the peak: answers per second);
2. single leads at 256 connections: ``wrk`` drives 248 of them and a sampler in this process the other 8,
   timing each of its requests and noting its status. Goodput is the 200 answers per second of all 256;
   the latency goal is the p99 of the sampler's admitted (200) requests (``wrk`` cannot tell a 200's
   latency from a 503's; the 8 sampled connections behave as the 248 others: send, wait, send again);
3. 1,000-lead batches at 64 connections while a probe times ``/healthz`` (a new connection each time, as a
   liveness probe makes) every 10 ms;

and prints the resident memory of the serving process tree at start (after a warm-up), after the load
and after a 10 s rest, then the goals (``GOALS``), each with its figure and whether it was met. Timings
are only comparable on a quiet machine: ``wrk``, the sampler and the server share its cores.
"""

from __future__ import annotations

import argparse
import asyncio
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serving import BIN, ROOT, free_port, parse_wrk, rss_mib, start, stop, train_model, wait_ready

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


SAMPLED = 8  # of the 256 connections, those whose requests are timed one by one


async def _sample(port: int, request: bytes, until: float, out: list[tuple[int, float]]) -> None:
    """One keep-alive connection sending ``request`` again and again until ``until``: (status, seconds) each."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < until:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            out.append((int(head[9:12]), time.perf_counter() - began))
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def sample(port: int, body: bytes, connections: int, seconds: float, out: list[tuple[int, float]]) -> None:
    """Time single-lead requests over ``connections`` connections for ``seconds`` (in this thread's own loop)."""
    request = (
        b"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    async def run() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_sample(port, request, until, out) for _ in range(connections)))

    asyncio.run(run())


def p99_ms(seconds: list[float]) -> float:
    return statistics.quantiles(seconds, n=100)[98] * 1000 if len(seconds) > 2 else float("nan")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=None, help="Embedded store with a champion.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Load duration of each run.")
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
        rss_start = rss_mib(process.pid)
        peak = wrk(base + "/v1/score", lead, 8, args.seconds, workdir)
        print(f"c=8 single:     {peak['rps']:8.0f} req/s  p50 {peak['p50']:.2f} ms  p99 {peak['p99']:.2f} ms")
        sampled: list[tuple[int, float]] = []
        sampler = threading.Thread(target=sample, args=(port, lead, SAMPLED, args.seconds, sampled))
        sampler.start()
        over = wrk(base + "/v1/score", lead, 256 - SAMPLED, args.seconds, workdir)
        sampler.join()
        admitted = [t for code, t in sampled if code == 200]
        goodput = over["goodput"] + len(admitted) / args.seconds
        admitted_p99 = p99_ms(admitted)
        print(
            f"c=256 single:   {goodput:8.0f} 200/s  503s {int(over['non2xx']) + len(sampled) - len(admitted)}  "
            f"{over['socket_errors']}\n"
            f"                admitted p99 {admitted_p99:.2f} ms ({len(admitted)} timed of {len(sampled)} sampled); "
            f"all answers (wrk) p50 {over['p50']:.2f} ms p99 {over['p99']:.2f} ms"
        )
        health: list[float] = []
        stop_event = threading.Event()
        prober = threading.Thread(target=probe_health, args=(base, stop_event, health))
        prober.start()
        batches = wrk(base + "/v1/score/batch", batch, 64, args.seconds, workdir)
        stop_event.set()
        prober.join()
        rss_after = rss_mib(process.pid)
        time.sleep(10)
        rss_rest = rss_mib(process.pid)
        health_p99 = p99_ms(health)
        print(
            f"c=64 batches:   {batches['goodput']:8.1f} 200/s ({batches['goodput'] * 1000:.0f} leads/s)  "
            f"p99 {batches['p99']:.0f} ms  503s {int(batches['non2xx'])}  /healthz p99 {health_p99:.2f} ms "
            f"({len(health)} probes)"
        )
        print(f"RSS: start {rss_start:.0f} MiB, after the load {rss_after:.0f} MiB, after 10 s {rss_rest:.0f} MiB")
    finally:
        stop(process)

    share = goodput / peak["rps"]
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
    shutil.rmtree(workdir, ignore_errors=True) if args.home is None else None


if __name__ == "__main__":
    main()
