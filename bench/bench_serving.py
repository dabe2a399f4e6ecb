"""Benchmark the scoring API against a constant FastAPI app and `mlflow models serve`, one lead per request.

Run: ``.venv/bin/python bench/bench_serving.py [--home DIR] [--seconds 10] [--rounds 3]``. Trains a model on
synthetic data into a temporary embedded store (or uses the champion in ``--home``), starts every server on
127.0.0.1, then in each round drives each server in turn with the same single-lead load at 1 and 8
connections (``wrk`` when installed, else a Python load generator), after the machine has gone quiet. Prints
each run's requests/s, p50 and p99, then the medians over rounds, each server's resident memory, the ratios
of leadscore to MLflow and to the constant app (the median of each round's ratio: the two servers of a ratio
are measured minutes apart at most, whatever the machine does over the whole bench), and the floors the
scoring API is held to (``FLOORS``), each with its figure and whether it was met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The floors `leadscore serve` is held to, one lead per request: requests/s against `mlflow models serve`,
# p99 latency, and resident memory of the serving process tree (the API and its score-log writer).
FLOORS = {"min_ratio_to_mlflow": 20.0, "max_p99_ms_at_8": 10.0, "max_rss_mb": 300.0}
MB = 1e6
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

CONST_APP = textwrap.dedent(
    """
    from fastapi import FastAPI

    app = FastAPI()
    ANSWER = {"lead_id": "x", "probability": 0.1, "score": 50, "tier": "C", "queue": "sdr"}

    @app.post("/v1/score")
    async def score() -> dict:
        return ANSWER
    """
)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(url)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (mlflow serve runs uvicorn as a child, leadscore serve its
    score-log writer), in MiB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except OSError:
            continue
    return total / 1024


def parse_wrk(text: str) -> dict[str, float]:
    def to_ms(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", text).group(1))
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    return {
        "rps": rps,
        "p50": p50,
        "p99": p99,
        "non2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": errors.group(0) if errors else "",
    }


def load_wrk(url: str, body: bytes, connections: int, seconds: float, workdir: Path) -> dict[str, float]:
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(seconds)}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return parse_wrk(out)


def load_python(url: str, body: bytes, connections: int, seconds: float, workdir: Path) -> dict[str, float]:
    import httpx

    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        failed = 0
        deadline = time.perf_counter() + seconds
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def worker() -> None:
                nonlocal failed
                while time.perf_counter() < deadline:
                    began = time.perf_counter()
                    response = await client.post(url, content=body, headers={"content-type": "application/json"})
                    latencies.append((time.perf_counter() - began) * 1e3)
                    failed += response.status_code != 200

            await asyncio.gather(*(worker() for _ in range(connections)))
        return latencies, failed

    latencies, failed = asyncio.run(main())
    qs = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / seconds, "p50": qs[49], "p99": qs[98], "non2xx": float(failed), "socket_errors": ""}


def train_model(home: Path) -> tuple[str, str]:
    from leadscore.models import registry
    from leadscore.models.settings import MlflowSettings
    from leadscore.training.promote import promote
    from leadscore.training.synthetic import generate_crm, write_crm
    from leadscore.training.train import TrainOptions, train

    settings = MlflowSettings(home=home)
    client = registry.configure(settings)
    version = registry.alias_version(client, settings.model_name, "champion")
    if version is None:
        print("training a model on 20,000 synthetic leads (default settings: 150 trees of 15 leaves) ...", flush=True)
        data = home / "crm"
        write_crm(generate_crm(20_000, seed=0), data)
        train(TrainOptions(data=data), settings)
        promote(settings)
        version = registry.alias_version(client, settings.model_name, "champion")
    return settings.model_name, version


def pyfunc_body(name: str, version: str, home: Path) -> bytes:
    """The same lead as MLflow's scoring server wants it: the model's input columns, one record."""
    import mlflow

    from leadscore.features.online import lead_feature_record
    from leadscore.features.schema import LeadRecord
    from leadscore.serving.schemas import EXAMPLE_LEAD

    mlflow.set_tracking_uri(f"sqlite:///{(home / 'mlflow.db').resolve()}")
    info = mlflow.models.get_model_info(f"models:/{name}/{version}")
    columns = info.signature.inputs.input_names()
    record = lead_feature_record(LeadRecord.model_validate(EXAMPLE_LEAD), datetime.now(UTC))
    row = {}
    for column in columns:
        value = record.get(column)
        if isinstance(value, datetime):
            value = value.isoformat()
        row[column] = value
    return json.dumps({"dataframe_records": [row]}).encode()


def start(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def in_process_costs(name: str, version: str, home: Path) -> None:
    """Per-lead cost of the API's scoring path in-process (feature record + scorer), with and without reasons:
    the same lead over and over (the model's tables stay in the core's cache), and 1,000 varied leads."""
    import random

    from leadscore.features.online import lead_feature_record
    from leadscore.features.schema import LeadRecord
    from leadscore.models import registry
    from leadscore.models.scorer import MODEL_FILES, SCORER_FILE, Scorer
    from leadscore.models.settings import MlflowSettings
    from leadscore.serving.schemas import EXAMPLE_LEAD

    settings = MlflowSettings(home=home)
    folder, _, _ = registry.fetch_files(
        registry.configure(settings), f"models:/{name}/{version}", home / "cache", MODEL_FILES
    )
    scorer = Scorer.load(folder / SCORER_FILE)
    rng = random.Random(0)
    same = [LeadRecord.model_validate(EXAMPLE_LEAD)] * 1000
    varied = [
        LeadRecord.model_validate(
            {
                **EXAMPLE_LEAD,
                "lead_id": f"L-{i}",
                "employees": rng.randint(1, 20_000),
                "annual_revenue": rng.randint(10_000, 500_000_000),
                "industry": rng.choice(["saas", "fintech", "retail", "manufacturing", "healthcare"]),
                "manual_score": rng.randint(0, 100),
                "is_mql": rng.random() < 0.5,
                "bant_budget": rng.random() < 0.5,
                "bant_need": rng.random() < 0.5,
                "activities": EXAMPLE_LEAD["activities"][: rng.randint(0, 3)],
            }
        )
        for i in range(1000)
    ]
    now = datetime.now(UTC)
    for explain in (True, False):
        for label, leads in (("the same lead", same), ("varied leads", varied)):
            scorer.score_records([lead_feature_record(leads[0], now)], explain=explain)
            began = time.perf_counter()
            for lead in leads:
                scorer.score_records([lead_feature_record(lead, now)], explain=explain)
            print(
                f"in-process score one lead, explain={explain!s:<5}, {label:<13}: {(time.perf_counter() - began):.3f} ms/lead"
            )


def median_ratio(
    results: dict[tuple[str, int], list[dict[str, float]]], top: str, bottom: str, connections: int
) -> tuple[float, list[float]] | None:
    """The median over rounds of ``top``'s requests/s over ``bottom``'s, each round's pair measured minutes apart
    at most; and each round's ratio. None when either server was not run."""
    tops, bottoms = results.get((top, connections)), results.get((bottom, connections))
    if not tops or not bottoms:
        return None
    ratios = [t["rps"] / b["rps"] for t, b in zip(tops, bottoms, strict=True)]
    return statistics.median(ratios), ratios


def print_floors(results: dict[tuple[str, int], list[dict[str, float]]], memory: dict[str, float]) -> None:
    """Each floor of ``leadscore serve`` (with reasons, the default): its figure (the median over rounds), and
    met or MISSED."""
    lead, mlflow = "b) leadscore serve", "c) mlflow models serve"
    rows: list[tuple[str, str, str, bool]] = []
    for connections in (1, 8):
        ratio = median_ratio(results, lead, mlflow, connections)
        if ratio is not None:
            floor = FLOORS["min_ratio_to_mlflow"]
            rows.append(
                (
                    f"req/s against mlflow models serve, c={connections}",
                    f"{ratio[0]:.1f}x",
                    f">= {floor:.0f}x",
                    ratio[0] >= floor,
                )
            )
    if (lead, 8) in results:
        p99, floor = statistics.median(r["p99"] for r in results[lead, 8]), FLOORS["max_p99_ms_at_8"]
        rows.append(("p99 latency, c=8", f"{p99:.2f} ms", f"< {floor:.0f} ms", p99 < floor))
    if lead in memory:
        rss_mb, floor = memory[lead] * 2**20 / MB, FLOORS["max_rss_mb"]
        figure = f"{rss_mb:.0f} MB ({memory[lead]:.0f} MiB)"
        rows.append(("RSS (API + score-log writer)", figure, f"< {floor:.0f} MB", rss_mb < floor))
    print("\nfloors of leadscore serve (one lead per request, with reasons; medians over rounds)")
    for what, figure, floor, met in rows:
        print(f"  {what:<44}{figure:>20}   floor {floor:<10}{'met' if met else 'MISSED'}")
    if not rows:
        print("  (not measured: run servers b and c)")


def wait_quiet(idle_share: float = 0.9, timeout: float = 30.0) -> None:
    """Wait until this machine's cores were idle at least ``idle_share`` of the last half second (at most
    ``timeout`` seconds; Linux only): work a server left from its last run, such as the score-log writer
    catching up, is over before the next server is measured."""
    stat = Path("/proc/stat")
    if not stat.exists():
        return

    def idle_total() -> tuple[int, int]:
        fields = [int(x) for x in stat.read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        idle0, total0 = idle_total()
        time.sleep(0.5)
        idle1, total1 = idle_total()
        if total1 > total0 and (idle1 - idle0) / (total1 - total0) >= idle_share:
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=None, help="Embedded store with a champion (default: a new temp one)."
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="Load duration per server, concurrency and round.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="Rounds of measurement; in each, every server is loaded in turn at 1, then 8 connections. Figures "
        "and ratios are the medians over rounds.",
    )
    parser.add_argument("--python-load", action="store_true", help="Use the Python load generator even if wrk exists.")
    parser.add_argument(
        "--servers",
        default="a,b,b',c",
        help="Which servers to run, comma-separated: a (constant FastAPI), b (leadscore serve), b' (with "
        "?explain=false), c (mlflow models serve). Default: all.",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    home = (args.home or workdir / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    name, version = train_model(home)
    print(f"model {name} v{version} in {home}")
    in_process_costs(name, version, home)

    from leadscore.serving.schemas import EXAMPLE_LEAD

    lead_body = json.dumps(EXAMPLE_LEAD).encode()
    load = load_python if args.python_load or shutil.which("wrk") is None else load_wrk
    print(
        f"load generator: {'wrk' if load is load_wrk else 'python (httpx)'}; {args.seconds:.0f}s per run, "
        f"{args.rounds} round(s), the servers in turn within each"
    )
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
    (workdir / "const_app.py").write_text(CONST_APP)
    uvicorn_fast = ["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"]

    # each server process: its command and the path that says it is ready
    commands = {
        "a": (lambda p: [str(BIN / "uvicorn"), "const_app:app", "--port", str(p), *uvicorn_fast], "/docs"),
        "b": (lambda p: [str(BIN / "leadscore"), "serve", "--port", str(p)], "/readyz"),
        "c": (
            lambda p: [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                f"models:/{name}/{version}",
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(p),
            ],
            "/ping",
        ),
    }
    # each server measured: its process, the path it is sent and the body (b' is b's process with another path)
    servers = {
        "a) constant FastAPI": ("a", "/v1/score", lead_body),
        "b) leadscore serve": ("b", "/v1/score", lead_body),
        "b') leadscore ?explain=false": ("b", "/v1/score?explain=false", lead_body),
        "c) mlflow models serve": ("c", "/invocations", pyfunc_body(name, version, home)),
    }
    wanted = {name.strip() for name in args.servers.split(",")}
    servers = {label: server for label, server in servers.items() if label.split(")")[0] in wanted}
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    memory: dict[str, float] = {}
    processes: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for key in dict.fromkeys(server[0] for server in servers.values()):
            command, ready = commands[key]
            port = free_port()
            processes[key] = start(command(port), env, workdir, workdir / f"{key}.log"), port
            wait_ready(f"http://127.0.0.1:{port}{ready}", processes[key][0])
        urls = {label: f"http://127.0.0.1:{processes[key][1]}{path}" for label, (key, path, _) in servers.items()}
        for label, (_, _, body) in servers.items():
            check = urllib.request.Request(urls[label], data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(check, timeout=30) as response:
                assert response.status == 200, label
            load(urls[label], body, 1, 2, workdir)  # warm-up
        for round_ in range(1, args.rounds + 1):
            for connections in (1, 8):
                for label, (_, _, body) in servers.items():
                    wait_quiet()
                    r = load(urls[label], body, connections, args.seconds, workdir)
                    results.setdefault((label, connections), []).append(r)
                    print(
                        f"round {round_} {label:<30} c={connections}: {r['rps']:>8.0f} req/s  p50 {r['p50']:6.2f} ms  "
                        f"p99 {r['p99']:6.2f} ms  non-2xx {int(r['non2xx'])} {r['socket_errors']}",
                        flush=True,
                    )
        for label, (key, _, _) in servers.items():
            memory[label] = rss_mib(processes[key][0].pid)
    finally:
        for process, _ in processes.values():
            stop(process)

    print(f"\nsummary (medians over {args.rounds} round(s); RSS after the last)")
    print(f"{'server':<30}{'c':>3}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'RSS MiB':>9}")
    for (label, connections), runs in results.items():
        rps, p50, p99 = (statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99"))
        print(f"{label:<30}{connections:>3}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{memory.get(label, 0):>9.0f}")
    for connections in (1, 8):
        to_mlflow = median_ratio(results, "b) leadscore serve", "c) mlflow models serve", connections)
        to_const = median_ratio(results, "b) leadscore serve", "a) constant FastAPI", connections)
        if to_mlflow and to_const:
            print(
                f"c={connections}: (b)/(c) = {to_mlflow[0]:.1f}x (rounds: {', '.join(f'{x:.1f}' for x in to_mlflow[1])})"
                f"   (b)/(a) = {100 * to_const[0]:.0f}% (rounds: {', '.join(f'{100 * x:.0f}' for x in to_const[1])})"
            )
    print_floors(results, memory)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
