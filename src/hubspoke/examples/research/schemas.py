"""The typed hand-offs of the research assistant: question → plan (a `hubspoke.Plan` of search
briefs) → findings → compressed findings → synthesis → checked answer."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hubspoke.plans import Plan, PlanStep

DOC_ID = r"^d\d{4}$"


class _Strict(BaseModel):
    # Field docstrings become descriptions in the JSON schema a real model is shown.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


class Question(_Strict):
    """What the user asks."""

    question: str = Field(min_length=3, max_length=500)
    max_searchers: int = Field(default=5, ge=1, le=5)
    """The most search specialists the lead may plan."""


class SearchBrief(_Strict):
    """One search specialist's brief: what to find, where to stop, what the others do."""

    objective: str = Field(min_length=5, max_length=300)
    scope: str = Field(min_length=3, max_length=200)
    """The one facet this specialist covers (a subject, and an aspect of it)."""
    focus: list[str] = Field(min_length=1, max_length=8)
    """Words a relevant finding mentions (lower case)."""
    queries: list[str] = Field(min_length=1, max_length=3)
    """Search queries to run, most specific first."""
    date_from: date | None = None
    date_to: date | None = None
    siblings: list[str] = Field(default_factory=list, max_length=4)
    """The scopes the other specialists cover: stay out of them."""
    output_format: str = Field(
        default=(
            "at most 5 claims, each one sentence quoted from a document, citing the ids of "
            "the documents that state it"
        ),
        max_length=300,
    )


class ResearchPlan(Plan):
    """The lead's plan: how broad the question is, why, and one step per search specialist.

    A `hubspoke.Plan` whose steps each dispatch the role ``searcher`` with a `SearchBrief` as
    input; the foreman checks it like any plan (roles, inputs, at most five steps) before a
    search runs.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)

    breadth: Literal["narrow", "broad"]
    """``narrow``: one subject and at most one aspect of it, one searcher; ``broad``: several."""
    rationale: str = Field(min_length=5, max_length=400)
    """Why this many searchers, in a sentence or two."""
    steps: list[PlanStep]
    """One step per searcher, ids ``s1``, ``s2``, ...: ``role`` is ``searcher`` and ``input`` a
    search brief (objective, scope, focus, queries, optional date_from and date_to, siblings);
    the step's objective, scope and siblings repeat the brief's."""

    @model_validator(mode="after")
    def _narrow_is_one_searcher(self) -> ResearchPlan:
        if self.breadth == "narrow" and len(self.steps) != 1:
            raise ValueError(
                f"a narrow plan has one searcher step, not {len(self.steps)}: plan one step, "
                'or say the question is "broad"'
            )
        return self

    def briefs(self) -> list[SearchBrief]:
        """The searchers' briefs, in plan order (the inputs of its ``searcher`` steps).

        Raises:
            pydantic.ValidationError: a searcher step's input is not a `SearchBrief` (the
                foreman refuses such a plan before it runs).
        """
        return [SearchBrief.model_validate(s.input) for s in self.steps if s.role == "searcher"]


class Source(_Strict):
    """A cited document, as the search tool described it."""

    id: str = Field(pattern=DOC_ID)
    title: str
    date: date
    source: str
    source_kind: str


class Claim(_Strict):
    """One statement and the documents that state it."""

    text: str = Field(min_length=3, max_length=400)
    citations: list[str] = Field(min_length=1, max_length=6)
    """Document ids (``d0042``)."""


class Findings(_Strict):
    """What one search specialist found (or its compressed form)."""

    scope: str
    focus: list[str] = Field(min_length=1, max_length=8)
    claims: list[Claim] = Field(max_length=8)
    sources: list[Source] = Field(max_length=40)
    """Every document a claim cites."""
    gaps: str = ""
    """What the specialist looked for and did not find."""


class CompressRequest(_Strict):
    question: str
    findings: Findings


class SynthesisRequest(_Strict):
    question: str
    findings: list[Findings] = Field(min_length=1, max_length=5)


class Conflict(_Strict):
    """Sources that disagree about one fact, and which one the synthesis trusted."""

    about: str
    """The fact, with the disputed values left out."""
    kept: Claim
    rejected: list[Claim] = Field(min_length=1)
    trusted: str
    """The source whose version was kept."""
    reason: str


class Synthesis(_Strict):
    """The merged answer before its citations are checked."""

    question: str
    claims: list[Claim] = Field(max_length=25)
    """Empty when no finding holds a claim."""
    conflicts: list[Conflict] = Field(default_factory=list)
    sources: list[Source]


class Flag(_Strict):
    """A claim the citation check changed."""

    text: str
    citations: list[str]
    action: Literal["removed", "citations_dropped"]
    """``removed``: no cited document supports it; ``citations_dropped``: kept, citing only
    the documents that do."""
    reason: str


class Answer(_Strict):
    """The research assistant's answer: every claim cites documents that state it."""

    question: str
    text: str
    """The answer as prose, each claim followed by its citations in brackets."""
    claims: list[Claim]
    flagged: list[Flag]
    conflicts: list[Conflict]
    sources: list[Source]
    """The documents the answer's claims cite."""
