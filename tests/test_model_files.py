"""Model files through a real `mlflow server`: checksummed at registration, verified at download and cache hit,
and the API loads only the serving file, never a pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import joblib
import pytest
from mlflow.tracking import MlflowClient

from leadscore.models import packaging, registry
from leadscore.models.registry import CHECKSUM_TAG, CHECKSUMS_FILE, ChecksumMismatch
from leadscore.models.scorer import ARTIFACT_FILE, SCORER_FILE, SERVING_FILES
from leadscore.models.settings import MlflowSettings
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import RegistryLoader
from leadscore.training.promote import GateFailed, promote
from leadscore.training.train import CHALLENGER, TrainOptions, train

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def trained(server_settings: MlflowSettings, crm_folder: Path) -> tuple[MlflowSettings, str]:
    result = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40), server_settings)
    return server_settings, result.version


def serving(settings: MlflowSettings) -> ServingSettings:
    return ServingSettings(
        tracking_uri=settings.tracking_uri, home=settings.home, model_name=settings.model_name, alias=CHALLENGER
    )


def test_the_api_loads_a_registered_version_without_unpickling_anything(
    trained: tuple[MlflowSettings, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, version = trained

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the API unpickled a model file")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (joblib, "load")):
        monkeypatch.setattr(module, name, refuse)
    loader = RegistryLoader(serving(settings))
    model = loader.load_initial()
    assert (model.version, model.source) == (version, "registry")
    folder = registry.cached_folder(loader.cache_dir, settings.model_name, version)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*SERVING_FILES, CHECKSUMS_FILE])  # no pickle fetched
    tags = MlflowClient(settings.tracking_uri).get_model_version(settings.model_name, version).tags
    assert tags[f"{CHECKSUM_TAG}{SCORER_FILE}"] == registry.sha256_file(folder / SCORER_FILE)
    assert len(tags[f"{CHECKSUM_TAG}{ARTIFACT_FILE}"]) == 64


def test_a_damaged_cached_file_is_fetched_again_and_a_damaged_stored_one_refused(
    trained: tuple[MlflowSettings, str],
) -> None:
    settings, version = trained
    loader = RegistryLoader(serving(settings))
    loader.load_initial()
    cached = registry.cached_folder(loader.cache_dir, settings.model_name, version) / SCORER_FILE
    good = cached.read_bytes()
    cached.write_bytes(good[: len(good) // 3])  # truncated in the cache: fetched again, served
    assert loader.load_version(version).version == version and cached.read_bytes() == good

    cached.write_bytes(good[:100])  # registry unreachable: the cold start refuses the damaged cache, naming the file
    offline = RegistryLoader(serving(settings).model_copy(update={"tracking_uri": "http://127.0.0.1:9"}))
    with pytest.raises(ChecksumMismatch, match=f"{SCORER_FILE}: does not match"):
        offline.load_initial()

    client = registry.configure(settings)  # the stored file no longer matches its registered checksum
    client.set_model_version_tag(settings.model_name, version, f"{CHECKSUM_TAG}{SCORER_FILE}", "0" * 64)
    with pytest.raises(ChecksumMismatch, match=f"{SCORER_FILE} as downloaded does not match"):
        registry.fetch_files(client, f"models:/{settings.model_name}/{version}", loader.cache_dir, SERVING_FILES)
    assert not list(cached.parent.parent.glob(f".{version}-*"))  # no staging left behind

    client.delete_model_version_tag(settings.model_name, version, f"{CHECKSUM_TAG}{SCORER_FILE}")
    with pytest.raises(ChecksumMismatch, match=r"records no sha256 for scorer\.npz.*convert-model"):
        registry.fetch_files(client, f"models:/{settings.model_name}/{version}", loader.cache_dir, SERVING_FILES)

    new = packaging.convert_version(client, settings.model_name, version)  # the documented one-off conversion
    assert loader.load_version(new).version == new
    assert client.get_model_version(settings.model_name, new).tags["leadscore.converted_from"] == version


def test_promotion_refuses_another_contract_and_files_the_api_cannot_load(
    trained: tuple[MlflowSettings, str], crm_folder: Path
) -> None:
    settings, first = trained
    assert promote(settings).promoted
    other = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40, horizon_days=60), settings)
    with pytest.raises(GateFailed) as refused:
        promote(settings)
    gates = {g.name: g for g in refused.value.result.gates}
    assert [n for n, g in gates.items() if not g.passed] == ["same_contract"]
    assert (
        "horizon_days 90 -> 60" in gates["same_contract"].detail and "--new-contract" in gates["same_contract"].detail
    )
    assert "not_worse_than_champion" not in gates  # the champion's contract cannot be judged on this holdout

    client = registry.configure(settings)  # the stored serving file no longer matches its registered checksum
    tag = f"{CHECKSUM_TAG}{SCORER_FILE}"
    good = client.get_model_version(settings.model_name, other.version).tags[tag]
    client.set_model_version_tag(settings.model_name, other.version, tag, "0" * 64)
    with pytest.raises(GateFailed) as unservable:
        promote(settings, new_contract=True)
    failed = [g for g in unservable.value.result.gates if not g.passed]
    assert [g.name for g in failed] == ["servable"] and "scorer.npz" in failed[0].detail

    client.set_model_version_tag(settings.model_name, other.version, tag, good)
    result = promote(settings, new_contract=True)
    assert result.promoted and result.previous_champion == first
    assert "NEW input contract" in registry.alias_history(client, settings.model_name)[0]["reason"]


def test_runs_land_in_one_experiment_per_contract_with_readable_names_and_versions(
    server_settings: MlflowSettings, crm_folder: Path
) -> None:
    settings = server_settings.model_copy(update={"experiment": None})
    first = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40), settings)
    again = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40, seed=1), settings)
    other = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40, horizon_days=60), settings)
    client = registry.configure(settings)
    runs = {r.version: client.get_run(r.run_id) for r in (first, again, other)}
    experiments = {v: client.get_experiment(run.info.experiment_id) for v, run in runs.items()}
    assert experiments[first.version].experiment_id == experiments[again.version].experiment_id
    assert experiments[first.version].experiment_id != experiments[other.version].experiment_id
    experiment = experiments[first.version]
    assert experiment.name.startswith("crm · opportunity 90d · ")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on training runs
    assert "target opportunity within 90 days" in experiment.tags["mlflow.note.content"]
    assert first.experiment_url.endswith(f"/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
    assert runs[first.version].info.run_name.startswith(f"{crm_folder.name} · opportunity 90d · ")
    assert {"model.roc_auc", "logistic_regression.roc_auc", "cv.lightgbm.mean_auc"} <= set(
        runs[first.version].data.metrics
    )
    version = client.get_model_version(settings.model_name, first.version)
    assert "Holdout ROC AUC" in version.description and "logistic_regression" in version.description
    assert version.tags["leadscore.target"] == "opportunity" and version.tags["leadscore.horizon_days"] == "90"
    assert float(version.tags["leadscore.holdout_auc"]) == pytest.approx(first.metrics["model"]["roc_auc"], abs=1e-4)
    promote(settings, version=first.version)
    promoted = client.get_model_version(settings.model_name, first.version)
    assert "Gates (passed" in promoted.description and "pass servable" in promoted.description
    assert promoted.tags["leadscore.gates"] == "passed" and promoted.tags["leadscore.gate.servable"] == "pass"
