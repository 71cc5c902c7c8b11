"""Follow-up runs: what an approved card starts, once.

A workflow names, per review-gated phase, a workflow that an approved (or amended) card starts
(`Workflow.follow_ups`): the seeds' sales pipeline sends approved drafts from a separate run with
its own foreman, because the risk changed. `run_follow_ups` starts the follow-up of every
approved card of a run that does not have one yet, and resumes one that a crash cut short. Its
run id is made from the card's run and item (`follow_up_id`), so calling it again, approving
twice, or a crash between an approval and its follow-up never runs a card's follow-up twice;
a follow-up that writes to the outbox (`Phase(outbox=True)`) writes each message once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic_core import from_json

from hubspoke.foreman import Foreman
from hubspoke.journal import RunState, Store
from hubspoke.workflow import Workflow

__all__ = ["FollowUp", "follow_up_id", "run_follow_ups"]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What `run_follow_ups` did about one approved card."""

    card_id: str
    item: str
    run_id: str
    """The follow-up run's id."""
    status: str
    """The follow-up run's status after this call."""
    started: bool
    """This call started or resumed it (`False`: it had already ended)."""


def follow_up_id(run_id: str, item: str) -> str:
    """The id of the follow-up run of the card of `item` in `run_id`: the same whoever asks."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{run_id}.{item}.follow-up")


async def run_follow_ups(store: Store, workflow: Workflow, run_id: str) -> list[FollowUp]:
    """Start (or finish) the follow-up run of every approved or amended card of `run_id`.

    Args:
        store: the store the run and its follow-ups live in.
        workflow: the run's workflow, whose `follow_ups` say what each phase's cards start.
        run_id: the run whose cards were decided.

    Returns:
        One `FollowUp` per approved or amended card of a phase with a follow-up, in card
        order; those already ended are reported, not run again.

    Raises:
        RunNotFound: no run `run_id`, or an approved card's artifact is missing.
        RunLocked: another process is driving one of the follow-up runs.
    """
    from hubspoke.errors import RunNotFound

    if store.run(run_id) is None:
        raise RunNotFound(f"no run {run_id!r}")
    if not workflow.follow_ups:
        return []
    state = RunState.fold(run_id, store.events(run_id))
    done: list[FollowUp] = []
    texts: dict[str, str] | None = None
    for card in sorted(state.cards.values(), key=lambda c: c.item):
        follow = workflow.follow_ups.get(card.phase)
        if follow is None or card.column not in ("approved", "amended"):
            continue
        if card.artifact_id is None:
            continue
        if texts is None:
            texts = store.artifact_texts(run_id)
        text = texts.get(card.artifact_id)
        if text is None:
            raise RunNotFound(f"artifact {card.artifact_id} of card {card.card_id} is missing")
        content = from_json(text)
        child = follow_up_id(run_id, card.item)
        record = store.run(child)
        foreman = Foreman(follow, store)
        if record is None:
            result = await foreman.run(
                content, run_id=child, parent_run=run_id, parent_item=card.item
            )
            done.append(FollowUp(card.card_id, card.item, child, result.status, True))
        elif record.status == "running":
            result = await foreman.resume(child)
            done.append(FollowUp(card.card_id, card.item, child, result.status, True))
        else:
            done.append(FollowUp(card.card_id, card.item, child, record.status, False))
    return done
