"""The research assistant, end to end on the offline model: the lead's plan (its breadth, its
check, its replan), the search tool, the citation pass, the corpus, the CLI, the live view, the
budget and a resume."""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib.util
import io
import json
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic_ai.messages import ToolCallPart
from rich.console import Console
from typer.testing import CliRunner

from hubspoke import EventKind, Foreman, SQLiteStore
from hubspoke.budget import Budget
from hubspoke.cli import app
from hubspoke.cli.live import LiveProgress
from hubspoke.events import payload
from hubspoke.examples.research import workflow
from hubspoke.examples.research.citations import supports
from hubspoke.examples.research.corpus import TRUST, corpus, document, search, source_kind
from hubspoke.examples.research.players import PLAYERS, synthesizer
from hubspoke.examples.research.schemas import Answer, ResearchPlan
from hubspoke.models.offline import Move, Turn, answer, call
from hubspoke.testing import stream
from hubspoke.tools import Tool, ToolArgumentsError

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
NARROW = "What did the Corvel Bridge cost?"
OVERVIEW = "Give me an overview of the Kestrel Point wind farm."
TWO_SUBJECTS = "Compare the transport projects: what did they cost?"


async def research(store: SQLiteStore, question: str, **changes: Any) -> tuple[str, Answer]:
    flow = dataclasses.replace(workflow, **changes) if changes else workflow
    result = await Foreman(flow, store).run({"question": question})
    assert result.status == "completed", result.summary()
    assert isinstance(result.result, Answer)
    return result.run_id, result.result


def plan_of(store: SQLiteStore, run_id: str) -> ResearchPlan:
    """The lead's accepted plan (the planner's item ``search:plan[1]``)."""
    (artifact,) = [a for a in store.artifacts(run_id) if a.phase == "search:plan"]
    assert artifact.item == "search:plan[1]"
    return ResearchPlan.model_validate(artifact.content)


# the plan's breadth ------------------------------------------------------------------------------


async def test_a_narrow_question_gets_one_searcher(store: SQLiteStore) -> None:
    run_id, answer = await research(store, NARROW)

    plan = plan_of(store, run_id)
    assert plan.breadth == "narrow"
    (step,) = plan.steps
    (brief,) = plan.briefs()
    assert (step.id, step.role, step.scope, step.siblings) == (
        "s1",
        "searcher",
        "Corvel Bridge: cost",
        "",
    )
    assert brief.scope == "Corvel Bridge: cost" and brief.siblings == []
    searches = [e for e in store.events(run_id) if e.kind is EventKind.TOOL_CALLED]
    assert [e.item for e in searches] == ["search[s1]"]
    assert [c.text for c in answer.claims] == ["The Corvel Bridge cost 860 million crowns."]


@pytest.mark.parametrize(
    ("question", "scopes"),
    [
        (
            OVERVIEW,
            [
                "Kestrel Point wind farm: scale",
                "Kestrel Point wind farm: timeline",
                "Kestrel Point wind farm: cost",
                "Kestrel Point wind farm: impact",
            ],
        ),
        (TWO_SUBJECTS, ["Corvel Bridge: cost", "Marrow Line high-speed rail: cost"]),
    ],
)
async def test_a_broad_question_gets_one_searcher_per_facet_each_told_what_the_others_cover(
    store: SQLiteStore, question: str, scopes: list[str]
) -> None:
    run_id, _ = await research(store, question)

    plan = plan_of(store, run_id)
    assert plan.breadth == "broad"
    ids = [f"s{n}" for n in range(1, len(scopes) + 1)]
    assert [(s.id, s.role, s.scope) for s in plan.steps] == [
        (i, "searcher", scope) for i, scope in zip(ids, scopes, strict=True)
    ]
    for step, brief in zip(plan.steps, plan.briefs(), strict=True):
        assert brief.objective and brief.queries and brief.focus
        assert brief.siblings == [s for s in scopes if s != brief.scope]
        # The step's brief (its specialist's ctx.brief) repeats the search brief's.
        assert step.objective == brief.objective and step.after == []
        assert step.siblings == f"The other searchers cover: {'; '.join(brief.siblings)}."
    # One searcher per step, each searching once per query: the plan is what ran.
    events = store.events(run_id)
    (accepted,) = [e for e in events if e.kind is EventKind.PLAN_ACCEPTED]
    assert [s["id"] for s in accepted.data["steps"]] == ids
    items = {e.item for e in events if e.kind is EventKind.DISPATCH_STARTED and e.phase == "search"}
    assert items == {f"search[{i}]" for i in ids}
    # In parallel: every searcher started before the first one finished.
    searching = [e.kind for e in events if e.phase == "search" and e.item is not None]
    first_end = searching.index(EventKind.DISPATCH_FINISHED)
    assert searching[:first_end].count(EventKind.DISPATCH_STARTED) == len(scopes)
    for i, brief in zip(ids, plan.briefs(), strict=True):
        lines = stream(e for e in events if e.item == f"search[{i}]")
        assert lines == [
            f"dispatch.started search searcher search[{i}] #1",
            f"model.exchange search searcher search[{i}] #1 search",
            f"tool.called search searcher search[{i}] #1 search",
            f"model.exchange search searcher search[{i}] #1 final_result",
            f"dispatch.finished search searcher search[{i}] #1 output",
            f"item.accepted search searcher search[{i}]",
        ]
        started = next(
            e for e in events if e.item == f"search[{i}]" and e.kind is EventKind.DISPATCH_STARTED
        )
        assert started.data["input"]["scope"] == brief.scope


async def test_the_lead_never_plans_more_searchers_than_allowed(store: SQLiteStore) -> None:
    result = await Foreman(workflow, store).run(
        {"question": "What happened across Veldmark?", "max_searchers": 2}
    )
    plan = plan_of(store, result.run_id)
    assert len(plan.steps) == 2 and "Capped at 2" in plan.rationale


def leading(bad: dict[str, Any], seen: list[str | None]) -> Any:
    """A lead that returns `bad` (a plan as JSON) at its first dispatch, then plans as the
    offline lead does; it notes each dispatch's correction in `seen`."""

    def player(turn: Turn) -> Move | list[Move]:
        seen.append(turn.correction)
        return answer(bad) if len(seen) == 1 else PLAYERS["lead"](turn)

    return player


def searcher_step(n: int, role: str = "searcher", **brief: Any) -> dict[str, Any]:
    inp = {"objective": "Find the cost.", "scope": f"facet {n}", "focus": ["cost"]}
    return {
        "id": f"s{n}",
        "role": role,
        "input": {**inp, "queries": ["Corvel Bridge cost"], **brief},
        "objective": "Find the cost.",
    }


@pytest.mark.parametrize(
    ("steps", "errors"),
    [
        (
            [searcher_step(1, role="oracle")],
            ["- steps.0.role: no role named 'oracle' (roles this plan may use: searcher)"],
        ),
        (
            [searcher_step(1, role="synthesizer")],
            [
                "- steps.0.role: this plan may not use the role 'synthesizer' (roles this plan "
                "may use: searcher)",
                # and its input is checked against the synthesizer's schema
                "- steps.0.input.question: Field required",
                "- steps.0.input.findings: Field required",
                *(
                    f"- steps.0.input.{name}: Extra inputs are not permitted"
                    for name in ("objective", "scope", "focus", "queries")
                ),
            ],
        ),
        (
            [searcher_step(n) for n in range(1, 7)],
            [
                "- steps: 6 steps, more than max_steps=5: plan fewer, broader steps",
                "- steps: 6 steps could run at once (s1, s2, s3, s4, s5, s6), more than "
                "max_parallel=5: make some wait for others (after) or plan fewer",
            ],
        ),
        (
            [searcher_step(1, queries=[]), searcher_step(2, focus="cost")],
            [
                "- steps.0.input.queries: List should have at least 1 item after validation, not 0",
                "- steps.1.input.focus: Input should be a valid array",
            ],
        ),
    ],
)
async def test_the_leads_plan_is_checked_and_an_invalid_one_corrected_before_anything_runs(
    store: SQLiteStore, steps: list[dict[str, Any]], errors: list[str]
) -> None:
    seen: list[str | None] = []
    bad = {"breadth": "broad", "rationale": "A plan the foreman refuses.", "steps": steps}

    run_id, answer = await research(store, NARROW, players={**PLAYERS, "lead": leading(bad, seen)})

    assert seen == [None, "Your previous output was invalid:\n" + "\n".join(errors)]
    lines = stream(store.events(run_id))
    planning = lines[lines.index("phase.started search:plan items=1") :]
    assert planning[:11] == [
        "phase.started search:plan items=1",
        "dispatch.started search:plan lead search:plan[1] #1",
        "model.exchange search:plan lead search:plan[1] #1 final_result",
        "dispatch.finished search:plan lead search:plan[1] #1 output",
        f"plan.rejected search lead search:plan[1] #1 errors={len(errors)}",
        "item.retry search:plan lead search:plan[1] #2",
        "dispatch.started search:plan lead search:plan[1] #2",
        "model.exchange search:plan lead search:plan[1] #2 final_result",
        "dispatch.finished search:plan lead search:plan[1] #2 output",
        "item.accepted search:plan lead search:plan[1]",
        "phase.finished search:plan completed",
    ]
    # Nothing of the refused plan ran: the accepted one is the only plan, and it ran.
    assert planning[11:13] == [
        "plan.accepted search lead search:plan[1] rev=1 s1",
        "dispatch.started search searcher search[s1] #1",
    ]
    assert plan_of(store, run_id).briefs()[0].scope == "Corvel Bridge: cost"
    assert [c.text for c in answer.claims] == ["The Corvel Bridge cost 860 million crowns."]


async def test_a_narrow_plan_with_several_searchers_is_corrected(store: SQLiteStore) -> None:
    seen: list[str | None] = []
    steps = [searcher_step(1), searcher_step(2)]
    bad = {"breadth": "narrow", "rationale": "Only one subject.", "steps": steps}

    run_id, _ = await research(store, NARROW, players={**PLAYERS, "lead": leading(bad, seen)})

    assert seen[1] is not None and seen[1].startswith("Your previous output was invalid:")
    assert "a narrow plan has one searcher step, not 2" in seen[1]
    lines = stream(store.events(run_id))
    assert "output.invalid search:plan lead search:plan[1] #1" in lines
    assert "plan.accepted search lead search:plan[1] rev=1 s1" in lines
    assert not any("plan.rejected" in line for line in lines)  # refused by its schema first


def failing_on(scope: str, fixed: list[bool]) -> Any:
    """A searcher that answers outside its schema for the facet `scope` until `fixed[0]`."""

    def player(turn: Turn) -> Move | list[Move]:
        if turn.input["scope"] == scope and not fixed[0]:
            return answer(scope=scope, focus=["x"], claims="none", sources=[])
        return PLAYERS["searcher"](turn)

    return player


def replanning_fixes(fixed: list[bool], seen: list[str | None]) -> Any:
    """The offline lead, noting each correction; asked to replan, it sets `fixed[0]`."""

    def player(turn: Turn) -> Move | list[Move]:
        seen.append(turn.correction)
        fixed[0] = fixed[0] or bool(turn.correction and "stalled" in turn.correction)
        return PLAYERS["lead"](turn)

    return player


async def test_a_search_that_fails_is_left_to_the_lead_which_plans_it_again(
    store: SQLiteStore,
) -> None:
    fixed: list[bool] = [False]
    seen: list[str | None] = []
    timeline = "Kestrel Point wind farm: timeline"
    players = {
        **PLAYERS,
        "lead": replanning_fixes(fixed, seen),
        "searcher": failing_on(timeline, fixed),
    }

    run_id, answer = await research(store, OVERVIEW, players=players)

    events = store.events(run_id)
    lines = stream(events)
    assert [line for line in lines if line.startswith(("plan.", "item.failed"))] == [
        "plan.accepted search lead search:plan[1] rev=1 s1,s2,s3,s4",
        "item.failed search searcher search[s2]",  # left to the planner
        "plan.stalled search lead search:plan[1] rev=1",
        "plan.accepted search lead search:plan[2] rev=2 s2-2",
    ]
    assert seen[0] is None and seen[1] is not None
    account = seen[1].splitlines()
    assert account[0] == (
        "The plan stalled: step(s) s2 ended without an output. What happened to each step:"
    )
    assert [line.split(": left to the planner")[0] for line in account[1:5]] == [
        "- s1 (searcher): accepted",
        "- s2 (searcher): failed",
        "- s3 (searcher): accepted",
        "- s4 (searcher): accepted",
    ]
    # The facet again, searched more broadly: the same brief would be the same dispatch.
    first = plan_of_revision(store, run_id, 1).briefs()[1]
    (again,) = plan_of_revision(store, run_id, 2).briefs()
    assert again.scope == first.scope == timeline
    assert again.queries == [*first.queries, "Kestrel Point wind farm"]
    # The accepted searches were kept, not run again; the facet was searched again.
    started = [e.item for e in events if e.kind is EventKind.DISPATCH_STARTED]
    assert [started.count(f"search[s{n}]") for n in (1, 3, 4)] == [1, 1, 1]
    accepted = {e.item for e in events if e.kind is EventKind.ITEM_ACCEPTED}
    assert {"search[s1]", "search[s2-2]", "search[s3]", "search[s4]"} <= accepted
    assert "search[s2]" not in accepted
    assert "The Kestrel Point wind farm has a capacity of 420 megawatts." in answer.text


async def test_a_search_that_fails_again_after_the_replan_goes_to_a_person_and_the_rest_answers(
    store: SQLiteStore, tmp_path: Path
) -> None:
    timeline = "Kestrel Point wind farm: timeline"
    players = {**PLAYERS, "searcher": failing_on(timeline, [False])}

    result = await Foreman(dataclasses.replace(workflow, players=players), store).run(
        {"question": OVERVIEW}
    )

    lines = stream(store.events(result.run_id))
    assert [line for line in lines if line.startswith(("plan.", "item.failed", "item.esc"))] == [
        "plan.accepted search lead search:plan[1] rev=1 s1,s2,s3,s4",
        "item.failed search searcher search[s2]",
        "plan.stalled search lead search:plan[1] rev=1",
        "plan.accepted search lead search:plan[2] rev=2 s2-2",
        "item.escalated search searcher search[s2-2]",  # max_replans=1: to a person
    ]
    assert "phase.finished search completed" in lines  # best effort: the rest goes on
    assert "phase.finished check completed" in lines
    assert result.status == "waiting"  # for the person who has the escalated search's card
    assert result.summary()["phases"]["compress"]["accepted"] == 3
    # The board names the card's item as it is keyed (a planned key is no markup to it).
    db = str(tmp_path / "journal.db")  # the `store` fixture's file
    shown = CliRunner().invoke(app, ["cards", result.run_id, "--db", db], terminal_width=160)
    assert shown.exit_code == 0, shown.output
    (row,) = [r for line in shown.stdout.splitlines() if (r := line.split()) and "card_" in r[0]]
    assert row[1] == "search[s2-2]"


def plan_of_revision(store: SQLiteStore, run_id: str, revision: int) -> ResearchPlan:
    (artifact,) = [a for a in store.artifacts(run_id) if a.item == f"search:plan[{revision}]"]
    return ResearchPlan.model_validate(artifact.content)


# the answer and the citation pass ---------------------------------------------------------------


@pytest.mark.parametrize("question", [NARROW, OVERVIEW, TWO_SUBJECTS])
async def test_every_claim_cites_documents_that_state_it_and_that_a_search_returned(
    store: SQLiteStore, question: str
) -> None:
    run_id, answer = await research(store, question)

    assert answer.claims
    # The offline synthesizer overreaches: a claim it kept over a conflicting version also
    # cites a report of the other version, and the citation pass drops that citation.
    dropped = {(c.kept.text, c.rejected[0].citations[0]) for c in answer.conflicts}
    assert {(f.text, f.citations[0]) for f in answer.flagged} == dropped
    assert {f.action for f in answer.flagged} <= {"citations_dropped"}
    # Independently of the citation pass: the offline players quote whole sentences, so each
    # cited document's text holds the claim word for word.
    for claim in answer.claims:
        for doc_id in claim.citations:
            doc = document(doc_id)
            assert doc is not None and claim.text in doc["text"], (claim, doc_id)
    # ...and every cited document came back from a search this run made (the journal keeps
    # each call's arguments: run them again).
    returned: set[str] = set()
    for event in store.events(run_id):
        if event.kind is EventKind.TOOL_CALLED:
            arguments = payload(event, EventKind.TOOL_CALLED)["arguments"]
            assert isinstance(arguments, dict)
            checked = Tool.from_function(search).validate(arguments)
            returned |= {hit["id"] for hit in search(**checked.model_dump())}
    cited = {d for claim in answer.claims for d in claim.citations}
    assert cited <= returned
    assert {s.id for s in answer.sources} == cited
    for claim in answer.claims:
        assert f"{claim.text} [{', '.join(claim.citations)}]" in answer.text


async def test_conflicting_sources_are_resolved_for_the_more_trusted_one(
    store: SQLiteStore,
) -> None:
    _, answer = await research(store, OVERVIEW)

    assert answer.conflicts
    for conflict in answer.conflicts:
        assert conflict.kept.text in [c.text for c in answer.claims]
        for rejected in conflict.rejected:
            assert rejected.text not in [c.text for c in answer.claims]

        def best(citations: list[str]) -> int:
            docs = [document(d) for d in citations]
            return max(TRUST[source_kind(d["source"])] for d in docs if d is not None)

        assert best(conflict.kept.citations) >= max(best(r.citations) for r in conflict.rejected)
        assert conflict.trusted in conflict.reason
    capacity = next(c for c in answer.conflicts if "capacity" in c.about)
    assert "420 megawatts" in capacity.kept.text
    assert "380 megawatts" in capacity.rejected[0].text


@pytest.mark.parametrize(
    ("claim", "supported", "reason"),
    [
        ("The Corvel Bridge cost 860 million crowns.", True, ""),
        ("The Corvel Bridge's cost was 860 million crowns.", True, ""),  # a close paraphrase
        ("The Corvel Bridge cost 910 million crowns.", False, "does not state 910"),
        ("The Corvel Bridge cost 860 million crowns and won awards.", False, "won, awards"),
        ("The Marrow Line cost 860 million crowns.", False, "marrow, line"),
        ("The the of.", False, "no content words"),
    ],
)
def test_a_document_supports_a_claim_when_it_states_its_figures_and_nearly_all_its_words(
    claim: str, supported: bool, reason: str
) -> None:
    text = "Readers have asked for an update. The Corvel Bridge cost 860 million crowns."

    ok, why = supports(claim, text)

    assert ok is supported
    assert reason in why and (why == "") is supported


def planting(*claims: dict[str, Any], extra_citation: str | None = None) -> Any:
    """A synthesizer that adds `claims` to its answer, and cites `extra_citation` for its first
    real claim as well."""

    def player(turn: Turn) -> Move | list[Move]:
        move = synthesizer(turn)
        assert isinstance(move, ToolCallPart) and isinstance(move.args, dict)
        arguments = move.args
        if extra_citation is not None:
            arguments["claims"][0]["citations"].append(extra_citation)
        arguments["claims"].extend(claims)
        return move

    return player


async def test_a_planted_unsupported_claim_is_removed_and_a_wrong_citation_dropped(
    store: SQLiteStore,
) -> None:
    real = "d0420"  # states that the Corvel Bridge cost 860 million crowns
    unrelated = next(d["id"] for d in corpus().documents if "Tessaly" in d["text"])
    doc = document(real)
    assert doc is not None and "The Corvel Bridge cost 860 million crowns." in doc["text"]
    players = {
        **PLAYERS,
        "synthesizer": planting(
            {"text": "The Corvel Bridge cost 2.7 billion crowns.", "citations": [real]},
            {"text": "The Corvel Bridge was paid for by a lottery.", "citations": [real]},
            {"text": "The Corvel Bridge cost 860 million crowns.", "citations": ["d9999"]},
            extra_citation=unrelated,
        ),
    }

    _, answer = await research(store, NARROW, players=players)

    flags = {(f.text, f.action): f for f in answer.flagged}
    assert set(flags) == {
        ("The Corvel Bridge cost 2.7 billion crowns.", "removed"),
        ("The Corvel Bridge was paid for by a lottery.", "removed"),
        ("The Corvel Bridge cost 860 million crowns.", "removed"),
        ("The Corvel Bridge cost 860 million crowns.", "citations_dropped"),
    }
    assert (
        "does not state 2.7"
        in flags[("The Corvel Bridge cost 2.7 billion crowns.", "removed")].reason
    )
    assert "lottery" in flags[("The Corvel Bridge was paid for by a lottery.", "removed")].reason
    assert (
        "d9999 is not in the corpus"
        in flags[("The Corvel Bridge cost 860 million crowns.", "removed")].reason
    )
    dropped = flags[("The Corvel Bridge cost 860 million crowns.", "citations_dropped")]
    assert dropped.citations[-1] == unrelated  # after the conflicting report it also cites
    (claim,) = answer.claims
    assert unrelated not in claim.citations and "2.7" not in answer.text
    assert "lottery" not in answer.text


async def test_a_question_the_corpus_cannot_answer_gets_an_empty_answer(
    store: SQLiteStore,
) -> None:
    run_id, answer = await research(store, "What do penguins eat?")

    assert plan_of(store, run_id).breadth == "narrow"
    assert answer.claims == [] and answer.sources == []
    assert "no claim" in answer.text


# the search tool ------------------------------------------------------------------------------


def test_search_ranks_the_documents_about_the_query_first() -> None:
    hits = search("Corvel Bridge cost", limit=10)

    assert len(hits) == 10
    assert [h["id"] for h in hits] == [h["id"] for h in search("Corvel Bridge cost", limit=10)]
    for hit in hits:
        assert set(hit) == {"id", "title", "date", "source", "source_kind", "snippet"}
        doc = document(hit["id"])
        assert doc is not None and hit["snippet"] in doc["text"]
        assert "Corvel Bridge" in doc["text"]
        assert "cost" in hit["snippet"]  # the best sentence, not the first
    assert search("Corvel Bridge cost", limit=3) == hits[:3]
    assert all("Corvel" not in h["snippet"] for h in search("Tessaly revenue", limit=5))


def test_search_keeps_to_the_date_range() -> None:
    hits = search("Marrow Line", limit=10, date_from=date(2024, 1, 1), date_to=date(2024, 3, 31))

    assert hits
    assert all("2024-01-01" <= h["date"] <= "2024-03-31" for h in hits)


def test_search_reads_operators_and_quotes_as_words() -> None:
    assert search('bridge" OR NEAR(cost -toll: ^x', limit=2)
    assert search("penguins", limit=5) == []


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"query": "bridge", "limit": 11}, "limit"),
        ({"query": "bridge", "limit": 0}, "limit"),
        ({"query": ""}, "query"),
        ({"query": "bridge", "date_from": "2024-13-01"}, "date_from"),
        ({"query": "bridge", "top": 3}, "top"),
        ({"limit": 3}, "query"),
    ],
)
async def test_search_refuses_arguments_outside_its_schema(
    arguments: dict[str, Any], field: str
) -> None:
    tool = Tool.from_function(search)

    with pytest.raises(ToolArgumentsError) as refused:
        await tool.call(arguments)
    assert field in str(refused.value)


async def test_search_refuses_a_query_with_nothing_to_look_for_and_a_reversed_range() -> None:
    tool = Tool.from_function(search)

    with pytest.raises(ValueError, match="no word to search for"):
        await tool.call({"query": "what is the"})
    with pytest.raises(ValueError, match=r"date_from .* is after date_to"):
        await tool.call({"query": "bridge", "date_from": "2025-01-01", "date_to": "2024-01-01"})


async def test_a_searcher_that_asks_for_too_many_results_is_told_and_corrects_itself(
    store: SQLiteStore,
) -> None:
    seen: list[Any] = []

    def greedy(turn: Turn) -> Move | list[Move]:
        if not turn.results:
            return call("search", query=turn.input["queries"][0], limit=50)
        if len(turn.results) == 1:
            seen.append(turn.results[0][1])
            return call("search", query=turn.input["queries"][0], limit=10)
        return PLAYERS["searcher"](Turn(**{**vars_of(turn), "results": turn.results[1:]}))

    run_id, answer = await research(store, NARROW, players={**PLAYERS, "searcher": greedy})

    (refusal,) = seen
    assert list(refusal["invalid_arguments"][0]["loc"]) == ["limit"]
    calls = [e for e in store.events(run_id) if e.kind is EventKind.TOOL_CALLED]
    assert ["error" in e.data for e in calls] == [True, False]
    assert answer.claims


def vars_of(turn: Turn) -> dict[str, Any]:
    return {f.name: getattr(turn, f.name) for f in dataclasses.fields(turn)}


# the corpus ----------------------------------------------------------------------------------


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "generate_research_corpus", ROOT / "scripts/generate_research_corpus.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_corpus_is_regenerated_byte_for_byte() -> None:
    script = generator()
    shipped = (ROOT / "src/hubspoke/examples/research/data/corpus.json.gz").read_bytes()

    first, second = script.encode(script.build()), script.encode(generator().build())
    assert first == second
    assert gzip.decompress(first) == gzip.decompress(shipped)
    assert (
        hashlib.sha256(gzip.decompress(shipped)).hexdigest()
        == hashlib.sha256(gzip.decompress(first)).hexdigest()
    )
    assert len(shipped) < 1_000_000


def test_the_corpus_has_dated_sourced_documents_conflicts_and_near_duplicates() -> None:
    docs = corpus().documents

    assert len(docs) == 1000 and len({d["id"] for d in docs}) == 1000
    for doc in docs:
        assert set(doc) == {"id", "title", "date", "source", "text"}
        assert source_kind(doc["source"]) in TRUST
        date.fromisoformat(doc["date"])
    texts = " ".join(d["text"] for d in docs)
    assert "420 megawatts" in texts and "380 megawatts" in texts  # a conflict
    reprints = [d for d in docs if d["title"].endswith("(reprint)")]
    assert len(reprints) > 40
    json.dumps(docs)  # plain JSON


# the command line and the budget ---------------------------------------------------------------


def test_hubspoke_demo_research_answers_offline_and_show_has_its_plan_and_cost(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "research.db")
    runner = CliRunner()

    ran = runner.invoke(app, ["demo", "research", NARROW, "--db", db, "--json"])

    assert ran.exit_code == 0, ran.output
    out = json.loads(ran.stdout)
    answer = Answer.model_validate(out["result"])
    assert [c.text for c in answer.claims] == ["The Corvel Bridge cost 860 million crowns."]
    reader = SQLiteStore(db, read_only=True)
    events = reader.events(out["run_id"])
    reader.close()
    assert stream(events) == [
        "run.started",
        "phase.started search items=0",
        "phase.started search:plan items=1",
        "dispatch.started search:plan lead search:plan[1] #1",
        "model.exchange search:plan lead search:plan[1] #1 final_result",
        "dispatch.finished search:plan lead search:plan[1] #1 output",
        "item.accepted search:plan lead search:plan[1]",
        "phase.finished search:plan completed",
        "plan.accepted search lead search:plan[1] rev=1 s1",
        "dispatch.started search searcher search[s1] #1",
        "model.exchange search searcher search[s1] #1 search",
        "tool.called search searcher search[s1] #1 search",
        "model.exchange search searcher search[s1] #1 final_result",
        "dispatch.finished search searcher search[s1] #1 output",
        "item.accepted search searcher search[s1]",
        "phase.finished search completed",
        "phase.started compress items=1",
        "dispatch.started compress compressor compress[0] #1",
        "model.exchange compress compressor compress[0] #1 final_result",
        "dispatch.finished compress compressor compress[0] #1 output",
        "item.accepted compress compressor compress[0]",
        "phase.finished compress completed",
        "phase.started synthesise items=1",
        "dispatch.started synthesise synthesizer synthesise #1",
        "model.exchange synthesise synthesizer synthesise #1 final_result",
        "dispatch.finished synthesise synthesizer synthesise #1 output",
        "item.accepted synthesise synthesizer synthesise",
        "phase.finished synthesise completed",
        "phase.started check items=1",
        "dispatch.started check citation_checker check #1",
        "dispatch.finished check citation_checker check #1 output",
        "item.accepted check citation_checker check",
        "phase.finished check completed",
        "run.finished completed",
    ]

    shown = runner.invoke(app, ["show", out["run_id"], "--db", db, "--json"])
    report = json.loads(shown.stdout)
    assert report["phases"]["search"]["items"] == 1  # the plan: one searcher
    assert report["plans"]["search"] == {
        "plans": 1,
        "rejected": 0,
        "stalls": [],
        "steps": [
            {
                "id": "s1",
                "role": "searcher",
                "after": [],
                "revision": 1,
                "status": "accepted",
                "objective": "Find what the corpus says about the cost of the Corvel Bridge, "
                "with the figures and dates.",
            }
        ],
        "rationale": "One subject (Corvel Bridge) and one question about it.",
    }
    assert report["usage"]["usd"] > 0
    assert set(report["usage_by_role"]) >= {"lead", "searcher", "synthesizer"}
    assert report["items"]["search[s1]"]["role"] == "searcher"
    listed = runner.invoke(
        app, ["artifacts", out["run_id"], "--phase", "search:plan", "--db", db, "--json"]
    )
    (plan,) = json.loads(listed.stdout)
    assert [s["input"]["scope"] for s in plan["content"]["steps"]] == ["Corvel Bridge: cost"]

    text = runner.invoke(app, ["demo", "research", OVERVIEW, "--db", db])
    assert text.exit_code == 0, text.output
    assert "The Kestrel Point wind farm has a capacity of 420 megawatts." in text.stdout
    # The broad question's plan and cost, as `hubspoke show` prints them for a person.
    (overview,) = [
        r["run_id"]
        for r in json.loads(runner.invoke(app, ["runs", "--db", db, "--json"]).stdout)
        if r["run_id"] != out["run_id"]
    ]
    human = runner.invoke(app, ["show", overview, "--db", db], terminal_width=120)
    assert human.exit_code == 0, human.output
    assert "plan of search (1 plan accepted)" in human.stdout
    steps = [["s1"], ["s2"], ["s3"], ["s4"]]
    rows = [r for line in human.stdout.splitlines() if (r := line.split())[:1] in steps]
    assert [r[:5] for r in rows] == [
        [f"s{n}", "searcher", "-", "1", "accepted"] for n in range(1, 5)
    ]
    # Each step's objective, and why the lead planned four: the question is broad.
    for row, aspect in zip(rows, ["scale", "timeline", "cost", "impact"], strict=True):
        assert " ".join(row[5:]).startswith(f"Find what the corpus says about the {aspect} ")
    assert "why: Several aspects of Kestrel Point wind farm: one searcher per aspect." in (
        human.stdout
    )
    # Each searcher's cost under its item's key (a planned key is no markup to the table).
    costs = {r[0]: r for line in human.stdout.splitlines() if (r := line.split())}
    assert {f"search[s{n}]" for n in range(1, 5)} <= set(costs)
    assert costs["search[s1]"][1] == "searcher" and costs["total"][-1].startswith("$0.0")


async def test_the_live_view_shows_the_leads_plan_and_each_search(store: SQLiteStore) -> None:
    run_id, _ = await research(store, OVERVIEW)
    screen = io.StringIO()
    console = Console(file=screen, width=200)
    live = LiveProgress(console, run_id, [p.name for p in workflow.phases])

    events = store.events(run_id)
    planned = next(i for i, e in enumerate(events) if e.kind is EventKind.PLAN_ACCEPTED)
    for event in events[: planned + 1]:
        live(event)
    console.print(live.render())

    shown = screen.getvalue()
    assert (
        "plan search:plan[1] (lead) 4 step(s): s1 (searcher), s2 (searcher), s3 (searcher), "
        "s4 (searcher)" in shown
    )
    for event in events[planned + 1 :]:
        live(event)
    console.print(live.render())
    done = {
        row[0]: row[3] for line in screen.getvalue().splitlines() if len(row := line.split()) > 3
    }
    assert [done[p] for p in ("search", "search:plan", "compress", "synthesise", "check")] == [
        "4/4",
        "1/1",
        "4/4",
        "1/1",
        "1/1",
    ]


def test_the_demo_question_is_refused_where_it_does_not_belong(tmp_path: Path) -> None:
    db = str(tmp_path / "research.db")
    runner = CliRunner()

    sales = runner.invoke(app, ["demo", "sales", "a question", "--db", db])
    both = runner.invoke(app, ["demo", "research", "q?", "--input", "{}", "--db", db])
    short = runner.invoke(app, ["demo", "research", "q", "--db", db])

    assert sales.exit_code == 2 and "takes no text argument" in sales.output
    assert both.exit_code == 2 and "not both" in both.output
    assert short.exit_code == 2 and "question" in short.output


async def test_a_budget_limited_run_stops_within_its_budget(store: SQLiteStore) -> None:
    budget = Budget(tokens=40_000)
    result = await Foreman(dataclasses.replace(workflow, budget=budget), store).run(
        {"question": OVERVIEW}
    )

    summary = result.summary()
    assert result.status == "exhausted"
    used = summary["usage"]["input_tokens"] + summary["usage"]["output_tokens"]
    assert 0 < used <= 40_000
    assert any(e.kind is EventKind.BUDGET_REFUSED for e in store.events(result.run_id))
    assert summary["phases"]["search:plan"]["accepted"] == 1


def _accepted_searches(db: Path) -> int:
    """How many search items the journal at `db` has accepted yet (read-only)."""
    if not db.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            row = conn.execute(
                "SELECT COUNT(*) FROM events WHERE kind = 'item.accepted' AND phase = 'search'"
            ).fetchone()
    except sqlite3.OperationalError:  # the file or its tables are not there yet
        return 0
    return int(row[0])


def test_a_research_run_stopped_mid_search_resumes_without_searching_again(
    tmp_path: Path,
) -> None:
    db = tmp_path / "research.db"
    command = [sys.executable, "-m", "hubspoke.cli", "demo", "research", OVERVIEW]
    with subprocess.Popen(
        [*command, "--latency", "300", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + 60
        while _accepted_searches(db) == 0:  # poll the journal: a searcher has finished
            assert process.poll() is None, "the run ended before a search was accepted"
            assert time.monotonic() < deadline, "no search accepted within 60 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    run_id = err.split("hubspoke resume ")[1].split()[0]
    reader = SQLiteStore(db, read_only=True)
    before = {e.item for e in reader.events(run_id) if e.kind is EventKind.ITEM_ACCEPTED}
    reader.close()

    resumed = CliRunner().invoke(app, ["resume", run_id, "--db", str(db), "--json"])

    assert resumed.exit_code == 0, resumed.output
    out = json.loads(resumed.stdout)
    assert out["status"] == "completed" and out["phases"]["search"]["accepted"] == 4
    answer = Answer.model_validate(out["result"])
    assert "The Kestrel Point wind farm has a capacity of 420 megawatts." in answer.text
    reader = SQLiteStore(db, read_only=True)
    events = reader.events(run_id)
    reader.close()
    # The lead planned once, before the stop: its plan was kept, not asked for again.
    assert "search:plan[1]" in before
    assert [e.kind for e in events].count(EventKind.PLAN_ACCEPTED) == 1
    for item in before:  # what was accepted before the stop was not dispatched again
        started = [e for e in events if e.kind is EventKind.DISPATCH_STARTED and e.item == item]
        assert len(started) == 1, item
    assert {e.item for e in events if e.kind is EventKind.ITEM_ACCEPTED} >= {
        f"search[s{n}]" for n in range(1, 5)
    }
