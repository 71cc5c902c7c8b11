"""The research assistant's role cards and workflow.

search (the lead plans 1 to 5 searcher steps; they run in parallel, with the `search` tool) →
compress (each finding) → synthesise (dedupe, resolve conflicts) → check (every citation
against its document's text).

The lead is a planner: its output, a `ResearchPlan`, is a `hubspoke.Plan` (with the question's
``breadth`` and the plan's ``rationale``) whose steps are ``PlanStep(id="s1", role="searcher",
input=<a SearchBrief>, objective=..., scope=..., siblings=...)``. The foreman checks it before
any search runs (only searchers, valid briefs, at most five, all able to run at once) and sends
the lead every error for a corrected plan; `compress` reads the accepted searches'
``run.outputs("search")``.
"""

from __future__ import annotations

from typing import Any

from hubspoke.budget import Budget
from hubspoke.examples.research.citations import check_citations
from hubspoke.examples.research.corpus import search
from hubspoke.examples.research.players import PLAYERS
from hubspoke.examples.research.schemas import (
    Answer,
    CompressRequest,
    Findings,
    Question,
    ResearchPlan,
    SearchBrief,
    Synthesis,
    SynthesisRequest,
)
from hubspoke.roles import Role
from hubspoke.specialists.context import Context
from hubspoke.workflow import Phase, RunView, Strategy, Workflow

__all__ = ["DEMO_INPUT", "ROLES", "workflow"]

DEMO_INPUT: dict[str, Any] = {
    "question": "Give me an overview of the Kestrel Point wind farm.",
}


def _check(synthesis: Synthesis, ctx: Context) -> Answer:
    """A plain function, not an agent: whether a document states a claim is checked, not
    judged (it runs in a worker thread)."""
    return check_citations(synthesis)


ROLES = [
    Role(
        name="lead",
        purpose="Plan the research: split the question into 1 to 5 facets, one searcher each.",
        input=Question,
        output=ResearchPlan,
        does=[
            "plans one searcher for a narrow question (one subject, one aspect) and up to "
            "max_searchers for a broad one (several subjects, several aspects, an overview)",
            "gives each searcher step a brief: an objective, a scope, focus words and queries, "
            "and what its siblings cover so that no two searchers overlap",
            "after a stall, plans again only the searches that ended without findings, "
            "under new ids",
        ],
        does_not=[
            "answer the question itself",
            "plan more searchers than max_searchers, or two with the same scope",
        ],
        budget=Budget(tokens=8_000),
        model_settings={"max_tokens": 2_000},  # five briefs fit
    ),
    Role(
        name="searcher",
        purpose="Search the corpus for one facet of the question and report cited findings.",
        input=SearchBrief,
        output=Findings,
        does=[
            "runs the brief's queries with the search tool",
            "reports each claim as a sentence quoted from a document, citing every document "
            "that states it",
            "says what it looked for and did not find",
        ],
        does_not=[
            "state anything no search result says",
            "cite a document it did not get from the search tool",
            "cover its siblings' scopes",
        ],
        tools=[search],
        budget=Budget(tokens=24_000, tool_calls=6),
        model_settings={"max_tokens": 3_000},  # claims and the sources they cite
    ),
    Role(
        name="compressor",
        purpose="Compress one searcher's findings to the claims on its focus.",
        input=CompressRequest,
        output=Findings,
        does=[
            "keeps at most four claims on the findings' focus, with their citations",
            "keeps both versions of a fact the sources disagree on",
        ],
        does_not=["add claims or citations", "resolve disagreements between sources"],
        budget=Budget(tokens=8_000),
    ),
    Role(
        name="synthesizer",
        purpose="Merge the compressed findings into one answer and resolve conflicts.",
        input=SynthesisRequest,
        output=Synthesis,
        does=[
            "merges claims several findings share into one, with all their citations",
            "resolves two versions of one fact for the more trusted source (official, press "
            "and trade over wires, wires over blogs and forums; then more independent "
            "sources; then the later report), and says which source it trusted and why",
        ],
        does_not=["state anything the findings do not", "drop a citation a claim needs"],
        budget=Budget(tokens=20_000),
        model_settings={"max_tokens": 4_000},  # claims, conflicts and sources of five findings
    ),
    Role(
        name="citation_checker",
        purpose="Check every citation against the cited document's text.",
        input=Synthesis,
        output=Answer,
        function=_check,
        max_attempts=1,
    ),
]


def _findings(run: RunView) -> list[Findings]:
    return list(run.outputs("compress"))


workflow = Workflow(
    name="research",
    description="Lead plans 1-5 searchers, run in parallel → compress → synthesise → check",
    input=Question,
    roles=ROLES,
    players=PLAYERS,
    budget=Budget(tokens=250_000, usd=0.50),
    max_steps=60,
    phases=[
        Phase(
            name="search",
            plan_by="lead",
            input=lambda run: run.input,
            roles=["searcher"],
            max_steps=5,
            max_parallel=5,
            # One replan: a search whose ladder ends (its tool or its model kept failing) is
            # left to the lead, which searches that facet again under a new id while the
            # accepted searches are kept. A second failure of the same facet is rarely
            # transient: it escalates to a person, and the answer goes on without it.
            max_replans=1,
            strategy=Strategy.BEST_EFFORT,
        ),
        Phase(
            name="compress",
            role="compressor",
            over=lambda run: run.outputs("search"),
            input=lambda run, findings: CompressRequest(
                question=run.input.question, findings=findings
            ),
            concurrency=5,
            strategy=Strategy.BEST_EFFORT,
        ),
        Phase(
            name="synthesise",
            role="synthesizer",
            input=lambda run: SynthesisRequest(
                question=run.input.question, findings=_findings(run)
            ),
        ),
        Phase(name="check", role="citation_checker", input=lambda run: run.output("synthesise")),
    ],
    result=lambda run: run.output("check"),
)
