"""Batch scoring of a lead file (or a CRM-form folder) with a registered model; the output is written atomically.

It scores with the model's serving form (:class:`models.scorer.Scorer`, as the API does): the same
encoding, the trees walked in C on every core, and neither LightGBM nor scikit-learn loaded. Where the
install built no C kernel, it scores with the artifact's LightGBM instead, which is faster on large tables
than the serving form's numpy walk; tests hold both to the same floats.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from leadscore.features.build import CrmTables, read_crm_tables, scoring_frame
from leadscore.features.files import write_atomic
from leadscore.features.mapping import DataError, Mapping, read_table
from leadscore.models.scorer import ARTIFACT_FILE, SCORER_FILE, Scorer

if TYPE_CHECKING:
    from leadscore.models.artifact import ScoringArtifact


def load_leads(path: Path, mapping: Mapping, as_of: str | None) -> pd.DataFrame:
    """Lead rows to score: a flat file (with the mapping's lookup tables joined when they lie beside it), or a
    CRM folder with engagement aggregated as of ``as_of``. A lookup that is absent leaves its columns out, for
    the coverage check to weigh."""
    path = Path(path)
    if path.is_dir() and mapping.form == "crm":
        tables: CrmTables = read_crm_tables(path, mapping)
        return scoring_frame(tables, mapping, as_of)
    from leadscore.features.flat import join_lookups, leads_path, related_path

    path = leads_path(path, mapping)
    table = read_table(path, delimiter=mapping.delimiter, encoding=mapping.encoding)
    present = []
    for lookup in mapping.lookups:
        try:
            related_path(path, lookup.table)
        except DataError:
            continue
        if lookup.on in table.columns:
            present.append(lookup)
    if present:
        table = join_lookups(table, path, mapping.model_copy(update={"lookups": present}), [])
    return table


def write_scores(frame: pd.DataFrame, output: Path) -> Path:
    """Write the scored table as Parquet or CSV by ``output``'s suffix, atomically (see :func:`write_atomic`)."""
    output = Path(output)
    if output.suffix not in (".parquet", ".csv"):
        raise DataError(f"{output}: output must end in .parquet or .csv")
    if output.suffix == ".parquet":
        return write_atomic(output, lambda tmp: frame.to_parquet(tmp, index=False))
    return write_atomic(output, lambda tmp: frame.to_csv(tmp, index=False))


def batch_model(folder: Path) -> Scorer | ScoringArtifact:
    """The model form that scores large tables fastest from a cached version's folder (see the module's note)."""
    scorer = Scorer.load(Path(folder) / SCORER_FILE)
    if scorer.trees is None or scorer.trees.native:  # linear terms need neither LightGBM nor the kernel
        return scorer
    from leadscore.models.artifact import ScoringArtifact  # LightGBM and scikit-learn load only on this path

    return ScoringArtifact.load(Path(folder) / ARTIFACT_FILE)


def score_leads(
    leads: pd.DataFrame, scorer: Scorer | ScoringArtifact, mapping: Mapping, model_name: str, version: str
) -> pd.DataFrame:
    """Probability, score, tier and queue per lead, with the id and the model version that scored it."""
    key = mapping.id or "row"  # a mapping without an id identifies leads by their row number, from 1
    ids = leads[key] if key in leads.columns else pd.Series(range(1, len(leads) + 1), name=key)
    return pd.DataFrame(
        {key: ids.to_numpy(), **scorer.score_table(leads), "model_name": model_name, "model_version": version}
    )
