"""Synthetic B2B CRM data (leads, activities, outcomes) driven by a hidden propensity.

Fully vectorised and deterministic for a seed. Each lead gets a log-odds of becoming an opportunity
from firmographic odds factors plus a latent intent; the intent also drives engagement, so a model
fed with early activities and firmographics beats the (noisy, engagement-blind) manual MQL/BANT
process. Odds factors are tuned so the 90-day lead -> opportunity rates sit inside the public
benchmark bands of ``architecture.md``. Source mix and the informativeness of webinars and email
opens drift from quarter to quarter. ``end`` is the extraction date: nothing after it is recorded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from leadscore.features.build import CrmTables
from leadscore.features.files import write_atomic
from leadscore.features.schema import (
    ACTIVITIES_COLUMNS,
    ACTIVITY_TYPES,
    DEPARTMENTS,
    FIRMOGRAPHIC_CATEGORICAL,
    INDUSTRIES,
    LEADS_COLUMNS,
    OUTCOMES_COLUMNS,
    REGIONS,
    SENIORITIES,
    SIZE_BAND_EDGES,
    SIZE_BANDS,
    SOURCES,
    STAGES,
)

__all__ = ["CrmTables", "generate_crm", "read_crm", "write_crm", "write_crm_parts"]

CHUNK_LEADS = 250_000  # leads per part file of a partitioned dataset (what one generation step holds in memory)
DAY = 86_400  # seconds
NS = 1_000_000_000

# --- Lead volume and firmographics -------------------------------------------------------------
VOLUME_GROWTH = 0.5  # lead volume at `end` is 1.5x the volume at `start` (linear growth)
SOURCE_MIX = {
    "inbound": 0.35,
    "outbound": 0.20,
    "referral": 0.07,
    "event": 0.08,
    "webinar": 0.10,
    "partner": 0.08,
    "paid": 0.12,
}  # shares around mid-period
# Change of log-share over the whole period (source-mix drift): outbound fades, paid/webinar grow.
SOURCE_MIX_TREND = {
    "inbound": 0.0,
    "outbound": -0.5,
    "referral": 0.0,
    "event": -0.2,
    "webinar": 0.3,
    "partner": 0.1,
    "paid": 0.4,
}
CAMPAIGNS = {
    "inbound": ("inbound-seo", "inbound-organic-social", "inbound-direct", "inbound-content-hub"),
    "outbound": ("outbound-sdr-email", "outbound-sdr-calls", "outbound-abm"),
    "referral": ("referral-customer", "referral-employee"),
    "event": ("event-saastr", "event-dreamforce", "event-roadshow"),
    "webinar": ("webinar-product-demo", "webinar-industry-trends", "webinar-customer-panel"),
    "partner": ("partner-reseller", "partner-technology", "partner-agency"),
    "paid": ("paid-google-search", "paid-linkedin", "paid-capterra", "paid-retargeting"),
}
DATED_CAMPAIGN_SOURCES = ("event", "webinar", "paid")  # these get a calendar-quarter suffix "-q3"
REGION_MIX = {"NA": 0.50, "EMEA": 0.28, "APAC": 0.14, "LATAM": 0.08}
COUNTRIES = {  # ISO 3166 alpha-2 codes and their share within the region
    "NA": {"US": 0.85, "CA": 0.15},
    "EMEA": {"GB": 0.30, "DE": 0.25, "FR": 0.15, "NL": 0.10, "ES": 0.08, "SE": 0.07, "IE": 0.05},
    "APAC": {"AU": 0.35, "IN": 0.25, "SG": 0.15, "JP": 0.15, "NZ": 0.10},
    "LATAM": {"BR": 0.50, "MX": 0.30, "AR": 0.10, "CL": 0.10},
}
INDUSTRY_MIX = {
    "saas": 0.22,
    "professional_services": 0.15,
    "manufacturing": 0.13,
    "financial_services": 0.12,
    "healthcare": 0.10,
    "retail": 0.10,
    "education": 0.08,
    "public_sector": 0.10,
}
SENIORITY_MIX = {"c_level": 0.07, "vp": 0.12, "director": 0.20, "manager": 0.28, "individual_contributor": 0.33}
DEPARTMENT_MIX = {
    "sales": 0.17,
    "marketing": 0.22,
    "it": 0.15,
    "finance": 0.08,
    "operations": 0.12,
    "hr": 0.06,
    "engineering": 0.14,
    "other": 0.06,
}
# Job titles by variant x seniority x department (order of SENIORITIES and DEPARTMENTS).
TITLES = (
    (
        (
            "Chief Revenue Officer",
            "Chief Marketing Officer",
            "Chief Information Officer",
            "Chief Financial Officer",
            "Chief Operating Officer",
            "Chief People Officer",
            "Chief Technology Officer",
            "Chief Executive Officer",
        ),
        (
            "VP of Sales",
            "VP of Marketing",
            "VP of IT",
            "VP of Finance",
            "VP of Operations",
            "VP of People",
            "VP of Engineering",
            "VP of Strategy",
        ),
        (
            "Director of Sales",
            "Director of Marketing",
            "IT Director",
            "Finance Director",
            "Director of Operations",
            "HR Director",
            "Director of Engineering",
            "Director of Business Development",
        ),
        (
            "Sales Manager",
            "Marketing Manager",
            "IT Manager",
            "Finance Manager",
            "Operations Manager",
            "HR Manager",
            "Engineering Manager",
            "Project Manager",
        ),
        (
            "Account Executive",
            "Marketing Specialist",
            "Systems Administrator",
            "Financial Analyst",
            "Operations Analyst",
            "Recruiter",
            "Software Engineer",
            "Consultant",
        ),
    ),
    (
        ("CRO", "CMO", "CIO", "CFO", "COO", "CHRO", "CTO", "CEO"),
        (
            "SVP Sales",
            "SVP Marketing",
            "VP Technology",
            "VP Finance",
            "SVP Operations",
            "VP Human Resources",
            "SVP Engineering",
            "VP Business Development",
        ),
        (
            "Head of Sales",
            "Head of Marketing",
            "Head of IT",
            "Head of Finance",
            "Head of Operations",
            "Head of People",
            "Head of Engineering",
            "Head of Strategy",
        ),
        (
            "Regional Sales Manager",
            "Demand Generation Manager",
            "IT Operations Manager",
            "Controller",
            "Supply Chain Manager",
            "Talent Acquisition Manager",
            "Software Development Manager",
            "Office Manager",
        ),
        (
            "Sales Development Representative",
            "Content Marketer",
            "IT Specialist",
            "Accountant",
            "Operations Coordinator",
            "HR Generalist",
            "Data Engineer",
            "Business Analyst",
        ),
    ),
)
FIRST_NAMES = (
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jonas",
    "Kate",
    "Luis",
    "Maya",
    "Noah",
    "Olga",
    "Pablo",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
    "Umar",
    "Vera",
    "Wei",
    "Xenia",
    "Yusuf",
    "Zoe",
    "Amit",
    "Bea",
    "Chen",
    "Dana",
)
LAST_NAMES = (
    "Smith",
    "Mueller",
    "Garcia",
    "Rossi",
    "Tanaka",
    "Novak",
    "Silva",
    "Kim",
    "Dubois",
    "Jensen",
    "Khan",
    "Nguyen",
    "Brown",
    "Kowalski",
    "Lopez",
    "Sato",
    "Okafor",
    "Meyer",
    "Haddad",
    "Larsen",
    "Patel",
    "Cohen",
    "Ivanova",
    "Moreau",
    "Walsh",
    "Santos",
)
EMPLOYEES_MEDIAN, EMPLOYEES_SIGMA = 180.0, 1.8  # log-normal head count: ~37% SMB, ~17% enterprise
REVENUE_PER_EMPLOYEE_MEDIAN, REVENUE_PER_EMPLOYEE_SIGMA = 180_000.0, 0.5
MISSING_RATE = {"industry": 0.04, "title": 0.06, "employees": 0.05, "annual_revenue": 0.07, "country": 0.03}

# --- Hidden propensity: log-odds of lead -> opportunity -----------------------------------------
# Tuned offline (iterative raking of expected rates on 1M leads, given INTENT_SD and the fixed
# effects below) so that the MARGINAL 90-day lead -> opportunity rates sit near the middle of the
# benchmark bands: source inbound 20%, outbound 6.5%, referral 32%, event 11.5%, webinar 13%,
# partner 20%, paid 9%; enterprise 27.5%, mid-market 15%, SMB 8.5%; saas 15%, professional
# services 25%, manufacturing 11.5%, financial services 20%, healthcare 14%, retail 11%,
# education 10%, public sector 10%. Retune them when changing any other propensity constant.
INTERCEPT = -1.87
SOURCE_LOGODDS = {
    "inbound": 0.0,
    "outbound": -1.70,
    "referral": 0.92,
    "event": -0.89,
    "webinar": -0.69,
    "partner": 0.0,
    "paid": -1.25,
}
SIZE_LOGODDS = {"smb": -0.86, "mid_market": 0.0, "enterprise": 1.09}
INDUSTRY_LOGODDS = {
    "saas": 0.0,
    "professional_services": 0.92,
    "manufacturing": -0.42,
    "financial_services": 0.50,
    "healthcare": -0.10,
    "retail": -0.48,
    "education": -0.61,
    "public_sector": -0.62,
}
# Fixed, untuned effects (their averages are absorbed by the tuned factors above).
SENIORITY_LOGODDS = {"c_level": 0.0, "vp": 0.2, "director": 0.25, "manager": 0.05, "individual_contributor": -0.3}
DEPARTMENT_LOGODDS = {
    "sales": 0.05,
    "marketing": 0.1,
    "it": 0.15,
    "finance": 0.0,
    "operations": 0.1,
    "hr": -0.2,
    "engineering": 0.0,
    "other": -0.3,
}
REGION_LOGODDS = {"NA": 0.1, "EMEA": 0.0, "APAC": -0.15, "LATAM": -0.2}
INTENT_SD = 1.4  # sd of the latent intent (log-odds); only engagement reveals it

# --- Outcomes -----------------------------------------------------------------------------------
EARLY_OPPORTUNITY_SHARE = 0.07  # opportunities 1-7 days after creation; others 8 + log-normal
OPPORTUNITY_DELAY_MEDIAN, OPPORTUNITY_DELAY_SIGMA = 22.0, 0.7  # days after the first week
WIN_INTERCEPT, WIN_INTENT = -2.0, 0.8  # closed_won ~29% of closed opportunities
AMOUNT_MEDIAN = {"smb": 9_000.0, "mid_market": 35_000.0, "enterprise": 140_000.0}
AMOUNT_SIGMA = 0.6

# --- Activities ---------------------------------------------------------------------------------
# type: (expected count over a lead's life at intent 0, log-rate loading on intent, timing profile)
ACTIVITY_RATES = {
    "email_open": (4.0, 0.4, "nurture"),
    "email_click": (1.0, 0.5, "nurture"),
    "web_visit": (3.0, 0.5, "nurture"),
    "pricing_page_view": (0.5, 1.0, "intent"),
    "content_download": (0.6, 0.4, "nurture"),
    "webinar_attended": (0.25, 0.45, "intent"),
    "event_attended": (0.1, 0.3, "intent"),
    "demo_request": (0.12, 1.1, "intent"),
    "form_submit": (0.35, 0.5, "intent"),
    "meeting_booked": (0.12, 1.1, "intent"),
}
# Loading drift per quarter since `start`: webinars grow more telling, email opens less so
# (privacy-protected opens inflate them).
QUARTERLY_LOADING_DRIFT = {"webinar_attended": 0.06, "email_open": -0.05}
SOURCE_ACTIVITY_MULTIPLIER = {
    ("outbound", "email_open"): 2.0,
    ("outbound", "email_click"): 1.5,
    ("referral", "email_open"): 0.5,
    ("referral", "web_visit"): 0.7,
}
# Timing profiles, in days relative to creation: share before creation (uniform over
# PRE_CREATION_DAYS), share in an exponential burst after creation (mean), rest uniform to 120 days.
TIMING_PROFILES = {"nurture": (0.08, 0.62, 7.0), "intent": (0.04, 0.76, 10.0)}
PRE_CREATION_DAYS, LATE_ACTIVITY_DAYS = 5.0, 120.0
ACTIVITY_LEVEL_SHAPE = 3.0  # gamma shape of a lead's overall activity level (mean 1): noise
DARK_LEAD_SHARE = 0.06  # leads never seen engaging
# The touch that created the lead: source -> (type, probability, max lag before creation in days)
CREATION_TOUCH = {
    "inbound": ("form_submit", 0.9, 0.05),
    "paid": ("form_submit", 0.8, 0.05),
    "partner": ("form_submit", 0.3, 0.05),
    "webinar": ("webinar_attended", 1.0, 0.1),
    "event": ("event_attended", 1.0, 3.0),
}
# Buying-signal burst in the days before an opportunity is created.
PRE_OPPORTUNITY_BURST_MEAN, PRE_OPPORTUNITY_BURST_DAYS = 2.5, 4.0
PRE_OPPORTUNITY_MIX = {
    "pricing_page_view": 0.35,
    "meeting_booked": 0.25,
    "demo_request": 0.2,
    "email_click": 0.1,
    "web_visit": 0.1,
}

# --- Manual qualification (a Marketo-style point rule: engagement- and industry-blind) ----------
MANUAL_POINTS_SENIORITY = {"c_level": 30, "vp": 25, "director": 20, "manager": 10, "individual_contributor": 0}
MANUAL_POINTS_DEPARTMENT = {
    "sales": 10,
    "marketing": 10,
    "it": 5,
    "finance": 5,
    "operations": 5,
    "hr": 0,
    "engineering": 0,
    "other": 0,
}
MANUAL_POINTS_SOURCE = {
    "inbound": 15,
    "outbound": 0,
    "referral": 20,
    "event": 15,
    "webinar": 15,
    "partner": 5,
    "paid": 10,
}
MANUAL_POINTS_SIZE = {"smb": 5, "mid_market": 15, "enterprise": 25}  # missing head count: 0
MANUAL_NOISE_SD = 6.0  # rep judgement, data-entry noise
MQL_THRESHOLD = 48  # ~34% of leads become MQLs
# BANT flag = (true log-odds + noise) > threshold: each a noisy proxy of the propensity.
BANT_RULES = {
    "bant_budget": (4.5, -2.2),
    "bant_authority": (5.0, -1.8),
    "bant_need": (4.0, -2.0),
    "bant_timing": (4.0, -1.0),
}  # (noise sd, threshold)


_STRING_COLUMNS = {"lead_id", *FIRMOGRAPHIC_CATEGORICAL, "email", "name", "type", "stage"}
_DTYPES = {
    "created_at": pa.timestamp("ns"),
    "occurred_at": pa.timestamp("ns"),
    "opportunity_created_at": pa.timestamp("ns"),
    "closed_at": pa.timestamp("ns"),
    "employees": pa.float64(),
    "annual_revenue": pa.float64(),
    "amount": pa.float64(),
    "manual_score": pa.int64(),
    **{c: pa.bool_() for c in ("is_mql", "bant_budget", "bant_authority", "bant_need", "bant_timing")},
    **{c: pa.large_string() for c in _STRING_COLUMNS},
}
_TABLE_COLUMNS = {"leads": LEADS_COLUMNS, "activities": ACTIVITIES_COLUMNS, "outcomes": OUTCOMES_COLUMNS}
_SCHEMAS = {name: pa.schema([(c, _DTYPES[c]) for c in cols]) for name, cols in _TABLE_COLUMNS.items()}
_COUNTRY_NAMES = tuple(c for r in REGIONS for c in COUNTRIES[r])
_TITLE_NAMES = tuple(t for variant in TITLES for row in variant for t in row)


def _campaign_lookup() -> tuple[list[str], np.ndarray]:
    """Campaign names and a (source, campaign pick, quarter of year) -> name code lookup."""
    names: list[str] = []
    lookup = np.zeros((len(SOURCES), max(map(len, CAMPAIGNS.values())), 4), dtype=np.int64)
    for s, source in enumerate(SOURCES):
        for c, campaign in enumerate(CAMPAIGNS[source]):
            for q in range(4):
                name = f"{campaign}-q{q + 1}" if source in DATED_CAMPAIGN_SOURCES else campaign
                if name not in names:
                    names.append(name)
                lookup[s, c, q] = names.index(name)
    return names, lookup


def _vec(values: dict, keys: tuple[str, ...]) -> np.ndarray:
    """Values of a mapping as an array in the order of ``keys``."""
    return np.array([values[k] for k in keys], dtype=float)


def _choice(rng: np.random.Generator, n: int, probs: np.ndarray) -> np.ndarray:
    """Draw ``n`` category codes from one probability vector."""
    return np.searchsorted(np.cumsum(probs / probs.sum()), rng.random(n), side="right").clip(0, len(probs) - 1)


def _choice_rows(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Draw one category code per row of a (n, k) probability matrix."""
    cdf = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    return (rng.random((len(probs), 1)) > cdf[:, :-1]).sum(axis=1)


def _strings(values: tuple[str, ...] | list[str], codes: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """Arrow string column from category codes (``missing`` marks nulls)."""
    return pa.array(values, pa.large_string()).take(pa.array(codes, mask=missing))


def _s(value: str) -> pa.Scalar:
    """Arrow large-string scalar (to join with large-string arrays)."""
    return pa.scalar(value, pa.large_string())


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function."""
    return 1.0 / (1.0 + np.exp(-x))


def _created_seconds(rng: np.random.Generator, n: int, span: int) -> np.ndarray:
    """Creation offsets in seconds over [0, span) with linearly growing volume, sorted."""
    g = VOLUME_GROWTH
    x = (np.sqrt(1.0 + 2.0 * g * (1.0 + g / 2.0) * rng.random(n)) - 1.0) / g
    return np.sort(np.minimum((x * span).astype(np.int64), span - 1))


def _firmographics(rng: np.random.Generator, frac: np.ndarray) -> dict[str, np.ndarray]:
    """True (hidden, complete) firmographic codes and numbers for leads at period fractions ``frac``."""
    n = len(frac)
    mix = _vec(SOURCE_MIX, SOURCES) * np.exp(np.outer(frac - 0.5, _vec(SOURCE_MIX_TREND, SOURCES)))
    source = _choice_rows(rng, mix)
    region = _choice(rng, n, _vec(REGION_MIX, REGIONS))
    country = np.empty(n, dtype=np.int64)
    offset = 0
    for r, name in enumerate(REGIONS):
        in_region = region == r
        country[in_region] = offset + _choice(rng, int(in_region.sum()), np.array(list(COUNTRIES[name].values())))
        offset += len(COUNTRIES[name])
    employees = np.clip(np.round(EMPLOYEES_MEDIAN * np.exp(EMPLOYEES_SIGMA * rng.standard_normal(n))), 1, 500_000)
    revenue = np.round(
        employees * REVENUE_PER_EMPLOYEE_MEDIAN * np.exp(REVENUE_PER_EMPLOYEE_SIGMA * rng.standard_normal(n)), -3
    )
    return {
        "source": source,
        "region": region,
        "country": country,
        "industry": _choice(rng, n, _vec(INDUSTRY_MIX, INDUSTRIES)),
        "seniority": _choice(rng, n, _vec(SENIORITY_MIX, SENIORITIES)),
        "department": _choice(rng, n, _vec(DEPARTMENT_MIX, DEPARTMENTS)),
        "employees": employees,
        "annual_revenue": revenue,
        "size": np.searchsorted(np.array(SIZE_BAND_EDGES), employees, side="right"),
    }


def _logit(rng: np.random.Generator, f: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Latent intent and the log-odds of lead -> opportunity."""
    intent = INTENT_SD * rng.standard_normal(len(f["source"]))
    logit = (
        INTERCEPT
        + _vec(SOURCE_LOGODDS, SOURCES)[f["source"]]
        + _vec(SIZE_LOGODDS, SIZE_BANDS)[f["size"]]
        + _vec(INDUSTRY_LOGODDS, INDUSTRIES)[f["industry"]]
        + _vec(SENIORITY_LOGODDS, SENIORITIES)[f["seniority"]]
        + _vec(DEPARTMENT_LOGODDS, DEPARTMENTS)[f["department"]]
        + _vec(REGION_LOGODDS, REGIONS)[f["region"]]
        + intent
    )
    return intent, logit


def _opportunity_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    """Days from creation to opportunity: a few within the first week, most 8-80 days."""
    late = 8.0 + OPPORTUNITY_DELAY_MEDIAN * np.exp(OPPORTUNITY_DELAY_SIGMA * rng.standard_normal(n))
    early = 1.0 + 7.0 * rng.random(n)
    return np.where(rng.random(n) < EARLY_OPPORTUNITY_SHARE, early, late)


def _offsets(rng: np.random.Generator, n: int, profile: str) -> np.ndarray:
    """Activity offsets in days relative to creation for one timing profile."""
    pre_share, burst_share, burst_mean = TIMING_PROFILES[profile]
    u = rng.random(n)
    return np.where(
        u < pre_share,
        -PRE_CREATION_DAYS * rng.random(n),
        np.where(u < pre_share + burst_share, rng.exponential(burst_mean, n), LATE_ACTIVITY_DAYS * rng.random(n)),
    )


def _activities(
    rng: np.random.Generator,
    f: dict[str, np.ndarray],
    intent: np.ndarray,
    quarter: np.ndarray,
    created: np.ndarray,
    opp_at: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Activity (lead index, time in seconds, type code) triples, unsorted."""
    n = len(intent)
    level = rng.gamma(ACTIVITY_LEVEL_SHAPE, 1.0 / ACTIVITY_LEVEL_SHAPE, n) * (rng.random(n) >= DARK_LEAD_SHARE)
    leads, times, types = [], [], []

    def add(idx: np.ndarray, seconds: np.ndarray, code: int | np.ndarray) -> None:
        leads.append(idx)
        times.append(seconds)
        types.append(np.broadcast_to(np.asarray(code, dtype=np.int8), idx.shape))

    for code, name in enumerate(ACTIVITY_TYPES):
        mean, loading, profile = ACTIVITY_RATES[name]
        rate = mean * level * np.exp((loading + QUARTERLY_LOADING_DRIFT.get(name, 0.0) * quarter) * intent)
        for (src, act), mult in SOURCE_ACTIVITY_MULTIPLIER.items():
            if act == name:
                rate = np.where(f["source"] == SOURCES.index(src), rate * mult, rate)
        idx = np.repeat(np.arange(n), rng.poisson(rate))
        add(idx, created[idx] + (_offsets(rng, len(idx), profile) * DAY).astype(np.int64), code)

    for src, (name, prob, lag_days) in CREATION_TOUCH.items():
        idx = np.flatnonzero((f["source"] == SOURCES.index(src)) & (rng.random(n) < prob))
        add(idx, created[idx] - (rng.random(len(idx)) * lag_days * DAY).astype(np.int64), ACTIVITY_TYPES.index(name))

    converting = np.flatnonzero(opp_at >= 0)
    idx = np.repeat(converting, rng.poisson(PRE_OPPORTUNITY_BURST_MEAN, len(converting)))
    before = (rng.exponential(PRE_OPPORTUNITY_BURST_DAYS, len(idx)) * DAY).astype(np.int64)
    burst_types = np.array([ACTIVITY_TYPES.index(t) for t in PRE_OPPORTUNITY_MIX])
    code = burst_types[_choice(rng, len(idx), np.array(list(PRE_OPPORTUNITY_MIX.values())))]
    add(idx, np.maximum(opp_at[idx] - before, created[idx]), code)
    return np.concatenate(leads), np.concatenate(times), np.concatenate(types)


def _manual(
    rng: np.random.Generator, f: dict[str, np.ndarray], observed_size: np.ndarray, logit: np.ndarray
) -> dict[str, np.ndarray]:
    """Manual qualification: a point score (MQL) and BANT flags."""
    n = len(logit)
    size_points = np.append(_vec(MANUAL_POINTS_SIZE, SIZE_BANDS), 0.0)[observed_size]
    points = (
        _vec(MANUAL_POINTS_SENIORITY, SENIORITIES)[f["seniority"]]
        + _vec(MANUAL_POINTS_DEPARTMENT, DEPARTMENTS)[f["department"]]
        + _vec(MANUAL_POINTS_SOURCE, SOURCES)[f["source"]]
        + size_points
        + MANUAL_NOISE_SD * rng.standard_normal(n)
    )
    score = np.clip(np.round(points), 0, 100).astype(np.int64)
    out = {"is_mql": score >= MQL_THRESHOLD, "manual_score": score}
    for col, (noise_sd, threshold) in BANT_RULES.items():
        out[col] = logit + noise_sd * rng.standard_normal(n) > threshold
    return out


def _lead_columns(
    rng: np.random.Generator,
    f: dict[str, np.ndarray],
    created: np.ndarray,
    months: np.ndarray,
    logit: np.ndarray,
    first_number: int = 1,
    id_digits: int | None = None,
) -> dict[str, pa.Array | np.ndarray]:
    """Observed ``leads`` columns: firmographics with missing values, manual fields and fake PII.

    Leads are numbered from ``first_number``; ids are ``L`` and the number padded to ``id_digits`` (default:
    at least 8, enough for the last number).
    """
    n = len(created)
    final_number = first_number + n - 1
    id_digits = id_digits if id_digits is not None else max(8, len(str(final_number)))
    missing = {c: rng.random(n) < rate for c, rate in MISSING_RATE.items()}
    observed_size = np.where(missing["employees"], len(SIZE_BANDS), f["size"])
    campaign_names, lookup = _campaign_lookup()
    pick = (rng.random(n) * np.array([len(CAMPAIGNS[s]) for s in SOURCES])[f["source"]]).astype(np.int64)
    title = (rng.integers(0, len(TITLES), n) * len(SENIORITIES) + f["seniority"]) * len(DEPARTMENTS) + f["department"]
    first = _strings(FIRST_NAMES, rng.integers(0, len(FIRST_NAMES), n))
    last = _strings(LAST_NAMES, rng.integers(0, len(LAST_NAMES), n))
    number = pc.cast(pa.array(np.arange(first_number, final_number + 1)), pa.large_string())
    return {
        "lead_id": pc.binary_join_element_wise(_s("L"), pc.utf8_lpad(number, id_digits, "0"), _s("")),
        "created_at": created * NS,
        "source": _strings(SOURCES, f["source"]),
        "campaign": _strings(campaign_names, lookup[f["source"], pick, months % 12 // 3]),
        "country": _strings(_COUNTRY_NAMES, f["country"], missing["country"]),
        "region": _strings(REGIONS, f["region"]),
        "industry": _strings(INDUSTRIES, f["industry"], missing["industry"]),
        "title": _strings(_TITLE_NAMES, title, missing["title"]),
        "seniority": _strings(SENIORITIES, f["seniority"]),
        "department": _strings(DEPARTMENTS, f["department"]),
        "employees": np.where(missing["employees"], np.nan, f["employees"]),
        "annual_revenue": np.where(missing["annual_revenue"] | missing["employees"], np.nan, f["annual_revenue"]),
        **_manual(rng, f, observed_size, logit),
        "email": pc.binary_join_element_wise(
            pc.utf8_lower(first), _s("."), pc.utf8_lower(last), number, _s("@example.com"), _s("")
        ),
        "name": pc.binary_join_element_wise(first, last, _s(" ")),
    }


def _sorted_activities(
    lead: np.ndarray, seconds: np.ndarray, code: np.ndarray, t_end: int, lead_ids: pa.Array
) -> dict[str, pa.Array | np.ndarray]:
    """``activities`` columns before ``t_end``, sorted by (lead, time, type)."""
    keep = seconds < t_end
    lead, seconds, code = lead[keep], seconds[keep], code[keep]
    t_min = int(seconds.min()) if len(seconds) else 0
    # One packed int64 sort key: lead | seconds since t_min | type (4 bits). A 2-year span needs
    # 26 time bits, leaving 33 bits for the lead index.
    t_bits = max(int(t_end - t_min).bit_length(), 1)
    packed = np.sort((lead << (t_bits + 4)) | ((seconds - t_min) << 4) | code)
    return {
        "lead_id": lead_ids.take(pa.array(packed >> (t_bits + 4))),
        "occurred_at": (((packed >> 4) & ((1 << t_bits) - 1)) + t_min) * NS,
        "type": _strings(ACTIVITY_TYPES, packed & 15),
    }


def generate_crm(n_leads: int, seed: int = 0, start: str = "2024-10-01", end: str = "2026-09-30") -> CrmTables:
    """Generate ``n_leads`` leads created over [start, end) with their activities and outcomes.

    ``end`` is the extraction date: activities, opportunities and closes after it are absent
    (an opportunity not closed by then has stage 'open'). Same arguments give identical tables.
    """
    start_ts, end_ts = _period(n_leads, start, end)
    tables = _generate(np.random.default_rng(seed), n_leads, start_ts, end_ts)
    return CrmTables(**{name: table.to_pandas() for name, table in tables.items()})


def _period(n_leads: int, start: str, end: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The checked arguments of a generation: at least one lead, ``start`` before ``end``."""
    if n_leads < 1:
        raise ValueError(f"n_leads must be >= 1, got {n_leads}")
    start_ts, end_ts = pd.Timestamp(start), pd.Timestamp(end)
    if start_ts >= end_ts:
        raise ValueError(f"start ({start}) must be before end ({end})")
    return start_ts, end_ts


def _generate(
    rng: np.random.Generator,
    n_leads: int,
    start_ts: pd.Timestamp,
    end_ts: pd.Timestamp,
    first_number: int = 1,
    id_digits: int | None = None,
) -> dict[str, pa.Table]:
    """The three tables of ``n_leads`` leads drawn from ``rng``, numbered from ``first_number``, as Arrow tables."""
    t0, t_end = start_ts.as_unit("ns").value // NS, end_ts.as_unit("ns").value // NS  # epoch seconds
    span = t_end - t0

    created = t0 + _created_seconds(rng, n_leads, span)
    months = (created * NS).astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
    quarter = ((months - np.datetime64(start_ts, "M").astype(np.int64)) // 3).astype(float)  # since start
    f = _firmographics(rng, (created - t0) / span)
    intent, logit = _logit(rng, f)

    # True opportunity time (-1 for none; may lie after `end`), close time, win and amount.
    converts = rng.random(n_leads) < _sigmoid(logit)
    opp_at = np.where(converts, created + (_opportunity_delay(rng, n_leads) * DAY).astype(np.int64), -1)
    close_at = opp_at + ((20.0 + 130.0 * rng.beta(2.0, 3.0, n_leads)) * DAY).astype(np.int64)
    won = rng.random(n_leads) < _sigmoid(WIN_INTERCEPT + WIN_INTENT * intent)
    amount = np.round(
        _vec(AMOUNT_MEDIAN, SIZE_BANDS)[f["size"]] * np.exp(AMOUNT_SIGMA * rng.standard_normal(n_leads)), -2
    )

    leads = _lead_columns(rng, f, created, months, logit, first_number, id_digits)
    activities = _sorted_activities(*_activities(rng, f, intent, quarter, created, opp_at), t_end, leads["lead_id"])
    opp = np.flatnonzero((opp_at >= 0) & (opp_at < t_end))
    closed = close_at[opp] < t_end
    outcomes = {
        "lead_id": leads["lead_id"].take(pa.array(opp)),
        "opportunity_created_at": opp_at[opp] * NS,
        "closed_at": pa.array(close_at[opp] * NS, pa.timestamp("ns"), mask=~closed),
        "stage": _strings(STAGES, np.where(closed, np.where(won[opp], 1, 2), 0)),
        "amount": amount[opp],
    }
    tables = {"leads": leads, "activities": activities, "outcomes": outcomes}
    return {name: pa.table(cols, schema=_SCHEMAS[name]) for name, cols in tables.items()}


def write_crm(tables: CrmTables, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> dict[str, Path]:
    """Write ``leads``, ``activities`` and ``outcomes`` as ``<name>.<fmt>`` into ``out_dir``.

    Each file is written atomically (:func:`features.files.write_atomic`), so a reader never sees a
    truncated file. Returns the paths by table name.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, schema in _SCHEMAS.items():
        table = pa.Table.from_pandas(getattr(tables, name), schema=schema, preserve_index=False)
        path = out_dir / f"{name}.{fmt}"
        writer = pq.write_table if fmt == "parquet" else pacsv.write_csv
        paths[name] = write_atomic(path, lambda tmp, table=table, writer=writer: writer(table, tmp))
    return paths


def write_crm_parts(
    n_leads: int,
    out_dir: Path,
    seed: int = 0,
    start: str = "2024-10-01",
    end: str = "2026-09-30",
    chunk_leads: int = CHUNK_LEADS,
) -> dict[str, Path]:
    """Generate ``n_leads`` leads chunk by chunk into a partitioned Parquet dataset: ``<table>/part-NNNNN.parquet``.

    Chunk ``i`` holds leads ``i * chunk_leads + 1`` onwards, drawn from its own stream (seeded by ``(seed, i)``),
    with all their activities and outcomes in part ``i`` of each table; only one chunk is in memory at a time.
    The same arguments give identical files. The parts are written into a temporary folder inside
    ``out_dir`` and each table's folder is renamed into place once all are written: a generation that
    fails leaves ``out_dir`` as it was. Returns the table folders by name.
    """
    start_ts, end_ts = _period(n_leads, start, end)
    if chunk_leads < 1:
        raise ValueError(f"chunk_leads must be >= 1, got {chunk_leads}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    digits = max(8, len(str(n_leads)))
    staging = Path(tempfile.mkdtemp(dir=out_dir, prefix=".parts-"))
    try:
        for name in _SCHEMAS:
            (staging / name).mkdir()
        for i, first in enumerate(range(0, n_leads, chunk_leads)):
            rng = np.random.default_rng([seed, i])
            tables = _generate(rng, min(chunk_leads, n_leads - first), start_ts, end_ts, first + 1, digits)
            for name, table in tables.items():
                pq.write_table(table, staging / name / f"part-{i:05d}.parquet")
        paths = {}
        for name in _SCHEMAS:
            target = out_dir / name
            for stale in (out_dir / f"{name}.parquet", out_dir / f"{name}.csv"):
                stale.unlink(missing_ok=True)  # one form per table: the reader refuses a folder beside a file
            if target.exists():
                os.replace(target, staging / f"{name}.old")
            os.replace(staging / name, target)
            paths[name] = target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return paths


def read_crm(data_dir: Path) -> CrmTables:
    """Read the tables written by :func:`write_crm` (``.parquet`` preferred over ``.csv``)."""
    data_dir = Path(data_dir)
    frames = {}
    for name, schema in _SCHEMAS.items():
        parquet, csv = data_dir / f"{name}.parquet", data_dir / f"{name}.csv"
        if parquet.exists():
            table = pq.read_table(parquet, columns=schema.names)
        elif csv.exists():
            options = pacsv.ConvertOptions(
                column_types=schema, include_columns=schema.names, null_values=[""], strings_can_be_null=True
            )
            table = pacsv.read_csv(csv, convert_options=options)
        else:
            raise FileNotFoundError(f"no {name}.parquet or {name}.csv in {data_dir}")
        frames[name] = table.cast(schema).to_pandas()
    return CrmTables(**frames)
