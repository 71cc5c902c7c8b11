# ruff: noqa: E501  (the decision table reads best one row per line)
"""The next step as a value: `decide` and `phase_verdict` from tables, with no event loop.

Each row is (where the item stands, what came back, the ladder) → the step that follows. The
rules are the failure ladder of docs/concepts.md: retry with correction → fallback → escalate; a request
for a person escalates at once; the run's budget stops the run, a role's budget fails the role.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from hubspoke import Role, Strategy
from hubspoke.foreman._steps import (
    Accept,
    Escalate,
    Fallback,
    PhaseCounts,
    Position,
    Recorded,
    Refusal,
    Retry,
    Step,
    Stop,
    Stuck,
    Wait,
    advance,
    decide,
    phase_verdict,
)
from hubspoke.foreman._validation import fingerprint, normalise_correction
from hubspoke.outcomes import Outcome, OutcomeKind


class Out(BaseModel):
    x: int


def role(name: str, attempts: int = 2, fallback: str | None = None) -> Role:
    return Role(
        name=name,
        purpose="Do.",
        input=Out,
        output=Out,
        function=lambda inp, ctx: inp,
        max_attempts=attempts,
        fallback=fallback,
    )


LADDER = (role("writer", 2, "backup"), role("backup", 1))
ALONE = (role("writer", 2),)
OUTPUT = Outcome(OutcomeKind.OUTPUT, output=Out(x=1))
INVALID = Outcome(OutcomeKind.INVALID, errors=[{"loc": ["x"], "msg": "bad", "type": "t"}])
FAILED = Outcome(OutcomeKind.FAILED, message="boom")
TIMED_OUT = Outcome(OutcomeKind.TIMED_OUT, message="late")
SCOPE = Outcome(OutcomeKind.SCOPE_VIOLATION, message="not mine")
HUMAN = Outcome(OutcomeKind.NEEDS_HUMAN, message="which one?")
ALLOWANCE = Outcome(OutcomeKind.BUDGET_REFUSED, message="tokens")
THROTTLED = Outcome(OutcomeKind.THROTTLED, message="429", wait=1.5)
DOWN = Outcome(OutcomeKind.UNAVAILABLE, message="503")

FIRST = Position()
LAST_TRY = Position(rung=0, tries=1, attempt=2)
ON_BACKUP = Position(rung=1, tries=0, attempt=3)
WAITED_OUT = Position(rung=0, tries=0, attempt=1, waits=5)  # Role.max_waits is 5

CORRECTION = INVALID.correction()
WHY_INVALID = "invalid: x: bad"

TABLE: list[tuple[str, Position, object, tuple[Role, ...], Step]] = [
    ("valid output is accepted", FIRST, OUTPUT, LADDER, Accept(Out(x=1))),
    ("invalid, attempts left: retry", FIRST, INVALID, LADDER, Retry(CORRECTION, WHY_INVALID)),
    ("failed, attempts left: retry", FIRST, FAILED, LADDER, Retry(FAILED.correction(), "failed: boom")),
    ("timed out: retry", FIRST, TIMED_OUT, LADDER, Retry(TIMED_OUT.correction(), "timed_out: late")),
    ("invalid on the last try: fallback", LAST_TRY, INVALID, LADDER, Fallback("backup", WHY_INVALID)),
    ("out of scope: fallback at once", FIRST, SCOPE, LADDER, Fallback("backup", "scope_violation: not mine")),
    ("allowance spent: fallback at once", FIRST, ALLOWANCE, LADDER, Fallback("backup", "budget_refused: tokens")),
    ("a person is asked for: escalate", FIRST, HUMAN, LADDER, Escalate("which one?")),
    ("last rung fails: escalate", ON_BACKUP, FAILED, LADDER, Escalate("failure ladder exhausted (failed: boom)")),
    ("no fallback: escalate", LAST_TRY, FAILED, ALONE, Escalate("failure ladder exhausted (failed: boom)")),
    ("run budget: stop", FIRST, Refusal("run", "tokens"), LADDER, Stop("tokens")),
    ("role budget: that role fails", FIRST, Refusal("role", "role writer tokens"), LADDER,
     Fallback("backup", "budget: role writer tokens")),
    ("role budget on the last rung: escalate", ON_BACKUP, Refusal("role", "t"), LADDER,
     Escalate("failure ladder exhausted (budget: t)")),
    ("stuck: the role fails", FIRST, Stuck("fp"), LADDER,
     Fallback("backup", "stuck: the same dispatch would repeat with no new information")),
    ("recorded invalid: retry with the recorded correction", FIRST,
     Recorded(OutcomeKind.INVALID, "fix x", "invalid (before the restart)"), LADDER,
     Retry("fix x", "invalid (before the restart)")),
    ("throttled: wait as long as asked, no attempt spent", FIRST, THROTTLED, LADDER, Wait("throttled: 429", 1.5, "throttled")),
    ("unavailable: wait for the gate", LAST_TRY, DOWN, LADDER, Wait("unavailable: 503", 0.0, "unavailable")),
    ("waited max_waits times: fallback", WAITED_OUT, THROTTLED, LADDER,
     Fallback("backup", "throttled: 429 (still, after 5 waits)")),
    ("waited out on the last rung: escalate", Position(1, 0, 3, None, 5), DOWN, LADDER,
     Escalate("failure ladder exhausted (unavailable: 503 (still, after 5 waits))")),
    ("recorded throttled: wait as recorded", FIRST,
     Recorded(OutcomeKind.THROTTLED, None, "throttled (before the restart)", 2.0), LADDER,
     Wait("throttled (before the restart)", 2.0, "throttled")),
    ("recorded needs_human: escalate", FIRST,
     Recorded(OutcomeKind.NEEDS_HUMAN, None, "needs_human (before the restart)"), LADDER,
     Escalate("needs_human (before the restart)")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("position", "result", "ladder", "step"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_decide(position: Position, result: object, ladder: tuple[Role, ...], step: Step) -> None:
    assert decide(position, result, ladder) == step  # type: ignore[arg-type]


def test_advance_counts_attempts_over_the_whole_ladder() -> None:
    retried = advance(FIRST, Retry("fix", "why"))
    assert retried == Position(rung=0, tries=1, attempt=2, correction="fix")
    fell_back = advance(retried, Fallback("backup", "why"))
    assert fell_back == Position(rung=1, tries=0, attempt=3, correction=None)


def test_a_wait_keeps_the_attempt_and_a_retry_or_fallback_resets_the_waits() -> None:
    waited = advance(Position(correction="fix"), Wait("429", 1.0, "throttled"))
    assert waited == Position(rung=0, tries=0, attempt=1, correction="fix", waits=1)
    assert advance(waited, Retry("again", "why")).waits == 0
    assert advance(waited, Fallback("backup", "why")).waits == 0


def test_every_ladder_ends_within_its_attempts() -> None:
    """Whatever keeps coming back, a ladder ends after the sum of its roles' attempts."""
    for result in (INVALID, FAILED, TIMED_OUT, SCOPE, ALLOWANCE, Stuck("fp")):
        position, steps = FIRST, 0
        while True:
            step = decide(position, result, LADDER)
            if not isinstance(step, Retry | Fallback):
                break
            position, steps = advance(position, step), steps + 1
        assert isinstance(step, Escalate)
        assert steps < sum(r.max_attempts for r in LADDER)


VERDICTS = [
    (Strategy.FAIL_FAST, None, PhaseCounts(3, 3, 0), "completed"),
    (Strategy.FAIL_FAST, None, PhaseCounts(3, 2, 1), "waiting"),  # a person may answer it
    (Strategy.FAIL_FAST, None, PhaseCounts(3, 1, 1, failed=1), "failed"),  # lost anyway
    (Strategy.FAIL_FAST, None, PhaseCounts(3, 2, 0, skipped=1), "completed"),  # not needed
    (Strategy.BEST_EFFORT, None, PhaseCounts(3, 0, 3), "completed"),
    (Strategy.RETRY, None, PhaseCounts(3, 1, 2), "completed"),
    (Strategy.QUORUM, 2, PhaseCounts(3, 2, 1), "completed"),
    (Strategy.QUORUM, 2, PhaseCounts(3, 1, 2), "waiting"),
    (Strategy.QUORUM, 2, PhaseCounts(3, 1, 0, failed=2), "failed"),
    (Strategy.QUORUM, 3, PhaseCounts(3, 1, 1, failed=1), "failed"),  # cannot reach 3
    (Strategy.FAIL_FAST, None, PhaseCounts(0, 0, 0), "completed"),
]


@pytest.mark.parametrize(("strategy", "quorum", "counts", "status"), VERDICTS)
def test_phase_verdict(
    strategy: Strategy, quorum: int | None, counts: PhaseCounts, status: str
) -> None:
    got, why = phase_verdict("p", strategy, quorum, counts)
    assert got == status
    assert (why == "") == (status == "completed")
    if why:
        needed = counts.total - counts.skipped
        assert why.startswith(f"phase 'p' ({strategy.value}): {counts.accepted} of {needed}")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("value 17 is greater than 10", "value 18 is greater than 10"),
        ("expected 'red' got 'blue'", "expected 'red' got 'green'"),
        ('field "a b"  missing\n', 'field "c" missing'),
        ("x: 1.5e3 too big", "x: -2 too big"),
    ],
)
def test_near_repeat_corrections_fingerprint_the_same(a: str, b: str) -> None:
    assert normalise_correction(a) == normalise_correction(b)
    assert fingerprint("r", "{}", a) == fingerprint("r", "{}", b)


def test_different_corrections_and_inputs_fingerprint_apart() -> None:
    assert fingerprint("r", "{}", "x is missing") != fingerprint("r", "{}", "y is missing")
    assert fingerprint("r", '{"n":1}', None) != fingerprint("r", '{"n":2}', None)
    assert fingerprint("r", "{}", None) != fingerprint("s", "{}", None)


def test_a_recorded_outcome_is_decided_from_where_its_attempt_was_dispatched() -> None:
    """Resume: the fold has already counted the attempt that ended (tries 1, attempt 2), so
    the decision starts from the position it was dispatched at, as the uncrashed run's did."""
    from hubspoke.foreman._start import start_of
    from hubspoke.journal import ItemState

    item = ItemState("k", "p", "writer", attempt=2, tries=1, correction="fix it")
    item.last_outcome, item.pending = "failed", True
    start = start_of(item, LADDER)
    assert start is not None and start.pending is not None
    step = decide(start.position, start.pending, LADDER)
    assert step == Retry("fix it", "failed (before the restart)")
    assert advance(start.position, step) == Position(
        rung=0, tries=1, attempt=2, correction="fix it"
    )


def test_an_apostrophe_is_no_quote() -> None:
    a = "the draft doesn't cite any sources, so it isn't usable"
    b = "the draft doesn't follow the house style, so it isn't usable"
    assert fingerprint("r", "{}", a) != fingerprint("r", "{}", b)
