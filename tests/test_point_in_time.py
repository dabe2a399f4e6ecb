"""Point-in-time training frame: nothing after the scoring moment reaches the features; censored leads are left out."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from leadscore.features.build import LABEL, CrmTables, build_crm_frame
from leadscore.features.engagement import aggregate_engagement, engagement_feature_names, type_codes
from leadscore.features.mapping import DataError, default_crm_mapping
from leadscore.features.schema import ACTIVITY_TYPES

MAPPING = default_crm_mapping()
T0 = pd.Timestamp("2025-01-01")


def tables(leads: list[dict], activities: list[dict], outcomes: list[dict]) -> CrmTables:
    base = {
        "source": "inbound",
        "campaign": "c",
        "country": "US",
        "region": "NA",
        "industry": "saas",
        "title": "CTO",
        "seniority": "c_level",
        "department": "it",
        "employees": 50.0,
        "annual_revenue": 1e6,
        "is_mql": True,
        "manual_score": 50,
        "bant_budget": True,
        "bant_authority": True,
        "bant_need": False,
        "bant_timing": False,
        "email": "a@example.com",
        "name": "A",
    }
    lead_frame = pd.DataFrame([{**base, **lead} for lead in leads])
    act = pd.DataFrame(activities, columns=["lead_id", "occurred_at", "type"])
    act["occurred_at"] = pd.to_datetime(act["occurred_at"])
    out = pd.DataFrame(outcomes, columns=["lead_id", "opportunity_created_at", "closed_at", "stage", "amount"])
    for c in ("opportunity_created_at", "closed_at"):
        out[c] = pd.to_datetime(out[c])
    return CrmTables(lead_frame, act, out)


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def frame(t: CrmTables, **kw: object) -> pd.DataFrame:
    return build_crm_frame(
        t, MAPPING, **{"horizon_days": 90, "observation_days": 7, "as_of": day(400), **kw}
    ).frame.set_index("lead_id")


def test_engagement_counts_only_up_to_the_scoring_moment() -> None:
    t = tables(
        [{"lead_id": "a", "created_at": T0}],
        [
            {"lead_id": "a", "occurred_at": day(-2), "type": "web_visit"},
            {"lead_id": "a", "occurred_at": day(1), "type": "pricing_page_view"},
            {"lead_id": "a", "occurred_at": day(6.9), "type": "pricing_page_view"},
            {"lead_id": "a", "occurred_at": day(7.1), "type": "demo_request"},
        ],
        [],
    )
    row = frame(t).loc["a"]
    assert row["pricing_page_view_total"] == 2 and row["pricing_page_view_7d"] == 2
    assert row["web_visit_total"] == 1 and row["web_visit_7d"] == 0  # 9 days before the scoring moment
    assert row["demo_request_total"] == 0  # after the scoring moment
    assert row["days_since_last_activity"] == pytest.approx(0.1)
    assert row["distinct_activity_types"] == 2


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    later=st.lists(st.tuples(st.floats(7.001, 500), st.sampled_from(ACTIVITY_TYPES)), min_size=1, max_size=15),
    earlier=st.lists(st.tuples(st.floats(-30, 7), st.sampled_from(ACTIVITY_TYPES)), max_size=10),
)
def test_an_activity_after_the_scoring_moment_never_changes_features(later: list, earlier: list) -> None:
    lead = [{"lead_id": "a", "created_at": T0}, {"lead_id": "b", "created_at": day(3)}]
    before = [{"lead_id": "a", "occurred_at": day(d), "type": k} for d, k in earlier]
    after = [{"lead_id": "a", "occurred_at": day(d), "type": k} for d, k in later]
    base = frame(tables(lead, before, []))
    more = frame(tables(lead, before + after, []))
    pd.testing.assert_frame_equal(base, more)


def test_censored_leads_are_left_out_not_counted_negative() -> None:
    t = tables([{"lead_id": "old", "created_at": T0}, {"lead_id": "young", "created_at": day(350)}], [], [])
    built = build_crm_frame(t, MAPPING, horizon_days=90, observation_days=7, as_of=day(400))
    assert list(built.frame["lead_id"]) == ["old"]
    assert built.excluded["horizon_not_elapsed"] == 1


def test_label_is_the_target_within_the_horizon_and_visible_at_as_of() -> None:
    leads = [{"lead_id": x, "created_at": T0} for x in ("in", "late", "won", "unseen")]
    outcomes = [
        {
            "lead_id": "in",
            "opportunity_created_at": day(30),
            "closed_at": day(100),
            "stage": "closed_lost",
            "amount": 1.0,
        },
        {"lead_id": "late", "opportunity_created_at": day(95), "closed_at": pd.NaT, "stage": "open", "amount": 1.0},
        {
            "lead_id": "won",
            "opportunity_created_at": day(20),
            "closed_at": day(80),
            "stage": "closed_won",
            "amount": 1.0,
        },
        {"lead_id": "unseen", "opportunity_created_at": day(60), "closed_at": pd.NaT, "stage": "open", "amount": 1.0},
    ]
    t = tables(leads, [], outcomes)
    opp = frame(t, as_of=day(95))[LABEL].to_dict()
    assert opp == {"in": 1, "late": 0, "won": 1, "unseen": 1}
    won = frame(t, target="closed_won", as_of=day(95))[LABEL].to_dict()
    assert won == {"in": 0, "late": 0, "won": 1, "unseen": 0}
    hidden = frame(t, as_of=day(90))[LABEL].to_dict()  # the 'unseen' opportunity is visible at day 90
    assert hidden["unseen"] == 1


def test_leads_already_converted_at_the_scoring_moment_are_left_out() -> None:
    t = tables(
        [{"lead_id": "fast", "created_at": T0}, {"lead_id": "slow", "created_at": T0}],
        [],
        [{"lead_id": "fast", "opportunity_created_at": day(3), "closed_at": pd.NaT, "stage": "open", "amount": 1.0}],
    )
    built = build_crm_frame(t, MAPPING, as_of=day(400))
    assert list(built.frame["lead_id"]) == ["slow"]
    assert built.excluded["converted_before_scoring"] == 1


def test_observation_must_end_before_the_horizon() -> None:
    t = tables([{"lead_id": "a", "created_at": T0}], [], [])
    with pytest.raises(DataError, match="observation_days"):
        build_crm_frame(t, MAPPING, horizon_days=7, observation_days=7)


def test_aggregation_of_one_request_equals_the_training_aggregation(crm_tables: CrmTables) -> None:
    """The single-lead path (serving) and the table path (training) are the same function."""
    built = build_crm_frame(crm_tables, MAPPING)
    row = built.frame.iloc[5]
    acts = crm_tables.activities[crm_tables.activities["lead_id"] == row["lead_id"]]
    single = aggregate_engagement(
        np.zeros(len(acts), dtype=np.int64),
        type_codes(acts["type"].to_numpy()),
        acts["occurred_at"].to_numpy("datetime64[ns]"),
        np.array([row["scoring_at"]], dtype="datetime64[ns]"),
    )
    for name in engagement_feature_names():
        assert single[name][0] == pytest.approx(row[name], nan_ok=True), name


@pytest.mark.parametrize(
    ("values", "keys", "expected"),
    [
        (["b", "x", None, "a"], ["a", "b"], [1, -1, -1, 0]),
        (pd.Series(["L2", "L1", "L9"], dtype="string"), pd.Series(["L1", "L2"]), [1, 0, -1]),
        (np.array([3, 1, 7]), [1, 3], [1, 0, -1]),
        ([], ["a"], []),
        (["1", "x"], [1.0, 2.0], [0, -1]),
    ],
    ids=["text-with-missing", "pandas-strings", "integer-ids", "empty", "text-against-number-keys"],
)
def test_positions_match_exactly_and_mark_absent(values: object, keys: object, expected: list[int]) -> None:
    from leadscore.features.engagement import positions

    assert positions(values, list(keys)).tolist() == expected
    assert positions(values, pd.Series(list(keys), dtype=object)).tolist() == expected  # a column of keys, as built


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.none(), st.sampled_from([*ACTIVITY_TYPES, "Web_Visit", " web_visit", ""]), st.text(max_size=4)),
        max_size=70,
    ),
    keys=st.lists(st.sampled_from([*ACTIVITY_TYPES, ""]), min_size=1, max_size=12),
)
def test_a_requests_few_strings_find_the_positions_arrow_finds(values: list[str | None], keys: list[str]) -> None:
    """The dict lookup used for a request's handful of activities and Arrow's lookup for columns agree."""
    from leadscore.features.engagement import _arrow_positions, positions

    assert positions(values, keys).tolist() == _arrow_positions(values, keys).tolist()


@settings(max_examples=200, deadline=None)
@given(
    moment=st.datetimes(
        min_value=pd.Timestamp("1900-01-02").to_pydatetime(),
        max_value=pd.Timestamp("2199-12-30").to_pydatetime(),
        timezones=st.one_of(st.none(), st.timezones()),
    )
)
def test_a_requests_times_become_the_datetime64_training_uses(moment) -> None:
    """Request activity times (aware or naive = UTC) land on the same nanosecond as a pandas UTC column's."""
    from leadscore.features.online import _ns

    expected = (
        pd.Timestamp(moment).tz_localize("UTC") if moment.tzinfo is None else pd.Timestamp(moment).tz_convert("UTC")
    )
    assert _ns(moment) == expected.value


def _engagement_kernel_built() -> bool:
    from leadscore.features.engagement import _kernel

    return _kernel() is not None


KERNEL_BUILT = pytest.mark.skipif(
    not _engagement_kernel_built(), reason="the C kernel (features/_engagement.c) was not built by the install"
)
INT64 = st.one_of(st.just(-(2**63)), st.integers(-(2**63) + 1, 2**63 - 1))  # -2**63 is NaT


@KERNEL_BUILT
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-1, 4), st.integers(-1, len(ACTIVITY_TYPES) - 1), INT64), max_size=40),
    st.lists(INT64, min_size=1, max_size=5),
)
def test_engagement_kernel_equals_the_reference(activities: list[tuple[int, int, int]], moments: list[int]) -> None:
    """Counts, windows, distinct types and recency: the C pass and the plain Python reference give the same floats,
    over the whole int64 range of times (NaT included)."""
    from leadscore.features.engagement import engagement_matrix, reference_engagement

    n, k = len(moments), len(ACTIVITY_TYPES)
    lead = [min(a[0], n - 1) for a in activities]
    kind = [a[1] for a in activities]
    occurred = [a[2] for a in activities]
    native = engagement_matrix(
        np.array(lead, dtype=np.int64),
        np.array(kind, dtype=np.int64),
        np.array(occurred, dtype=np.int64).view("datetime64[ns]"),
        np.array(moments, dtype=np.int64).view("datetime64[ns]"),
    )
    np.testing.assert_array_equal(native, np.array(reference_engagement(lead, kind, occurred, moments, k)))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([*ACTIVITY_TYPES, "unknown_type"]), st.integers(-(2**62), 2**62)), max_size=40),
    st.integers(-(2**62), 2**62),
    st.booleans(),
)
def test_one_leads_engagement_equals_the_matrix_row(
    activities: list[tuple[str, int]], moment: int, native: bool
) -> None:
    """The API's one-lead path (the kernel on array buffers, or the reference without it) gives the matrix's row."""
    from leadscore.features import engagement

    kinds, occurred = [a[0] for a in activities], [a[1] for a in activities]
    expected = engagement.reference_engagement(
        [0] * len(activities), engagement.type_codes(kinds).tolist(), occurred, [moment], len(ACTIVITY_TYPES)
    )[0]
    assume(not native or _engagement_kernel_built())
    with patch.object(engagement, "_kernel", engagement._kernel if native else lambda: None):
        got = engagement.lead_engagement(kinds, occurred, moment)
        row = engagement.engagement_matrix(
            np.zeros(len(activities), dtype=np.int64),
            engagement.type_codes(kinds),
            np.array(occurred, dtype=np.int64).view("datetime64[ns]"),
            np.array([moment], dtype=np.int64).view("datetime64[ns]"),
        )[0]
    np.testing.assert_array_equal(np.array(got), np.array(expected))
    np.testing.assert_array_equal(row, np.array(expected))


@pytest.fixture(params=[pytest.param(True, marks=KERNEL_BUILT), False], ids=["C", "reference"])
def engagement_matrix(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """``engagement_matrix`` through the C kernel, or through the reference as where no kernel was built."""
    from leadscore.features import engagement

    if not request.param:
        monkeypatch.setattr(engagement, "_kernel", lambda: None)
    return engagement.engagement_matrix


def test_engagement_refuses_an_out_of_range_lead_or_type(engagement_matrix) -> None:
    when = np.array([0], dtype=np.int64).view("datetime64[ns]")
    with pytest.raises(ValueError, match="out of range"):
        engagement_matrix(np.array([3]), np.array([0]), when, when)
    with pytest.raises(ValueError, match="out of range"):
        engagement_matrix(np.array([0]), np.array([len(ACTIVITY_TYPES)]), when, when)


def test_engagement_without_leads_or_with_unknown_moments(engagement_matrix) -> None:
    """No lead: an empty matrix. A missing (NaT) activity time or scoring moment counts nothing."""
    k = len(ACTIVITY_TYPES)
    when = np.array(["2025-01-02", "NaT"], dtype="datetime64[ns]")
    assert engagement_matrix(np.array([0]), np.array([0]), when[:1], when[:0]).shape == (0, 2 * k + 4)
    rows = engagement_matrix(np.array([0, 0, 1]), np.array([0, 1, 0]), when[[1, 0, 0]], when)
    timed_only = np.zeros(2 * k)
    timed_only[[1, k + 1]] = 1  # only the timed activity counts: type 1, in the window and in all
    assert rows[0, : 2 * k].tolist() == timed_only.tolist()
    assert rows[1, 2 * k + 1] == 0 and np.isnan(rows[1, 2 * k + 3])  # a lead without a moment: nothing counted


def test_engagement_window_and_moment_boundaries(engagement_matrix) -> None:
    """At the scoring moment counts; 1 ns after does not; exactly 7 days before is outside the 7-day window."""
    from leadscore.features.engagement import WINDOW_DAYS

    day, k = 86_400 * 10**9, len(ACTIVITY_TYPES)
    scoring = np.array([100 * day], dtype=np.int64)
    ages = np.array([0, -1, WINDOW_DAYS * day - 1, WINDOW_DAYS * day, 30 * day], dtype=np.int64)
    occurred = (scoring[0] - ages).view("datetime64[ns]")
    row = engagement_matrix(
        np.zeros(5, dtype=np.int64), np.array([0, 0, 1, 2, 2]), occurred, scoring.view("datetime64[ns]")
    )[0]
    assert row[:3].tolist() == [1, 1, 0] and row[k : k + 3].tolist() == [1, 1, 2]  # window counts, all-time counts
    assert row[2 * k :].tolist() == [2, 4, 3, 0.0]  # in the window, in all, distinct types, days since the last
    alone = engagement_matrix(np.zeros(1, dtype=np.int64), np.array([3]), occurred[4:], scoring.view("datetime64[ns]"))[
        0
    ]
    assert alone[2 * k + 3] == 30.0


def test_ages_beyond_the_int64_range_are_exact(engagement_matrix) -> None:
    """An activity more than 2**63 ns (292 years) before its lead's moment counts, with its true age: the
    difference of two int64 times is not wrapped around."""
    k = len(ACTIVITY_TYPES)
    occurred = np.array([-(2**63) + 1, 2**63 - 1], dtype=np.int64).view("datetime64[ns]")
    scoring = np.array([2**63 - 1, -(2**63) + 1], dtype=np.int64).view("datetime64[ns]")
    rows = engagement_matrix(np.array([0, 1]), np.array([0, 0]), occurred, scoring)
    assert rows[0, [0, k, 2 * k + 1]].tolist() == [0, 1, 1]  # not in the window; in all time
    assert rows[0, 2 * k + 3] == float(2**64 - 2) / float(86_400 * 10**9)
    assert rows[1, 2 * k + 1] == 0 and np.isnan(rows[1, 2 * k + 3])  # 2**64 - 2 ns after its moment: not counted


def test_days_since_the_last_activity_divide_the_float64_age(engagement_matrix) -> None:
    """Days: the age rounded to float64, then divided by a day's nanoseconds (the kernel's arithmetic), which for
    this age differs from the correctly rounded quotient of the two integers."""
    age, day = 5_652_604_951_135_202_956, 86_400 * 10**9
    assert age / day != float(age) / float(day)
    when = np.array([0, age], dtype=np.int64).view("datetime64[ns]")
    row = engagement_matrix(np.array([0]), np.array([0]), when[:1], when[1:])[0]
    assert row[-1] == float(age) / float(day)


@pytest.mark.parametrize("kind", ["text", "arrow text", "number"])
def test_creation_order_is_the_stable_sort_by_creation_time_then_id(kind: str) -> None:
    from leadscore.features.build import creation_order

    rng = np.random.default_rng(0)
    n = 4000
    hours = rng.integers(0, 300, n)  # many leads share a creation time
    ids = rng.permutation(n)
    column = {
        "text": pd.Series(ids.astype(str), dtype=object),
        "arrow text": pd.Series(ids.astype(str), dtype="string[pyarrow]"),
        "number": pd.Series(ids),
    }[kind]
    leads = pd.DataFrame({"created": pd.Timestamp("2025-01-01") + pd.to_timedelta(hours, unit="h"), "id": column})
    leads.index = rng.permutation(n) + 10_000  # positions, not labels
    expected = leads.reset_index(drop=True).sort_values(["created", "id"], kind="stable").index.to_numpy()
    np.testing.assert_array_equal(creation_order(leads, "created", "id"), expected)
    leads.iloc[::7, 0] = pd.NaT  # missing creation times sort last, as pandas places them
    expected = leads.reset_index(drop=True).sort_values(["created", "id"], kind="stable").index.to_numpy()
    np.testing.assert_array_equal(creation_order(leads, "created", "id"), expected)
