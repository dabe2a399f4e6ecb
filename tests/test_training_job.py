"""The training job's use of the machine: its process settings, and the work it runs beside the model's
(the baselines, the findings read from the data) gives what the same work gives in order."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from threadpoolctl import threadpool_info

from leadscore.training import honesty
from leadscore.training.resources import _set_huge_pages, training_resources
from leadscore.training.train import fit_baselines, make_encoder
from tests.factories import fit_crm, make_crm


def _blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


def test_training_resources_run_blas_on_one_thread_without_huge_pages_then_restore_all() -> None:
    blas_before, huge_before = _blas_threads(), _set_huge_pages(True)
    _set_huge_pages(huge_before)
    pool_before = pa.default_memory_pool().backend_name
    assert blas_before, "numpy's BLAS is loaded"
    with training_resources():
        assert set(_blas_threads()) == {1}
        assert _set_huge_pages(False) is False  # numpy asks for no huge pages inside the block
        assert pa.default_memory_pool().backend_name == "system"
        assert pa.table({"x": [1, 2]}).column("x").to_pylist() == [1, 2]
    assert _blas_threads() == blas_before
    assert _set_huge_pages(huge_before) is huge_before
    assert pa.default_memory_pool().backend_name == pool_before


def test_work_beside_the_model_gives_what_it_gives_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The findings read from the data (every feature listed here, with its adversarial AUC) are the ones
    found after the fit from the model's unfitted encoder, and the baselines' probabilities those of fitting
    them in order."""
    monkeypatch.setattr(honesty, "DRIFT_AUC", 0.0)
    result = fit_crm(make_crm(3000, seed=3), select=False)
    drift, _ = result.frame_findings
    assert len(drift) == len(result.artifact.model.encoder_.columns_.names)
    assert result.frame_findings == honesty.frame_findings(result.frame, result.split, result.artifact.model.encoder)
    assert result.artifact.metadata["findings"] == honesty.run_findings(result)

    tf, split = result.frame, result.split
    train, holdout = tf.frame.iloc[split.train], tf.frame.iloc[split.holdout]
    in_order, _ = fit_baselines(tf, make_encoder(tf), train, train["label"].to_numpy(), holdout)
    assert list(result.holdout_probability) == ["model", *in_order]
    for name, probability in in_order.items():
        np.testing.assert_array_equal(result.holdout_probability[name], probability)
