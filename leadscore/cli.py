"""The ``leadscore`` command: thin wiring of the training and serving commands (the only module that sees both)."""

from __future__ import annotations

import functools
import json
import logging
import time
import warnings
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(
    name="leadscore",
    help="Lead scoring: generate data, train and register models in MLflow, promote through gates, score, serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: it wraps option names, defaults and help text to the terminal instead of cutting them.
    rich_markup_mode=None,
)


class Engine(StrEnum):
    """Where training and batch scoring run: in this process, or on a Dask cluster."""

    local = "local"
    dask = "dask"


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
            elif not isinstance(exc, (DataError, LookupError, ValueError, FileNotFoundError)) and not _not_found(exc):
                raise
            typer.echo(f"error: {_one_line(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _one_line(exc: Exception) -> str:
    """The error as one line; a setting read from the environment is named by its variable."""
    from pydantic import ValidationError

    from leadscore.models.settings import MlflowSettings

    settings = {MlflowSettings.__name__}
    todo = [MlflowSettings]
    while todo:
        for sub in todo.pop().__subclasses__():
            settings.add(sub.__name__)
            todo.append(sub)
    if not (isinstance(exc, ValidationError) and exc.title in settings):
        return str(exc)
    prefix = MlflowSettings.model_config.get("env_prefix", "")
    parts = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            parts.append(f"{prefix}{str(error['loc'][0]).upper()}={error['input']!r}: {message}")
        else:
            parts.append(message)
    return "; ".join(parts)


def _not_found(exc: Exception) -> bool:
    """MLflow's answer for an unknown model, version or alias (matched by name: no MLflow import here)."""
    return type(exc).__name__ == "MlflowException" and getattr(exc, "error_code", "") in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
    )


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
    export_style: Annotated[
        str, typer.Option(help="'crm': leadscore's tables; 'messy': as real tools export them (see docs).")
    ] = "crm",
    chunk_leads: Annotated[
        int,
        typer.Option(
            min=1,
            help="Above this many leads, write each table as a folder of Parquet parts, one chunk of leads at a time.",
        ),
    ] = 250_000,
) -> None:
    """Write synthetic CRM data (leads, activities, outcomes), calibrated to public B2B conversion benchmarks."""
    from leadscore.training.synthetic import generate_crm, write_crm, write_crm_parts

    began = time.perf_counter()
    if export_style == "messy":
        from leadscore.training.messy import write_messy_exports

        written = write_messy_exports(out, leads=leads, seed=seed, start=start, end=end)
        typer.echo(f"wrote messy exports of {leads:,} leads to {out}: {', '.join(str(p) for p in written.values())}")
        return
    if export_style != "crm":
        raise ValueError(f"--export-style must be 'crm' or 'messy', not {export_style!r}")
    if leads > chunk_leads:
        if csv:
            raise ValueError(f"--csv writes one file per table; use Parquet for more than {chunk_leads:,} leads")
        paths = write_crm_parts(leads, out, seed=seed, start=start, end=end, chunk_leads=chunk_leads)
        typer.echo(
            f"wrote {leads:,} leads in parts of {chunk_leads:,} to {out} in {time.perf_counter() - began:.1f}s "
            f"({', '.join(f'{p.name}/' for p in paths.values())})"
        )
        return
    tables = generate_crm(leads, seed=seed, start=start, end=end)
    paths = write_crm(tables, out, "csv" if csv else "parquet")
    typer.echo(
        f"wrote {len(tables.leads):,} leads, {len(tables.activities):,} activities, {len(tables.outcomes):,} outcomes "
        f"to {out} in {time.perf_counter() - began:.1f}s ({', '.join(p.name for p in paths.values())})"
    )


@app.command()
@_fails_cleanly
def inspect(
    data: Annotated[Path, typer.Option(help="An export: one file, or a folder of related files.")],
    out: Annotated[
        Path | None, typer.Option(help="Write the draft mapping here (default: print it after the summary).")
    ] = None,
) -> None:
    """Read an export and draft the mapping that trains on it: id, dates, label, kinds, leakage suspects."""
    from rich.console import Console
    from rich.table import Table

    from leadscore.features.files import write_atomic
    from leadscore.features.inspect import inspect_export, mapping_yaml, summary_rows

    draft = inspect_export(data)
    text = mapping_yaml(draft)
    console = Console(soft_wrap=False)
    table = Table(title=f"{draft.main.name}: {draft.rows:,} rows, {len(draft.columns)} columns ({draft.form} form)")
    for name in ("column", "kind", "missing", "distinct", "decision"):
        table.add_column(name, overflow="fold")
    for row in summary_rows(draft):
        table.add_row(*row)
    console.print(table)
    if draft.label:
        values = ", ".join(f"{k!r} ({v:,})" for k, v in draft.label_values.items())
        console.print(f"label: {draft.label!r}, positive {draft.positive!r}; values {values}", highlight=False)
    if draft.created_at:
        console.print(f"created_at: {draft.created_at!r}, format {draft.created_format}", highlight=False)
    if draft.conversions:
        spec = draft.conversions
        at = f", converted at {spec['at']!r}" if "at" in spec else ""
        console.print(f"conversions: {spec['table']} by {spec['id']!r}{at}", highlight=False)
    for lookup in draft.lookups:
        console.print(f"lookup: {lookup['table']} joined on {lookup['on']!r}", highlight=False)
    for note in draft.notes:
        console.print(f"note: {note}", highlight=False)
    if out is None:
        typer.echo(text)
        return
    write_atomic(out, text)
    typer.echo(f"draft mapping written to {out}; check it, then: leadscore train --data {data} --config {out}")


@app.command()
@_fails_cleanly
def train(
    data: Annotated[
        Path,
        typer.Option(
            help="A CRM-form folder (leads/activities/outcomes) or a flat .csv/.parquet/.xlsx file or folder."
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Option(help="Mapping YAML (draft one with 'leadscore inspect'); default: leadscore's CRM schema."),
    ] = None,
    target: Annotated[str, typer.Option(help="CRM form: 'opportunity' or 'closed_won'.")] = "opportunity",
    horizon_days: Annotated[
        int,
        typer.Option(
            min=1, help="CRM form, or flat with a conversions table: a conversion counts within this many days."
        ),
    ] = 90,
    observation_days: Annotated[
        int, typer.Option(min=0, help="CRM form: leads are scored this many days after creation.")
    ] = 7,
    as_of: Annotated[
        str | None,
        typer.Option(help="The moment the data is seen from (default: its latest timestamp)."),
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (run id, version, metrics, notes, stage timings).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress and no notes on stderr (warnings stay).")] = False,
    engine: Annotated[Engine, typer.Option(help="local: one process; dask: a Dask cluster (CRM form, Parquet).")] = (
        Engine.local
    ),
    scheduler: Annotated[
        str | None, typer.Option(help="--engine dask: scheduler address (default: a local cluster of processes).")
    ] = None,
    sample_rows: Annotated[
        int, typer.Option(min=1, help="--engine dask: rows collected for calibration, baselines and the report.")
    ] = 500_000,
) -> None:
    """Train on closed history, log the run to MLflow, register a version and alias it 'challenger'."""
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.progress import Stages
    from leadscore.training.train import TrainOptions
    from leadscore.training.train import train as run_training

    _quiet()  # again: importing MLflow resets its loggers

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
    stages = Stages.for_terminal(quiet=quiet)
    if engine is Engine.dask:
        from leadscore.training.distributed import train_distributed

        result = train_distributed(
            options, settings, extra_artifacts=extra, scheduler=scheduler, sample_rows=sample_rows
        )
    else:
        result = run_training(options, settings, extra_artifacts=extra, stages=stages)
    _echo_notes(result.fit.frame, quiet=quiet)
    if as_json:
        _echo_json(result.summary())
        return
    typer.echo(f"run {result.run_id}: registered {result.model_name} version {result.version} as 'challenger'")
    if result.experiment_url:
        typer.echo(f"MLflow: {result.experiment_url}")
    selection = result.fit.selection
    if selection is not None:
        cv = ", ".join(f"{name} {c['mean_auc']:.4f}" for name, c in selection.candidates.items())
        from leadscore.models.selection import cv_words

        typer.echo(
            f"chosen by {cv_words(selection.timed)} in the training period: {selection.winner} (mean fold ROC AUC: {cv})"
        )
    _print_metrics(result.metrics)
    for finding in result.fit.artifact.metadata.get("findings", []):
        typer.echo(finding)


def _echo_notes(tf: Any, quiet: bool = False) -> None:
    """What the run decided for the user (no id, unused columns, split rule) on stderr; ``quiet`` keeps the
    warnings only. The same lists are in ``--json`` and the run's metadata."""
    for warning in tf.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for note in [] if quiet else tf.notes:
        typer.echo(f"note: {note}", err=True)


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
    allow_missing_features: Annotated[
        bool, typer.Option("--allow-missing-features", help="Score even when the model's features are missing.")
    ] = False,
    engine: Annotated[
        Engine, typer.Option(help="local: one process; dask: a Dask cluster, output a folder of Parquet parts.")
    ] = Engine.local,
    scheduler: Annotated[
        str | None, typer.Option(help="--engine dask: scheduler address (default: a local cluster of processes).")
    ] = None,
) -> None:
    """Score a batch of leads with a registered model: probability, score 0-100, tier and queue."""
    from leadscore.features.coverage import check_coverage, coverage
    from leadscore.features.mapping import Mapping
    from leadscore.features.values import refuse_non_finite
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
    if engine is Engine.dask:
        from leadscore.training.distributed_scoring import score_distributed

        done = score_distributed(
            input, output, scorer, mapping, name, version, as_of=as_of, scheduler=scheduler,
            allow_missing_features=allow_missing_features,
        )  # fmt: skip
        if done["warning"]:
            typer.echo(f"warning: {done['warning']}", err=True)
        typer.echo(
            f"scored {done['rows']:,} leads with {name} v{version} in {time.perf_counter() - began:.1f}s -> {output}; "
            f"tiers {done['tiers']}"
        )
        return
    leads = load_leads(input, mapping, as_of)
    features = list(scorer.metadata.get("feature_columns") or [])
    cov = coverage(leads, features, scorer.metadata.get("feature_importance"), mapping.missing_values)
    refuse_non_finite(leads, mapping.numeric, str(input), mapping.missing_values)
    warning = check_coverage(cov, str(input), allow=allow_missing_features)
    if warning:
        typer.echo(f"warning: {warning}", err=True)
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
    """End to end on the embedded store: generate -> train -> promote -> score -> hand-off and loop report -> serve."""
    data = workdir / "crm"
    typer.echo("== generate")
    generate(out=data, leads=leads)
    typer.echo("== train")
    train(data=data)
    typer.echo("== promote")
    promote()
    typer.echo("== score")
    score(input=data, output=workdir / "scores.csv")
    typer.echo("== hand-off")
    _demo_handoff(data, workdir)
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
    allow_public_without_keys: Annotated[
        bool,
        typer.Option(
            help="Listen on a non-loopback address without LEADSCORE_API_KEYS (anyone reaching it can score)."
        ),
    ] = False,
) -> None:
    """Serve the scoring API: models:/<LEADSCORE_MODEL_NAME>@<LEADSCORE_ALIAS>, reloaded when the alias moves."""
    from leadscore.serving.run import run

    try:
        run(host=host, port=port, workers=workers, allow_public_without_keys=allow_public_without_keys)
    except PermissionError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


events_app = typer.Typer(help="Outcome events of scored leads: import a CRM export, export a training table.")
app.add_typer(events_app, name="events")


@events_app.command("import")
@_fails_cleanly
def events_import(
    file: Annotated[Path, typer.Argument(help="CRM export of outcome events (.csv or .parquet).")],
    config: Annotated[Path, typer.Option(help="Events mapping YAML (see docs/handoff.md).")],
) -> None:
    """Load outcome events into the score log's database (LEADSCORE_SCORE_LOG_URL); importing again adds nothing."""
    from leadscore.training.events_io import import_events

    began = time.perf_counter()
    stored, duplicates = import_events(file, config)
    typer.echo(
        f"{stored + duplicates:,} events read from {file}: {stored:,} stored, {duplicates:,} already there "
        f"({time.perf_counter() - began:.1f}s)"
    )


@events_app.command("export")
@_fails_cleanly
def events_export(
    out: Annotated[Path, typer.Option(help="Folder for leads.csv, conversions.csv and mapping.yaml.")],
    since: Annotated[str, typer.Option(help="First day of scoring to export (UTC).")],
    until: Annotated[str, typer.Option(help="Day after the last day of scoring to export (UTC).")],
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: LEADSCORE_SCORE_LOG_URL, or <home>/scores.db).")
    ] = None,
) -> None:
    """The logged model inputs with their outcomes as a flat training table (train with --config mapping.yaml)."""
    from leadscore.models.settings import LoopSettings
    from leadscore.training.events_io import export_events

    settings = LoopSettings(score_log_url=db) if db else LoopSettings()
    leads, conversions = export_events(out, _moment(since, "--since"), _moment(until, "--until"), settings)
    typer.echo(f"exported {leads:,} scored leads and {conversions:,} conversions to {out}")


def _moment(value: str | None, option: str) -> Any:
    """A date or date-time option as an aware UTC datetime (a date is its midnight, UTC)."""
    from datetime import UTC, datetime

    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{option} {value!r}: expected a date (2026-03-02) or a date and time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@app.command("loop-report")
@_fails_cleanly
def loop_report(
    since: Annotated[str, typer.Option(help="First day of scoring to report on (2026-03-02; UTC).")],
    until: Annotated[str, typer.Option(help="Day after the last day of scoring to report on (UTC).")],
    out: Annotated[Path, typer.Option(help="Folder for loop.html, loop.json and the CSV tables.")] = Path(
        "loop-report"
    ),
    as_of: Annotated[str | None, typer.Option(help="Count the events up to this moment (default: now).")] = None,
    horizon_days: Annotated[
        int, typer.Option(min=1, help="A lead converted when an opportunity came within this many days.")
    ] = 90,
    segment: Annotated[
        list[str] | None, typer.Option(help="Model input to break the report down by (repeat; default: source).")
    ] = None,
    reference_since: Annotated[
        str | None, typer.Option(help="Drift reference: first day (default: the same length before --since).")
    ] = None,
    reference_until: Annotated[str | None, typer.Option(help="Drift reference: day after its last day.")] = None,
    db: Annotated[
        str | None, typer.Option(help="Database URL (default: LEADSCORE_SCORE_LOG_URL, or <home>/scores.db).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report's header and notes as JSON.")] = False,
) -> None:
    """What happened to the leads scored from --since to --until: acceptance, SLA, conversion, calibration, drift."""
    from leadscore.models.settings import LoopSettings
    from leadscore.training.loop_report import PAGE
    from leadscore.training.loop_report import loop_report as run_loop_report

    settings = LoopSettings(score_log_url=db) if db else LoopSettings()
    reference = None
    if reference_since or reference_until:
        if not (reference_since and reference_until):
            raise ValueError("give both --reference-since and --reference-until, or neither")
        reference = (_moment(reference_since, "--reference-since"), _moment(reference_until, "--reference-until"))
    began = time.perf_counter()
    summary = run_loop_report(
        _moment(since, "--since"),
        _moment(until, "--until"),
        out,
        settings,
        as_of=_moment(as_of, "--as-of"),
        horizon_days=horizon_days,
        segments=segment if segment else ["source"],
        reference=reference,
    )
    if as_json:
        _echo_json({"header": summary["header"], "notes": summary["notes"]})
        return
    h = summary["header"]
    typer.echo(
        f"{h['leads']:,} leads scored, {h['events']:,} events: accepted {h['accepted'] or 0:.1%}, "
        f"first touch in SLA {h['on_time'] or 0:.1%}, {h['opportunities']:,} opportunities, {h['won']:,} won "
        f"({time.perf_counter() - began:.1f}s)"
    )
    for note in summary["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"report: {Path(out) / PAGE}")


def _demo_handoff(data: Path, workdir: Path) -> None:
    """Play the hand-off for the demo's scores into <workdir>/loop.db and write the loop report of its last
    26 weeks to <workdir>/loop-report."""
    from datetime import timedelta

    from leadscore.models import registry
    from leadscore.models.scorer import MODEL_FILES
    from leadscore.models.settings import get_mlflow_settings
    from leadscore.training.batch import batch_model
    from leadscore.training.handoff import demo_loop

    settings = get_mlflow_settings()
    client = registry.configure(settings)
    folder, name, version = registry.fetch_files(
        client, f"models:/{settings.model_name}@champion", settings.home / "cache", MODEL_FILES
    )
    sla = {t.name: t.sla_hours for t in batch_model(folder).routing.tiers}
    db = (workdir / "loop.db").resolve()
    db.unlink(missing_ok=True)
    n_scores, n_events, as_of = demo_loop(data, workdir / "scores.csv", sla, f"sqlite:///{db}", model=(name, version))
    typer.echo(f"played the hand-off of {n_scores:,} scored leads: {n_events:,} events -> {db}")
    loop_report(
        since=(as_of - timedelta(weeks=26)).date().isoformat(),
        until=(as_of + timedelta(days=1)).date().isoformat(),
        out=workdir / "loop-report",
        as_of=as_of.isoformat(),
        db=f"sqlite:///{db}",
        segment=["source", "region"],
    )


def _serve_once() -> None:
    from leadscore.serving.demo import score_one_over_http

    typer.echo(json.dumps(score_one_over_http(), indent=2, default=str))


if __name__ == "__main__":  # python -m leadscore.cli
    app()
