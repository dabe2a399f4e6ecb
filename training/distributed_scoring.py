"""Batch scoring on Dask (``leadscore score --engine dask``): the model's serving form applied to each part of
leads on the workers.

Each part is scored and written on its worker as one Parquet file of a dataset in a temporary folder beside
the output; the folder is renamed into place once every part is written and the input coverage check has
passed, so a failed or refused job leaves nothing. The workers import this module to run
:func:`score_part`: it loads Dask's DataFrame code only inside the client's functions, and neither
LightGBM nor the training code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from leadscore.features.coverage import check_coverage, coverage, weigh
from leadscore.features.mapping import DataError, Mapping
from leadscore.features.values import refuse_non_finite
from leadscore.models.scorer import Scorer
from leadscore.training.batch import score_leads

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from leadscore.models.artifact import ScoringArtifact

T = TypeVar("T")


def scoring_inputs(
    input: Path, mapping: Mapping, as_of: str | None = None, partitions: int | None = None
) -> list[Delayed]:
    """The leads to score, one pandas frame per part: a CRM folder's leads with engagement as of ``as_of``
    (:func:`features.distributed.scoring_parts`), or a flat Parquet file or folder of parts as it is."""
    from leadscore.features.distributed import read_parquet, scoring_parts

    input = Path(input)
    if input.is_dir() and mapping.form == "crm":
        return scoring_parts(input, mapping, as_of, partitions)
    return list(read_parquet(input).to_delayed())


def score_part(
    leads: pd.DataFrame,
    scorer: Scorer | ScoringArtifact,
    mapping: Mapping,
    model_name: str,
    version: str,
    features: list[str],
    path: Path,
    source: str,
    part: tuple[int, int] = (0, 1),
) -> dict[str, Any]:
    """Score one part with :func:`training.batch.score_leads` and write it to ``path``; its rows, tiers and
    the model's features it lacks (:func:`features.coverage.coverage`). ``part``: its index and how many
    there are; with more than one, an error names the part, and its row numbers count from the part's start."""
    index, of = part
    where = source if of == 1 else f"{source} (part {index + 1} of {of}; rows counted from the part's first)"
    refuse_non_finite(leads, mapping.numeric, where, mapping.missing_values)
    missing = coverage(leads, features, None, mapping.missing_values).missing
    scored = score_leads(leads, scorer, mapping, model_name, version)
    scored.to_parquet(path, index=False)
    return {"rows": len(scored), "tiers": scored["tier"].value_counts().to_dict(), "missing": missing}


def write_dataset(output: Path, write: Callable[[Path], T]) -> T:
    """Run ``write(folder)`` on a temporary folder beside ``output``, then rename the folder into place: a
    ``write`` that fails (or refuses what it wrote) leaves no output and no temporary folder, and an earlier
    ``output`` stays as it was. Returns what ``write`` returns."""
    output = Path(output)
    if output.suffix == ".csv" or (output.exists() and not output.is_dir()):
        raise DataError(f"{output}: the Dask engine writes a folder of Parquet parts; name a folder")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent.absolute(), prefix=f".{output.name}.", suffix=".tmp"))
    old = staging.with_name(staging.name + ".old")
    try:
        result = write(staging)
        os.chmod(staging, 0o755)
        if output.exists():
            os.replace(output, old)
        try:
            os.replace(staging, output)
        except BaseException:
            if old.exists():
                os.replace(old, output)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return result


def score_distributed(
    input: Path,
    output: Path,
    scorer: Scorer | ScoringArtifact,
    mapping: Mapping,
    model_name: str,
    version: str,
    *,
    as_of: str | None = None,
    scheduler: str | None = None,
    partitions: int | None = None,
    cluster: dict[str, Any] | None = None,
    allow_missing_features: bool = False,
) -> dict[str, Any]:
    """``leadscore score --engine dask``: score every part on the cluster into a folder of Parquet parts,
    written atomically (:func:`write_dataset`). The input coverage check is the local engine's
    (:func:`features.coverage.check_coverage`): a feature counts as missing when every part lacks it, and
    a refusal leaves no output. Returns rows, tiers and the coverage warning (None when nothing is missing)."""
    import dask

    from leadscore.features.distributed import connect

    features = list(scorer.metadata.get("feature_columns") or [])

    def write(folder: Path) -> dict[str, Any]:
        parts = scoring_inputs(input, mapping, as_of, partitions)
        model = client.scatter(scorer, broadcast=True)
        score = dask.delayed(score_part, pure=True)
        done = dask.compute(
            *[
                score(
                    part,
                    model,
                    mapping,
                    model_name,
                    version,
                    features,
                    folder / f"part-{i:05d}.parquet",
                    str(input),
                    (i, len(parts)),
                )
                for i, part in enumerate(parts)
            ]
        )
        missing = [f for f in features if all(f in d["missing"] for d in done)]
        cov = weigh(missing, features, scorer.metadata.get("feature_importance"))
        warning = check_coverage(cov, str(input), allow=allow_missing_features)
        tiers = sum((Counter(d["tiers"]) for d in done), Counter())
        return {
            "rows": sum(d["rows"] for d in done),
            "tiers": {str(k): int(v) for k, v in sorted(tiers.items())},
            "warning": warning,
        }

    with connect(scheduler, **(cluster or {})) as client:
        return write_dataset(output, write)
