"""The typed handoffs of the sales pipeline."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ICP(_Strict):
    """The ideal customer profile: who to look for, and what we sell them."""

    industry: str = Field(min_length=1, max_length=60)
    region: str = Field(pattern=r"^(EMEA|NA|APAC|LATAM)$")
    min_employees: int = Field(default=0, ge=0, le=1_000_000)
    technologies: list[str] = Field(default_factory=list, max_length=20)
    product: str = Field(min_length=1, max_length=300)
    sender: str = Field(default="the Routewise team", max_length=100)


class Candidate(_Strict):
    id: str
    name: str
    employees: int = Field(ge=0)
    technologies: list[str]


class Candidates(_Strict):
    companies: list[Candidate]


class QualifyRequest(_Strict):
    icp: ICP
    candidates: list[Candidate]


class Qualified(_Strict):
    id: str
    name: str
    score: float = Field(ge=0)
    evidence: list[str] = Field(min_length=1)
    """Why the company ranks where it does: signals and technology overlap, with dates."""


class Shortlist(_Strict):
    top: list[Qualified] = Field(min_length=1, max_length=10)


class ContactRequest(_Strict):
    company: Qualified
    icp: ICP


class Contact(_Strict):
    company_id: str
    company_name: str
    person_id: str
    name: str
    title: str
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    reason: str


class DraftRequest(_Strict):
    company: Qualified
    contact: Contact
    product: str
    sender: str


class Draft(_Strict):
    company_id: str
    person_id: str
    to: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    subject: str = Field(min_length=5, max_length=90)
    body: str = Field(min_length=40, max_length=1500)
    cited_signal: str = Field(pattern=r"^c\d{3}-s\d+$")
    """The id of the signal the draft refers to: every claim must be traceable."""
    confidence: float = Field(ge=0.0, le=1.0)


class Message(_Strict):
    """An approved draft as the sending stage puts it in the outbox (never sent anywhere)."""

    to: str
    subject: str
    body: str
    company_id: str
    person_id: str
