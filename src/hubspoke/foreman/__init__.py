"""The foreman: runs a workflow, routes and validates, never produces an artifact itself.

For each phase: build the work items, and for each item walk its failure ladder: reserve the
worst case in the budget ledger, dispatch through the executor, validate the output (and have
the phase's evaluator judge it), then decide the next step (`_steps.decide`, a pure function)
and apply it by writing its events: accept, retry with the correction, fall back to the next
role, escalate to a person, or stop the run. The run's state is the fold of those events, so a
crashed run resumes from its journal: where each item stands is computed from the fold up
front, and the same code then runs on.

Modules (private, behind this front door): `_validation` (strict validation, fingerprints),
`_steps` (the next step as a value), `_run` (wiring apart from run state), `_wiring` (building
the wiring: specialists, ladders, model checks), `_dispatch` (one dispatch), `_evaluation` (the
phase's evaluator and its own ladder), `_start` (where an item starts), `_ladder` (one item),
`_phases` (fan-out, selection, verdicts), `_plans` (a planner's plan checked) and
`_plan_next` (what it runs next), both pure, `_planned` (a planned phase), `_events` (decisions
as events), `_waiting` (waiting for people), `_drive` (a run's sessions, phases and end),
`_resume`, `_subforeman`, `_foreman` (the `Foreman` class); shared runs: `_sharing` (the
switch), `_shared` (the owner's side), `_shard` (items leased and run), `_join` (a joiner).
"""

from ._foreman import Foreman, RunResult
from ._sharing import Sharing
from ._validation import MAX_ERRORS, MAX_JSON_DEPTH, fingerprint, format_errors, validate_output

__all__ = [
    "MAX_ERRORS",
    "MAX_JSON_DEPTH",
    "Foreman",
    "RunResult",
    "Sharing",
    "fingerprint",
    "format_errors",
    "validate_output",
]
