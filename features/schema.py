"""What one lead is: the CRM data model, its column groups, and the scoring request record.

The three CRM tables (``leads``, ``activities``, ``outcomes``) are the documented input contract;
the synthetic generator writes them and ``features.build`` turns them into a point-in-time frame.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

# Activity times are aggregated as datetime64[ns], which would silently wrap around far outside this range;
# pydantic checks it while parsing (in UTC; naive times are UTC), so a request outside it is a 422 on the field.
EARLIEST_ACTIVITY = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_ACTIVITY = datetime(2200, 1, 1, tzinfo=UTC)

SOURCES = ("inbound", "outbound", "referral", "event", "webinar", "partner", "paid")
REGIONS = ("NA", "EMEA", "APAC", "LATAM")
INDUSTRIES = (
    "saas",
    "professional_services",
    "manufacturing",
    "financial_services",
    "healthcare",
    "retail",
    "education",
    "public_sector",
)
SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor")
DEPARTMENTS = ("sales", "marketing", "it", "finance", "operations", "hr", "engineering", "other")
ACTIVITY_TYPES = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_view",
    "content_download",
    "webinar_attended",
    "event_attended",
    "demo_request",
    "form_submit",
    "meeting_booked",
)
STAGES = ("open", "closed_won", "closed_lost")
TARGETS = ("opportunity", "closed_won")

# Bounds of a scoring request (the OpenAPI document states each; a request past one is a 422 naming the field).
MAX_TEXT = 200
MAX_ACTIVITIES = 10_000
MAX_ENGAGEMENT_KEYS = 200
MAX_ATTRIBUTES = 200
MAX_KEY_LENGTH = 100
ACTIVITY_TIME_RANGE = {"x-minimum": EARLIEST_ACTIVITY.isoformat(), "x-exclusiveMaximum": LATEST_ACTIVITY.isoformat()}

# A JSON number, nothing else: a string ("12"), a boolean and NaN or ±Infinity are refused (422 naming the field).
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Key = Annotated[str, Field(min_length=1, max_length=MAX_KEY_LENGTH)]
AttributeValue = Annotated[str, Field(max_length=MAX_TEXT)] | Number | Annotated[bool, Strict()] | None

# Column groups of the `leads` table.
LEAD_ID = "lead_id"
CREATED_AT = "created_at"
FIRMOGRAPHIC_CATEGORICAL = ("source", "campaign", "country", "region", "industry", "title", "seniority", "department")
FIRMOGRAPHIC_NUMERIC = ("employees", "annual_revenue")
MANUAL_COLUMNS = ("is_mql", "manual_score", "bant_budget", "bant_authority", "bant_need", "bant_timing")
PII_COLUMNS = ("email", "name")

LEADS_COLUMNS = (LEAD_ID, CREATED_AT, *FIRMOGRAPHIC_CATEGORICAL, *FIRMOGRAPHIC_NUMERIC, *MANUAL_COLUMNS, *PII_COLUMNS)
ACTIVITIES_COLUMNS = (LEAD_ID, "occurred_at", "type")
OUTCOMES_COLUMNS = (LEAD_ID, "opportunity_created_at", "closed_at", "stage", "amount")

# Company size bands used for segments (employees): SMB < 100 <= mid-market < 1000 <= enterprise.
SIZE_BANDS = ("smb", "mid_market", "enterprise")
SIZE_BAND_EDGES = (100, 1000)


class Activity(BaseModel):
    """One engagement event of a lead."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1,
        max_length=MAX_KEY_LENGTH,
        description="Activity type, e.g. 'pricing_page_view'. The rule for a type the model does not know: it is "
        "accepted and ignored (it counts toward no feature), so a new CRM activity type never fails a request.",
    )
    occurred_at: datetime = Field(
        ge=EARLIEST_ACTIVITY,
        lt=LATEST_ACTIVITY,
        description="When it happened (ISO 8601; naive times are UTC), from 1900-01-01 (included) "
        "up to 2200-01-01 (excluded).",
        json_schema_extra=ACTIVITY_TIME_RANGE,
    )


class LeadRecord(BaseModel):
    """One lead as a caller knows it at the scoring moment.

    Every field but ``lead_id`` is optional: a missing field or an unknown category is scored as
    missing, never rejected. Engagement may come as raw ``activities`` (aggregated by the same code
    training uses) or as pre-aggregated feature values in ``engagement``.
    """

    model_config = ConfigDict(extra="forbid")

    lead_id: str = Field(min_length=1, max_length=200)
    created_at: datetime | None = None
    source: str | None = Field(default=None, max_length=200)
    campaign: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=200)
    region: str | None = Field(default=None, max_length=200)
    industry: str | None = Field(default=None, max_length=200)
    employees: Number | None = Field(default=None, ge=0)
    annual_revenue: Number | None = Field(default=None, ge=0)
    title: str | None = Field(default=None, max_length=200)
    seniority: str | None = Field(default=None, max_length=200)
    department: str | None = Field(default=None, max_length=200)
    is_mql: Annotated[bool, Strict()] | None = None
    manual_score: Number | None = None
    bant_budget: Annotated[bool, Strict()] | None = None
    bant_authority: Annotated[bool, Strict()] | None = None
    bant_need: Annotated[bool, Strict()] | None = None
    bant_timing: Annotated[bool, Strict()] | None = None
    email: str | None = Field(default=None, max_length=320, description="Never logged; not a model input.")
    name: str | None = Field(default=None, max_length=200, description="Never logged; not a model input.")
    activities: list[Activity] | None = Field(default=None, max_length=MAX_ACTIVITIES)
    engagement: dict[Key, Number] | None = Field(
        default=None,
        max_length=MAX_ENGAGEMENT_KEYS,
        description="Pre-aggregated engagement features by name, e.g. {'pricing_page_view_7d': 2}; "
        "names the model does not know are ignored.",
    )
    attributes: dict[Key, AttributeValue] | None = Field(
        default=None,
        max_length=MAX_ATTRIBUTES,
        description="Extra columns named in a user's mapping (flat-table models).",
    )


Target = Literal["opportunity", "closed_won"]
