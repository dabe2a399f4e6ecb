"""The synthetic CRM written the way real tools export it, for tests and docs of ``inspect`` and the flat form.

Two exports of the same generated leads (``training.synthetic.generate_crm``):

``funnel/`` (a marketing funnel): ``mql.csv`` (UTF-8 with a byte-order mark, day-first dates, ``unknown``
and ``-`` for missing, an account key, a post-outcome ``lead_status`` column), ``won.csv`` (the leads that
became opportunities, with the day-first date they did: the conversions table) and ``accounts.csv`` (a
lookup table by account key).

``telemarketing.csv`` (a campaign export): semicolon-separated, Windows-1252, ``unknown`` for missing, a
``yes``/``no`` label ``y``, no id column, rows in time order with only a ``month`` name as time.

``data/mappings/messy-funnel.yaml`` and ``messy-telemarketing.yaml`` map them by hand; ``leadscore inspect``
drafts the same. Every value is derived from the generated tables, so a model trained on either export learns the
generator's signal; the same arguments give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.build import CrmTables
from leadscore.features.files import write_atomic
from leadscore.training.synthetic import generate_crm

DAY_FIRST = "%d/%m/%Y %H:%M"
OBSERVATION_DAYS = 7
HORIZON_DAYS = 90


def _engagement(tables: CrmTables) -> pd.DataFrame:
    """Per lead: activity counts of a few types within the first week (what a marketing tool exports)."""
    leads = tables.leads[["lead_id", "created_at"]]
    acts = tables.activities.merge(leads, on="lead_id")
    early = acts[acts["occurred_at"] <= acts["created_at"] + pd.Timedelta(days=OBSERVATION_DAYS)]
    counts = early.pivot_table(index="lead_id", columns="type", values="occurred_at", aggfunc="count", fill_value=0)
    out = pd.DataFrame(index=leads["lead_id"])
    for name, types in {
        "web_visits_7d": ["web_visit", "pricing_page_view"],
        "email_clicks_7d": ["email_click"],
        "downloads_7d": ["content_download", "webinar_attended", "event_attended"],
        "demo_requests_7d": ["demo_request", "meeting_booked", "form_submit"],
    }.items():
        present = [t for t in types if t in counts.columns]
        out[name] = counts[present].sum(axis=1).reindex(out.index).fillna(0).astype(int) if present else 0
    return out.reset_index()


def _missing(values: pd.Series, token: str) -> pd.Series:
    return values.astype(object).where(values.notna(), token)


def funnel_export(tables: CrmTables, seed: int = 0) -> dict[str, pd.DataFrame]:
    """``mql``, ``won`` and ``accounts`` tables of the funnel export."""
    rng = np.random.default_rng(seed)
    leads = tables.leads.reset_index(drop=True)
    n = len(leads)
    mql_id = pd.Series([f"{h:016x}" for h in rng.integers(0, 2**63, n, dtype=np.int64)])
    account = pd.Series([f"ACC-{i:06d}" for i in rng.permutation(n)])
    eng = _engagement(tables).set_index("lead_id").reindex(leads["lead_id"]).reset_index(drop=True)
    outcomes = tables.outcomes.drop_duplicates("lead_id").set_index("lead_id")
    stage = outcomes["stage"].reindex(leads["lead_id"]).to_numpy()
    status = np.where(stage == "closed_won", "Won", np.where(stage == "closed_lost", "Lost", "Open"))
    status = np.where(pd.isna(stage), "Nurture", status)
    mql = pd.DataFrame(
        {
            "mql_id": mql_id,
            "first_contact_date": leads["created_at"].dt.strftime(DAY_FIRST),
            "origin": leads["source"],
            "landing_page_id": leads["campaign"],
            "account_id": account,
            "title": _missing(leads["title"], "unknown"),
            "seniority": _missing(leads["seniority"], "unknown"),
            "department": _missing(leads["department"], "-"),
            **{c: eng[c] for c in eng.columns},
            "lead_status": status,
            "contact_email": leads["email"],
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": account,
            "industry": _missing(leads["industry"], "unknown"),
            "employees": leads["employees"],
            "country": _missing(leads["country"], "unknown"),
        }
    ).sample(frac=1.0, random_state=seed)
    opp = tables.outcomes.dropna(subset=["opportunity_created_at"]).drop_duplicates("lead_id")
    position = pd.Series(np.arange(n), index=leads["lead_id"])
    won = pd.DataFrame(
        {
            "mql_id": mql_id.to_numpy()[position.reindex(opp["lead_id"]).to_numpy()],
            "won_date": opp["opportunity_created_at"].dt.strftime(DAY_FIRST).to_numpy(),
        }
    )
    return {"mql": mql, "won": won, "accounts": accounts}


def telemarketing_export(tables: CrmTables, end: str) -> pd.DataFrame:
    """The campaign export: leads whose horizon ended by ``end``, in time order, labelled ``yes``/``no``."""
    leads = tables.leads.sort_values("created_at", kind="stable").reset_index(drop=True)
    leads = leads[leads["created_at"] + pd.Timedelta(days=HORIZON_DAYS) <= pd.Timestamp(end)].reset_index(drop=True)
    eng = _engagement(tables).set_index("lead_id").reindex(leads["lead_id"]).reset_index(drop=True)
    opp = tables.outcomes.drop_duplicates("lead_id").set_index("lead_id")["opportunity_created_at"]
    opp_at = opp.reindex(leads["lead_id"]).to_numpy("datetime64[ns]")
    converted = opp_at <= (leads["created_at"] + pd.Timedelta(days=HORIZON_DAYS)).to_numpy("datetime64[ns]")
    return pd.DataFrame(
        {
            "month": leads["created_at"].dt.strftime("%b").str.lower(),
            "contact": leads["source"],
            "job": _missing(leads["seniority"], "unknown"),
            "sector": _missing(leads["industry"], "unknown"),
            "country": _missing(leads["country"], "unknown"),
            "employees": leads["employees"],
            "calls": eng["web_visits_7d"] + eng["email_clicks_7d"],
            "downloads": eng["downloads_7d"],
            "demo": np.where(eng["demo_requests_7d"] > 0, "yes", "no"),
            "y": np.where(converted, "yes", "no"),
        }
    )


def write_messy_exports(
    out: Path, leads: int = 4000, seed: int = 0, start: str = "2024-10-01", end: str = "2026-09-30"
) -> dict[str, Path]:
    """Generate leads and write both exports under ``out`` (see the module docstring); returns the paths."""
    out = Path(out)
    tables = generate_crm(leads, seed=seed, start=start, end=end)
    funnel = funnel_export(tables, seed)
    paths: dict[str, Path] = {}
    for name, frame in funnel.items():
        encoding = "utf-8-sig" if name == "mql" else "utf-8"
        paths[name] = write_atomic(
            out / "funnel" / f"{name}.csv",
            lambda tmp, frame=frame, encoding=encoding: frame.to_csv(tmp, index=False, encoding=encoding),
        )
    campaign = telemarketing_export(tables, end)
    paths["telemarketing"] = write_atomic(
        out / "telemarketing.csv",
        lambda tmp: campaign.to_csv(tmp, index=False, sep=";", encoding="cp1252"),
    )
    return paths
