"""The serving file is arrays + JSON: it scores as the scorer it was written from, and loading it never unpickles."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest

from leadscore.models import serving_form
from leadscore.models.scorer import SCORER_FILE, SERVING_FILES, Scorer
from leadscore.models.serving_form import ServingFormError, load_scorer, save_scorer
from leadscore.training.train import FitResult


class _Exploit:
    """A pickle payload: unpickling it creates the file ``marker`` (code run by whoever loads it)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_the_api_downloads_and_loads_only_the_serving_file() -> None:
    assert SERVING_FILES == (SCORER_FILE,) and SCORER_FILE.endswith(".npz")


def test_the_serving_file_scores_exactly_as_the_scorer(fitted: FitResult, scorer: Scorer, tmp_path: Path) -> None:
    loaded = Scorer.load(scorer.save(tmp_path / SCORER_FILE))
    records = fitted.holdout.head(200).to_dict("records")
    assert loaded.score_records(records) == scorer.score_records(records)
    mine, theirs = loaded.score_table(fitted.holdout), scorer.score_table(fitted.holdout)
    np.testing.assert_array_equal(mine["probability"], theirs["probability"])
    assert loaded.metadata == scorer.metadata and loaded.labels == scorer.labels
    assert loaded.routing == scorer.routing and loaded.calibration == scorer.calibration
    assert loaded.columns == scorer.columns and loaded.input_columns == scorer.input_columns
    assert not list(tmp_path.glob(".*.tmp"))
    with zipfile.ZipFile(tmp_path / SCORER_FILE) as z:  # plain .npy entries, none of them an object array
        for name in z.namelist():
            with z.open(name) as entry:
                assert np.lib.format.read_array(entry, allow_pickle=False).dtype != object


def test_loading_the_serving_file_never_unpickles(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = scorer.save(tmp_path / SCORER_FILE)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the serving file was unpickled")

    for module, name in ((pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"), (joblib, "load")):
        monkeypatch.setattr(module, name, refuse)
    assert Scorer.load(path).score_records([{"source": "web"}])[0]["probability"] > 0


@pytest.mark.parametrize("form", ["joblib", "pickle", "npz with an object array"])
def test_a_pickle_in_place_of_the_serving_file_is_refused_without_running_it(
    scorer: Scorer, tmp_path: Path, form: str
) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / SCORER_FILE
    if form == "joblib":
        joblib.dump(_Exploit(marker), path)
    elif form == "pickle":
        path.write_bytes(pickle.dumps(_Exploit(marker)))
    else:
        arrays = serving_form.scorer_arrays(scorer)
        arrays["score_reference"] = np.array([_Exploit(marker)], dtype=object)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        path.write_bytes(buffer.getvalue())
    with pytest.raises(ServingFormError, match=SCORER_FILE):
        load_scorer(path)
    assert not marker.exists()


def test_a_truncated_or_foreign_serving_file_is_refused_naming_it(scorer: Scorer, tmp_path: Path) -> None:
    path = scorer.save(tmp_path / SCORER_FILE)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ServingFormError, match=f"{SCORER_FILE}: not a readable"):
        load_scorer(path)
    arrays = serving_form.scorer_arrays(scorer)
    arrays["header"] = np.frombuffer(b'{"format": "someone-else/9"}', dtype=np.uint8)
    np.savez(tmp_path / "other.npz", **arrays)
    with pytest.raises(ServingFormError, match="someone-else/9"):
        load_scorer(tmp_path / "other.npz")
    del arrays["trees.credit"]
    arrays["header"] = serving_form.scorer_arrays(scorer)["header"]
    np.savez(tmp_path / "partial.npz", **arrays)
    with pytest.raises(ServingFormError, match="incomplete"):
        load_scorer(tmp_path / "partial.npz")


def test_a_header_value_json_cannot_hold_is_refused_at_save(scorer: Scorer, tmp_path: Path) -> None:
    odd = Scorer(**{**scorer.__getstate__(), "metadata": {"when": object()}})
    with pytest.raises(TypeError, match="cannot hold a object"):
        save_scorer(odd, tmp_path / SCORER_FILE)
    assert not (tmp_path / SCORER_FILE).exists()
