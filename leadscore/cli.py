"""The ``leadscore`` command: thin wiring of the training and serving commands (the only module that sees both)."""

from __future__ import annotations

import functools
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="leadscore",
    help="Lead scoring: generate data, train and register models in MLflow, promote through gates, score, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _quiet() -> None:
    """Keep MLflow's and alembic's chatter off the console; our own lines say what happened."""
    for name in ("mlflow", "alembic", "urllib3", "git"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="mlflow")
    warnings.filterwarnings("ignore", category=UserWarning, message=".*pkg_resources.*")


def _fails_cleanly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input and refused operations end with one line on stderr and exit code 2, not a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet()
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            # Imported here, not before the command runs: `serve` must not load the training stack.
            from leadscore.features.mapping import DataError
            from leadscore.training.promote import GateFailed

            if isinstance(exc, GateFailed):
                if kwargs.get("as_json"):
                    typer.echo(json.dumps(exc.result.summary(), default=str))
                else:
                    for gate in exc.result.gates:
                        typer.echo(f"{'pass' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}")
            elif not isinstance(exc, (DataError, LookupError, ValueError, FileNotFoundError)):
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _echo_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, default=str))


@app.command()
@_fails_cleanly
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write leads, activities and outcomes to.")],
    leads: Annotated[int, typer.Option(min=1, help="Number of leads.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 0,
    start: Annotated[str, typer.Option(help="First lead creation date.")] = "2024-10-01",
    end: Annotated[str, typer.Option(help="Extraction date: nothing after it appears in the data.")] = "2026-09-30",
    csv: Annotated[bool, typer.Option("--csv", help="Write CSV instead of Parquet.")] = False,
) -> None:
    """Write synthetic CRM data (leads, activities, outcomes), calibrated to public B2B conversion benchmarks."""
    from leadscore.training.synthetic import generate_crm, write_crm

    began = time.perf_counter()
    tables = generate_crm(leads, seed=seed, start=start, end=end)
    paths = write_crm(tables, out, "csv" if csv else "parquet")
    typer.echo(
        f"wrote {len(tables.leads):,} leads, {len(tables.activities):,} activities, {len(tables.outcomes):,} outcomes "
        f"to {out} in {time.perf_counter() - began:.1f}s ({', '.join(p.name for p in paths.values())})"
    )


@app.command()
@_fails_cleanly
def train(
    data: Annotated[
        Path, typer.Option(help="A CRM-form folder (leads/activities/outcomes) or a flat .csv/.parquet file.")
    ],
    config: Annotated[
        Path | None, typer.Option(help="Mapping YAML (see data/mappings/); default: leadscore's CRM schema.")
    ] = None,
    target: Annotated[str, typer.Option(help="CRM form: 'opportunity' or 'closed_won'.")] = "opportunity",
    horizon_days: Annotated[
        int, typer.Option(min=1, help="CRM form: a conversion counts if it happens within this many days of creation.")
    ] = 90,
    observation_days: Annotated[
        int, typer.Option(min=0, help="CRM form: leads are scored this many days after creation.")
    ] = 7,
    as_of: Annotated[
        str | None, typer.Option(help="CRM form: the moment the data is seen from (default: its latest timestamp).")
    ] = None,
    holdout_fraction: Annotated[float, typer.Option(help="Share of leads in the holdout (the newest period).")] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed for the model (and the random split of untimed data).")] = 0,
    min_conversions: Annotated[int, typer.Option(min=1, help="Refuse data with fewer conversions than this.")] = 120,
    routing: Annotated[
        Path | None, typer.Option(help="Routing policy YAML (tiers, queues, SLAs); default A10/B20/C30/D rest.")
    ] = None,
    report: Annotated[bool, typer.Option(help="Also write the model-vs-manual report and log it with the run.")] = True,
    experiment: Annotated[
        str | None,
        typer.Option(help="MLflow experiment of the run (default: one per input contract, named from the mapping)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object (run id, version, metrics).")] = False,
) -> None:
    """Train on closed history, log the run to MLflow, register a version and alias it 'challenger'."""
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.train import TrainOptions
    from leadscore.training.train import train as run_training

    options = TrainOptions(
        data=data,
        config=config,
        target=target,
        horizon_days=horizon_days,
        observation_days=observation_days,
        as_of=as_of,
        holdout_fraction=holdout_fraction,
        seed=seed,
        min_conversions=min_conversions,
        routing=routing,
    )
    extra = _report_writer() if report else None
    settings = get_mlflow_settings()
    if experiment is not None:
        settings = settings.model_copy(update={"experiment": experiment})
    result = run_training(options, settings, extra_artifacts=extra)
    if as_json:
        _echo_json(result.summary())
        return
    typer.echo(f"run {result.run_id}: registered {result.model_name} version {result.version} as 'challenger'")
    if result.experiment_url:
        typer.echo(f"MLflow: {result.experiment_url}")
    selection = result.fit.selection
    if selection is not None:
        cv = ", ".join(f"{name} {c['mean_auc']:.4f}" for name, c in selection.candidates.items())
        typer.echo(f"chosen by time-ordered CV in the training period: {selection.winner} (mean fold ROC AUC: {cv})")
    _print_metrics(result.metrics)
    for finding in result.fit.artifact.metadata.get("findings", []):
        typer.echo(finding)


def _report_writer() -> Callable[..., Any] | None:
    try:
        from leadscore.training.report import write_fit_report
    except ImportError:
        return None
    return write_fit_report


def _print_metrics(metrics: dict[str, dict[str, float]]) -> None:
    keys = ("roc_auc", "pr_auc", "brier", "ece", "lift_top10", "conversion_top10")
    typer.echo(f"{'holdout':<28}" + "".join(f"{k:>18}" for k in keys))
    for name, values in metrics.items():
        typer.echo(f"{name:<28}" + "".join(f"{values[k]:>18.4f}" for k in keys))
    first = next(iter(metrics.values()))
    typer.echo(f"({int(first['n']):,} holdout leads, {int(first['conversions']):,} conversions)")


@app.command()
@_fails_cleanly
def promote(
    version: Annotated[str | None, typer.Option(help="Version to promote (default: the 'challenger').")] = None,
    tolerance: Annotated[
        float, typer.Option(help="How much lower the candidate's holdout ROC AUC may be than the champion's.")
    ] = 0.005,
    max_ece: Annotated[float, typer.Option(help="Largest holdout calibration error a champion may have.")] = 0.05,
    new_contract: Annotated[
        bool,
        typer.Option(
            "--new-contract",
            help="Replace the champion's input contract (lead layout, target, horizon) knowingly; recorded.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Move 'champion' to a version only if it passes every gate: same input contract, better than chance and
    its baselines, not worse than the champion (paired bootstrap), calibrated, and servable as the API loads it."""
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.promote import promote as run_promote

    result = run_promote(
        get_mlflow_settings(), version=version, tolerance=tolerance, max_ece=max_ece, new_contract=new_contract
    )
    if as_json:
        _echo_json(result.summary())
        return
    for gate in result.gates:
        typer.echo(f"{'pass' if gate.passed else 'FAIL'} {gate.name}: {gate.detail}")
    for warning in result.warnings:
        typer.echo(f"note: {warning}")
    if result.promoted:
        typer.echo(f"{result.model_name}: 'champion' moved {result.previous_champion or '-'} -> {result.candidate}")


@app.command("convert-model")
@_fails_cleanly
def convert_model(
    model_uri: Annotated[
        str, typer.Option(help="models:/<name>/<version> of a version packaged with a pickled scorer.")
    ],
) -> None:
    """Register an older version again in the serving form (arrays + JSON, checksummed): a trusted, one-off step."""
    from leadscore.models import packaging, registry
    from leadscore.models.settings import get_mlflow_settings

    client = registry.configure(get_mlflow_settings())
    name, version = registry.resolve_version(client, model_uri)
    new = packaging.convert_version(client, name, version)
    typer.echo(f"{name}: version {version} registered again in the serving form as version {new}; no alias moved")


@app.command()
@_fails_cleanly
def history(as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False) -> None:
    """List every recorded alias move (who, when, from, to, why), newest first."""
    from leadscore.models import registry
    from leadscore.models.settings import get_mlflow_settings

    settings = get_mlflow_settings()
    moves = registry.alias_history(registry.configure(settings), settings.model_name)
    for move in moves:
        if as_json:
            _echo_json(move)
        else:
            typer.echo(
                f"{move.get('at')}  {move.get('alias'):<10} {move.get('from_version', '-'):>3} -> {move.get('to_version'):<3} "
                f"by {move.get('actor')}: {move.get('reason')}"
            )


@app.command()
@_fails_cleanly
def score(
    input: Annotated[Path, typer.Option("--input", help="Leads to score: a .csv/.parquet file, or a CRM-form folder.")],
    output: Annotated[Path, typer.Option(help="Where to write scores (.csv or .parquet), atomically.")],
    model_uri: Annotated[
        str, typer.Option(help="models:/<name>@<alias> or models:/<name>/<version>.")
    ] = "models:/lead-scoring@champion",
    as_of: Annotated[str | None, typer.Option(help="CRM folder input: aggregate engagement as of this moment.")] = None,
) -> None:
    """Score a batch of leads with a registered model: probability, score 0-100, tier and queue."""
    from leadscore.features.mapping import Mapping
    from leadscore.models import registry
    from leadscore.models.scorer import MODEL_FILES
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.batch import batch_model, load_leads, score_leads, write_scores

    settings = get_mlflow_settings()
    client = registry.configure(settings)
    folder, name, version = registry.fetch_files(client, model_uri, settings.home / "cache", MODEL_FILES)
    scorer = batch_model(folder)
    mapping = Mapping.model_validate(scorer.metadata["mapping"])
    began = time.perf_counter()
    leads = load_leads(input, mapping, as_of)
    scored = score_leads(leads, scorer, mapping, name, version)
    write_scores(scored, output)
    tiers = scored["tier"].value_counts().sort_index().to_dict()
    typer.echo(
        f"scored {len(scored):,} leads with {name} v{version} in {time.perf_counter() - began:.1f}s -> {output}; tiers {tiers}"
    )


@app.command()
@_fails_cleanly
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the generated data and scores.")] = Path("demo"),
    leads: Annotated[int, typer.Option(min=2000, help="Synthetic leads to generate.")] = 50_000,
    serve_check: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Finish by scoring one lead over HTTP.")
    ] = True,
) -> None:
    """End to end on the embedded store: generate -> train -> promote -> score a sample -> serve one score."""
    data = workdir / "crm"
    typer.echo("== generate")
    generate(out=data, leads=leads)
    typer.echo("== train")
    train(data=data)
    typer.echo("== promote")
    promote()
    typer.echo("== score")
    score(input=data, output=workdir / "scores.csv")
    if serve_check:
        typer.echo("== serve")
        _serve_once()


@app.command()
@_fails_cleanly
def evaluate(
    data: Annotated[
        Path, typer.Option(help="A CRM-form folder or a flat .csv/.parquet file (the training data, or newer data).")
    ],
    model_uri: Annotated[
        str, typer.Option(help="models:/<name>@<alias> or models:/<name>/<version>.")
    ] = "models:/lead-scoring@champion",
    config: Annotated[
        Path | None, typer.Option(help="Mapping YAML; default: the mapping the model was trained with.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.html, summary.json, CSV tables and charts.")] = Path(
        "report"
    ),
    leads_per_rep_week: Annotated[
        float | None, typer.Option(min=1, help="Leads one rep can work per week (capacity view).")
    ] = None,
    reps: Annotated[int | None, typer.Option(min=1, help="Number of reps working leads (capacity view).")] = None,
    rules: Annotated[
        Path | None, typer.Option(help="Points rules YAML (see data/rules/) to compare as one more manual process.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report summary as one JSON object.")] = False,
) -> None:
    """Judge a registered model and the manual processes on the leads it never trained on; write the HTML report."""
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.evaluate import evaluate as run_evaluate

    began = time.perf_counter()
    summary = run_evaluate(
        get_mlflow_settings(),
        model_uri,
        data,
        config,
        out,
        leads_per_rep_week=leads_per_rep_week,
        reps=reps,
        rules=rules,
    )
    if as_json:
        _echo_json(summary)
        return
    holdout = summary["holdout"]
    typer.echo(f"{summary['model']}: {summary['split_rule']}")
    typer.echo(
        f"{holdout['n']:,} holdout leads, {holdout['conversions']:,} conversions; report in {time.perf_counter() - began:.1f}s"
    )
    for name, values in summary["metrics"].items():
        auc = values["roc_auc"]
        typer.echo(f"  {name:<44} ROC AUC {auc if auc is None else f'{auc:.3f}'}")
    for name, v in summary["equal_volume"].items():
        if v["volume"]:
            typer.echo(
                f"  same volume as {name} ({v['volume']:,} leads): manual {v['manual_wins']:,} wins, model {v['model_wins']:,} wins"
            )
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {Path(out) / 'report.html'}")


@app.command()
@_fails_cleanly
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 for all).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (each loads the model and follows the alias).")
    ] = 1,
) -> None:
    """Serve the scoring API: models:/<LEADSCORE_MODEL_NAME>@<LEADSCORE_ALIAS>, reloaded when the alias moves."""
    from leadscore.serving.run import run

    run(host=host, port=port, workers=workers)


def _serve_once() -> None:
    from leadscore.serving.demo import score_one_over_http

    typer.echo(json.dumps(score_one_over_http(), indent=2, default=str))


if __name__ == "__main__":  # python -m leadscore.cli
    app()
