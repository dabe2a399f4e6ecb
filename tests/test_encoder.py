"""The one feature pipeline: estimator contract, and the batch and request paths giving the same matrix."""

from __future__ import annotations

import math
import pickle
from contextlib import nullcontext
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from leadscore.features.columns import ROW_BY_ROW
from leadscore.features.encoder import OTHER, FeatureEncoder, readable_label

FRAME = pd.DataFrame(
    {
        "source": ["inbound", "inbound", "outbound", "Select", None, "inbound", "outbound", "referral"],
        "employees": [10, 200.0, None, 5000, 12, "37", 80, 1],
        "is_mql": [True, False, "yes", "No", None, 1, 0, "maybe"],
    }
)


def make(**kw: object) -> FeatureEncoder:
    return FeatureEncoder(
        categorical=["source"],
        numeric=["employees"],
        boolean=["is_mql"],
        missing_values=("Select", ""),
        min_frequency=2,
        **kw,
    )


def test_init_only_stores_params_and_clone_round_trips() -> None:
    enc = make(labels={"employees": "Employees"})
    assert clone(enc).get_params() == enc.get_params()
    assert not [k for k in vars(enc) if k.endswith("_")]


def test_fit_returns_self_and_learns_state_with_trailing_underscore() -> None:
    enc = make()
    assert enc.fit(FRAME) is enc
    assert enc.categories_ == {"source": ("inbound", "outbound")}  # 'referral' seen once: pooled
    assert list(enc.get_feature_names_out()) == ["source", "employees", "is_mql"]


def test_transform_before_fit_raises() -> None:
    with pytest.raises(NotFittedError):
        make().transform(FRAME)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("inbound", 0.0),
        ("outbound", 1.0),
        (" inbound ", 0.0),
        ("referral", 2.0),
        ("never-seen", 2.0),
        ("Select", math.nan),
        (None, math.nan),
    ],
    ids=["known", "known-2", "stripped", "rare-is-other", "unseen-is-other", "missing-token", "none"],
)
def test_category_codes(value: object, expected: float) -> None:
    enc = make().fit(FRAME)
    got = enc.transform_records([{"source": value}])[0, 0]
    assert (math.isnan(got) and math.isnan(expected)) or got == expected
    assert enc.codes_["source"][OTHER] == 2


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, 1.0), ("yes", 1.0), ("No", 0.0), (0, 0.0), ("maybe", math.nan), (None, math.nan)],
    ids=["bool", "yes", "No", "zero", "unparseable", "none"],
)
def test_boolean_values(value: object, expected: float) -> None:
    got = make().fit(FRAME).transform_records([{"is_mql": value}])[0, 2]
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_numeric_column_with_text_is_refused_at_fit_naming_column_and_value() -> None:
    bad = FRAME.assign(employees=["10", "lots", 3, 4, 5, 6, 7, 8])
    with pytest.raises(ValueError, match=r"'employees'.*'lots'"):
        make().fit(bad)


def test_missing_column_is_refused_at_fit() -> None:
    with pytest.raises(ValueError, match="not found"):
        make().fit(FRAME.drop(columns=["is_mql"]))


def test_absent_keys_at_scoring_are_missing_not_errors() -> None:
    row = make().fit(FRAME).transform_records([{}])[0]
    assert np.isnan(row).all()


def test_readable_labels() -> None:
    assert readable_label("pricing_page_view_7d") == "Pricing page view (last 7 days)"
    assert make(labels={"employees": "Company size"}).fit(FRAME).feature_labels()["employees"] == "Company size"


values = st.one_of(
    st.none(),
    st.sampled_from(["inbound", "outbound", "Select", "x", " inbound"]),
    st.integers(-3, 3),
    st.floats(allow_nan=True, allow_infinity=False),
    st.booleans(),
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    st.lists(
        st.fixed_dictionaries({"source": values, "employees": values, "is_mql": values}),
        min_size=1,
        max_size=2 * ROW_BY_ROW,
    )
)
def test_request_path_equals_batch_path(records: list[dict[str, object]]) -> None:
    """Train/serve skew is impossible: a list of dicts and a DataFrame of the same rows encode identically,
    one record at a time or together (micro-batches one by one, larger lists by column)."""
    enc = make().fit(FRAME)
    batch = enc.transform(pd.DataFrame(records, dtype=object))
    single = np.vstack([enc.transform_records([r]) for r in records])
    np.testing.assert_array_equal(batch, single)
    np.testing.assert_array_equal(batch, enc.transform_records(records))
    np.testing.assert_array_equal(
        batch, enc.transform_records(records * (ROW_BY_ROW // len(records) + 1))[: len(records)]
    )


def test_fitted_codes_pickle_without_their_cached_lookups() -> None:
    """A scorer saved after serving holds only the fitted tables; loaded, it encodes the same."""
    codes = make().fit(FRAME).columns_
    records = [{"source": "inbound", "employees": 3, "is_mql": "yes"}, {"source": "nope"}]
    before = codes.transform_records(records)  # builds the cached per-column lookups
    loaded = pickle.loads(pickle.dumps(codes))
    assert "_category_tables" not in vars(loaded)
    assert loaded == codes
    np.testing.assert_array_equal(loaded.transform_records(records), before)


many = st.one_of(
    values,
    st.sampled_from([True, False, 1.0, 0.0, -0.0, "yes", "No", " outbound ", "1", "true", math.nan, pd.NA, pd.NaT]),
)


def test_numpy_integers_past_float_precision_keep_their_own_code_beside_floats() -> None:
    """``np.int64(2**60 + 64)`` equals ``float(2**60)`` for numpy (as float64) but not as text: encoded by
    column, each keeps the code it has alone."""
    from leadscore.features.columns import _category_code, encode_categorical

    codes = {"1152921504606846976": 0, "1152921504606847040": 1, OTHER: 2}
    values = np.asarray([float(2**60), np.int64(2**60 + 64), float(2**60)], dtype=object)
    per_value = [_category_code(v, codes, 2.0, frozenset()) for v in values]
    assert per_value == [0.0, 1.0, 0.0]
    np.testing.assert_array_equal(encode_categorical(values, codes, frozenset()), per_value)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(st.lists(many, min_size=2, max_size=60))
def test_once_per_distinct_value_equals_once_per_value(column: list[object]) -> None:
    """The encoders normalise each distinct value once; that is exactly the per-value result, whatever the mix of
    types, with pandas' factorize and with the dict's (:func:`features.columns.factorize`, used where pandas was
    never loaded: there, no pandas missing value can exist)."""
    from leadscore.features import columns
    from leadscore.features.columns import _category_code, _to_bool, encode_boolean, encode_categorical

    enc = make().fit(FRAME)
    codes, missing = enc.codes_["source"], frozenset(enc.missing_values)
    other = float(codes[OTHER])
    without_pandas = [v for v in column if v is not pd.NA and v is not pd.NaT]
    for hidden, items in ((False, column), (True, without_pandas)):
        with patch.object(columns, "_pandas", lambda: None) if hidden else nullcontext():
            for values in (items, np.asarray([*items, None], dtype=object)[:-1]):
                per_value = np.array([_category_code(v, codes, other, missing) for v in values])
                np.testing.assert_array_equal(encode_categorical(values, codes, missing), per_value)
                bools = np.array([_to_bool(v, missing) for v in values])
                np.testing.assert_array_equal(encode_boolean(values, missing), bools)
